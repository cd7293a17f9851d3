//! `airlock::mcp::inspect` and `filter_origin_message` on arbitrary bytes.
//!
//! Input layout: byte 0 picks the session's level (`% 3`: read, write,
//! admin), and with bit 7 also sends the message as 2026-07-28 with its
//! metadata headers taken from the message (bit 6: one of them bent by a
//! trailing space); the rest is the message.
//!
//! Properties (a panic is a finding): what is forwarded parses, under every
//! decoder model, to the value that was authorized.
//! - never panics;
//! - for a `Forward` verdict, the forwarded bytes are ASCII, parse with
//!   serde_json to exactly the value serde_json reads from the input, and
//!   inspecting them again gives the same call and the same bytes;
//! - a case-insensitive reader (every key lower-cased) and a
//!   first-duplicate-wins reader, applied to the forwarded bytes and to the
//!   input, see the same method, id and target (tool/prompt name or URI) as
//!   the `Call`; no key anywhere holds a control character;
//! - forwarded in the 2026-07-28 era, the `Mcp-Method`/`Mcp-Name` Airlock
//!   sends are the forwarded body's method and name or URI, and a bent
//!   header never gets a message through in that era;
//! - `filter_origin_message` (no call, as on a resumed stream) returns the
//!   input unchanged or JSON in which every tool left is allowed.
#![no_main]

use std::collections::BTreeMap;
use std::fmt;

use airlock::mcp::{self, Call, Era, McpRules, Verdict};
use airlock::policy::Level;
use libfuzzer_sys::fuzz_target;
use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

fn rules() -> McpRules {
    McpRules {
        tools: [("search".to_string(), Level::Read), ("create_issue".to_string(), Level::Write), ("delete_repo".to_string(), Level::Admin)]
            .into_iter()
            .collect(),
        default_tool: None,
        resources: vec![("file:///docs/".into(), Level::Read), ("file:///docs/secret/".into(), Level::Admin)],
        prompts: [("summarize".to_string(), Level::Read)].into_iter().collect(),
        gates: Default::default(),
    }
}

/// A reader that keeps the FIRST of duplicate keys (first-match routers).
struct FirstWins;

impl<'de> DeserializeSeed<'de> for FirstWins {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FirstWins {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(v.into())
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.into()))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(FirstWins)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            let v = map.next_value_seed(FirstWins)?;
            out.entry(k).or_insert(v);
        }
        Ok(Value::Object(out))
    }
}

fn first_wins(bytes: &[u8]) -> Option<Value> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let v = FirstWins.deserialize(&mut de).ok()?;
    de.end().ok()?;
    Some(v)
}

/// A case-insensitive reader: every key lower-cased (Unicode), first wins.
fn lowercase_keys(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = BTreeMap::new();
            for (k, v) in m {
                out.entry(k.to_lowercase()).or_insert_with(|| lowercase_keys(v));
            }
            Value::Object(out.into_iter().collect())
        }
        Value::Array(a) => Value::Array(a.iter().map(lowercase_keys).collect()),
        other => other.clone(),
    }
}

fn no_control_in_keys(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.iter().all(|(k, v)| !k.chars().any(char::is_control) && no_control_in_keys(v)),
        Value::Array(a) => a.iter().all(no_control_in_keys),
        _ => true,
    }
}

/// What a reader of `msg` would act on: method, id, target.
fn reading(msg: &Value, lower: bool) -> (Option<String>, Option<Value>, Option<String>) {
    let key = |k: &str| if lower { k.to_lowercase() } else { k.to_string() };
    let method = msg.get(key("method")).and_then(Value::as_str).map(str::to_string);
    let id = msg.get(key("id")).cloned();
    let params = msg.get(key("params"));
    let field = |obj: Option<&Value>, k: &str| obj.and_then(|o| o.get(key(k))).and_then(Value::as_str).map(str::to_string);
    let target = match method.as_deref() {
        Some("tools/call" | "prompts/get") => field(params, "name"),
        Some("resources/read" | "resources/subscribe" | "resources/unsubscribe") => field(params, "uri"),
        Some("completion/complete") => {
            let r = params.and_then(|p| p.get(key("ref")));
            field(r, "name").or_else(|| field(r, "uri"))
        }
        _ => None,
    };
    (method, id, target)
}

fn check_reading(call: &Call, msg: &Value, lower: bool, what: &str) {
    let (method, id, target) = reading(msg, lower);
    assert_eq!(method, call.method, "{what}: method");
    assert_eq!(id, call.id, "{what}: id");
    if let Some(t) = &call.target {
        // A target the call holds as "" was absent: the reader must see
        // no name either, or that same empty one.
        assert!(target.as_deref().unwrap_or("") == t, "{what}: target {target:?} vs {t:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&level, body)) = data.split_first() else { return };
    let granted = [Level::Read, Level::Write, Level::Admin][level as usize % 3];
    let rules = rules();

    if let Ok(Verdict::Forward { call, body: canonical }) = mcp::inspect(body, &rules, granted) {
        let sent = canonical.as_bytes();
        assert!(sent.is_ascii(), "forwarded bytes not ASCII");
        let authorized: Value = serde_json::from_slice(body).expect("forwarded a message serde_json refuses");
        let forwarded: Value = serde_json::from_slice(sent).expect("forwarded bytes do not parse");
        assert_eq!(forwarded, authorized, "forwarded another value");
        assert!(no_control_in_keys(&forwarded), "control character in a forwarded key");
        match mcp::inspect(sent, &rules, granted) {
            Ok(Verdict::Forward { call: again, body: twice }) => {
                assert_eq!(again, call);
                assert_eq!(twice.as_bytes(), sent, "canonical form not stable");
            }
            other => panic!("forwarded bytes not forwarded again: {other:?}"),
        }
        for (what, bytes) in [("forwarded", sent), ("input", body)] {
            let first = first_wins(bytes).expect("first-wins reader refuses");
            check_reading(&call, &first, false, &format!("{what}, first duplicate wins"));
            check_reading(&call, &lowercase_keys(&first), true, &format!("{what}, case-insensitive"));
        }
    }

    // The 2026-07-28 era: its metadata headers taken from the message
    // itself (bit 7 of the first byte), and with bit 6 one of them bent by
    // a trailing space. Forwarded in that era, the headers Airlock sends
    // are its own spelling of the forwarded body; a bent header never
    // gets a message through in it.
    if level & 0x80 != 0 {
        if let Ok(v) = serde_json::from_slice::<Value>(body) {
            let mut headers = vec![("mcp-protocol-version".to_string(), "2026-07-28".to_string())];
            if let Some(m) = v.get("method").and_then(Value::as_str) {
                headers.push(("mcp-method".to_string(), m.to_string()));
            }
            let params = v.get("params");
            if let Some(n) = params.and_then(|p| p.get("name").or_else(|| p.get("uri"))).and_then(Value::as_str) {
                headers.push(("mcp-name".to_string(), n.to_string()));
            }
            let bent = level & 0x40 != 0;
            if bent {
                if let Some(last) = headers.last_mut() {
                    last.1.push(' ');
                }
            }
            if let Ok(Verdict::Forward { call, body: canonical }) = mcp::inspect_request(body, &headers, &rules, granted) {
                if call.era == Era::Stateless {
                    assert!(!bent, "a bent metadata header got a message through");
                    let forwarded: Value = serde_json::from_slice(canonical.as_bytes()).expect("forwarded bytes do not parse");
                    let sent = |name: &str| call.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
                    assert_eq!(sent("mcp-method").as_deref(), forwarded.get("method").and_then(Value::as_str), "Mcp-Method is not the body's");
                    if let Some(name) = sent("mcp-name") {
                        let p = forwarded.get("params");
                        let target = p.and_then(|p| p.get("name").or_else(|| p.get("uri"))).and_then(Value::as_str);
                        assert_eq!(mcp::era::decode_value(&name).as_deref(), target, "Mcp-Name is not the body's");
                    }
                }
            }
        }
    }

    let filtered = mcp::filter_origin_message(body, None, &rules, granted);
    if filtered != body {
        let v: Value = serde_json::from_slice(&filtered).expect("a filtered message does not parse");
        let messages = match &v {
            Value::Array(a) => a.clone(),
            other => vec![other.clone()],
        };
        for m in messages {
            if let Some(Value::Array(tools)) = m.get("result").and_then(|r| r.get("tools")) {
                for t in tools {
                    let name = t.get("name").and_then(Value::as_str).expect("a tool without a name survived");
                    assert!(rules.tool_allowed(name, granted), "tool {name} survived filtering");
                }
            }
        }
    }
});
