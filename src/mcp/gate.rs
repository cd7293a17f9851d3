//! Gated MCP tool calls: human approval through a multi round-trip request
//! (or a JSON-RPC error in the handshake era), and duplicate suppression.
//!
//! Invariants:
//! - Airlock's own `requestState` is `airlock-approval.v1.<approval id>.<exp>.<s>.<c>.<mac>`:
//!   `s` and `c` are digests of the session and of the call (server, tool,
//!   canonical params without `_meta`), and the MAC (HMAC-SHA256 under the
//!   signing key, domain-separated, checked in constant time) covers all of
//!   it. It is checked before anything else is decided from it: forged or
//!   tampered, then expired, then another session's, then another call's.
//! - A `requestState` with Airlock's prefix never reaches the server: it is
//!   stripped (with the retry's `inputResponses`, which answered Airlock's
//!   own question) or the call is refused; a server's own state, which can
//!   never carry the prefix (`filter_one` replaces such a result), passes
//!   untouched.
//! - The state only names an approval: the approval itself is bound to the
//!   same call's digest and is consumed once by the state object, so a
//!   state that checks out still passes exactly once, after a human said
//!   yes.
//!
//! Must never: put the approval page's signed link in an answer to the
//! sandbox (the agent could decide its own call), or read a clock.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{canonical, error_response, stateless_status, Call, Era};
use crate::error::Error;
use crate::token::KeyRing;

/// What a policy asks of calls to one MCP tool beyond its level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct McpGate {
    /// Each call needs a human approval first.
    pub approval: bool,
    /// How long a held call waits open for the decision (0: answered at once).
    pub wait_s: u64,
    /// Identical calls within this many seconds run once (0: off).
    pub dedupe_s: u64,
}

/// The prefix of every `requestState` Airlock issues.
pub const STATE_PREFIX: &str = "airlock-approval.v1.";
/// How long Airlock's `requestState` may be presented.
pub const STATE_TTL_S: u64 = 600;
/// The key of Airlock's question in `inputRequests`.
pub const INPUT_KEY: &str = "airlock_approval";

/// What a gated or deduplicated call binds: its `params` without `_meta`
/// (canonical bytes; moved to the admission gate once the call is gated),
/// Airlock's `requestState` if the call carried one, and whether the client
/// can answer a URL-mode elicitation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bound {
    pub params: Vec<u8>,
    pub state: Option<String>,
    pub url_elicitation: bool,
}

/// Whether a `requestState` is Airlock's.
pub fn ours(state: &str) -> bool {
    state.starts_with(STATE_PREFIX)
}

/// Reads what a gated call binds, and strips Airlock's own `requestState`
/// and the `inputResponses` that answered it from the message to forward.
pub(super) fn bind(message: &mut Value) -> Bound {
    let Some(Value::Object(params)) = message.get_mut("params") else {
        return Bound { params: b"{}".to_vec(), state: None, url_elicitation: false };
    };
    let caps = params.get("_meta").and_then(|m| m.get("io.modelcontextprotocol/clientCapabilities"));
    let url_elicitation = caps.and_then(|c| c.get("elicitation")).and_then(|e| e.get("url")).is_some_and(Value::is_object);
    let state = match params.get("requestState") {
        Some(Value::String(s)) if ours(s) => {
            let s = s.clone();
            params.remove("requestState");
            params.remove("inputResponses");
            Some(s)
        }
        _ => None,
    };
    // `_meta` out for the digest and back in for the server, without a copy.
    let meta = params.remove("_meta");
    let taken = Value::Object(std::mem::take(params));
    let bytes = canonical(&taken);
    if let Value::Object(mut m) = taken {
        if let Some(meta) = meta {
            m.insert("_meta".into(), meta);
        }
        *params = m;
    }
    Bound { params: bytes, state, url_elicitation }
}

fn short(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update(p);
        h.update([0]);
    }
    URL_SAFE_NO_PAD.encode(&h.finalize()[..12])
}

fn signed_input(signed: &str) -> Vec<u8> {
    format!("airlock-mcp-request-state-v1\0{signed}").into_bytes()
}

/// The call a state is bound to: server, tool and canonical params.
pub struct CallRef<'a> {
    pub session_id: &'a str,
    pub server: &'a str,
    pub tool: &'a str,
    pub params: &'a [u8],
}

impl CallRef<'_> {
    fn session(&self) -> String {
        short(&[b"session", self.session_id.as_bytes()])
    }
    fn call(&self) -> String {
        short(&[b"call", self.server.as_bytes(), self.tool.as_bytes(), self.params])
    }
}

/// Mints Airlock's `requestState` naming approval `id` for this call, valid
/// until `exp` (unix s).
pub fn mint_state(ring: &KeyRing, id: &str, exp: u64, call: &CallRef<'_>) -> String {
    let signed = format!("{STATE_PREFIX}{id}.{exp}.{}.{}", call.session(), call.call());
    let tag = ring.tag(&signed_input(&signed));
    format!("{signed}.{}", URL_SAFE_NO_PAD.encode(&tag[..16]))
}

/// Checks Airlock's `requestState` for this call: the approval id it names,
/// or the audit reason of the refusal.
pub fn verify_state(ring: &KeyRing, state: &str, call: &CallRef<'_>, now_s: u64) -> Result<String, &'static str> {
    let forged = "mcp_state_forged";
    let (signed, tag) = state.rsplit_once('.').ok_or(forged)?;
    let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| forged)?;
    if tag.len() != 16 || !ring.check_tag(&signed_input(signed), &tag) {
        return Err(forged);
    }
    let mut parts = signed.strip_prefix(STATE_PREFIX).ok_or(forged)?.split('.');
    let (Some(id), Some(exp), Some(s), Some(c), None) = (parts.next(), parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(forged);
    };
    let exp: u64 = exp.parse().map_err(|_| forged)?;
    if now_s >= exp {
        return Err("mcp_state_expired");
    }
    if s != call.session() {
        return Err("mcp_state_other_session");
    }
    if c != call.call() {
        return Err("mcp_state_other_call");
    }
    Ok(id.to_string())
}

/// A JSON-RPC error for a gated call: `(body, HTTP status)` by era.
fn refusal(call: &Call, code: i64, message: &str) -> (Vec<u8>, u16) {
    let status = if call.era == Era::Stateless { stateless_status(code) } else { 200 };
    (error_response(call.id.as_ref().unwrap_or(&Value::Null), code, message), status)
}

/// The refusal of a `requestState` that did not check out.
pub fn state_refusal(call: &Call) -> (Vec<u8>, u16) {
    refusal(call, -32013, "Invalid request state")
}

/// Where the person deciding finds approval `id`: the control-plane route
/// under `base` (it needs the admin key, so the link authorizes nothing).
pub fn approval_url(base: &str, id: &str) -> String {
    format!("{}/v1/approvals/{id}", base.trim_end_matches('/'))
}

/// Airlock's answer to a gated call that was refused at admission, by the
/// refusal; `None` for a refusal that is not the gate's (answered as any
/// other error). `presented` is the approval a verified state named.
pub fn answer(error: &Error, call: &Call, presented: Option<&str>, ring: &KeyRing, at: &CallRef<'_>, base: &str, now_s: u64) -> Option<(Vec<u8>, u16)> {
    let id = match error {
        Error::ApprovalRequired { id } => id.as_str(),
        Error::ApprovalPending => presented?,
        Error::ApprovalDenied => return Some(refusal(call, -32011, "Approval denied")),
        Error::ApprovalInvalid => return Some(refusal(call, -32012, "Approval not usable")),
        Error::IdempotencyInFlight => return Some(refusal(call, -32014, "Duplicate call still running")),
        Error::IdempotencyNotStored { .. } => return Some(refusal(call, -32015, "Duplicate of a call whose result was not kept")),
        _ => return None,
    };
    let url = approval_url(base, id);
    let message = format!("A person must approve this call of {} (approval {id}). Retry once it is approved.", at.tool);
    // Written out rather than built as a `Value`: this is on the request
    // path, and every string goes through the canonical serializer.
    let q = |s: &str| String::from_utf8(canonical(&Value::String(s.into()))).unwrap_or_default();
    let answer_id = String::from_utf8(canonical(call.id.as_ref().unwrap_or(&Value::Null))).unwrap_or_default();
    let state = q(&mint_state(ring, id, now_s + STATE_TTL_S, at));
    let (url, message, id) = (q(&url), q(&message), q(id));
    if call.era == Era::Stateless && call.bound.as_ref().is_some_and(|b| b.url_elicitation) {
        let body = format!(
            r#"{{"id":{answer_id},"jsonrpc":"2.0","result":{{"inputRequests":{{"{INPUT_KEY}":{{"method":"elicitation/create","params":{{"message":{message},"mode":"url","url":{url}}}}}}},"requestState":{state},"resultType":"input_required"}}}}"#
        );
        return Some((body.into_bytes(), 200));
    }
    // No multi round-trip: URLElicitationRequired (-32042) in the handshake
    // era, an implementation-defined code in 2026-07-28 (which retired it).
    let code = if call.era == Era::Stateless { -32010 } else { -32042 };
    let body = format!(
        r#"{{"error":{{"code":{code},"data":{{"approval_id":{id},"elicitations":[{{"elicitationId":{id},"message":{message},"mode":"url","url":{url}}}],"url":{url}}},"message":"Approval required"}},"id":{answer_id},"jsonrpc":"2.0"}}"#
    );
    let status = if call.era == Era::Stateless { stateless_status(code) } else { 200 };
    Some((body.into_bytes(), status))
}

/// The stored result of the first of identical calls, answered to a later
/// one with its own JSON-RPC id: `(status, body)`. A stored answer that is
/// not a 200 (Airlock's own error after forwarding) is answered as it was;
/// a 200 whose response message cannot be found is replaced by an error.
pub fn replay(status: u16, stored: &[u8], id: &Value) -> (u16, Vec<u8>) {
    if status != 200 {
        return (status, stored.to_vec());
    }
    let response = |data: &[u8]| match super::parse_strict(data) {
        Ok(Value::Object(mut m)) if m.contains_key("id") && (m.contains_key("result") || m.contains_key("error")) => {
            m.insert("id".into(), id.clone());
            Some(canonical(&Value::Object(m)))
        }
        _ => None,
    };
    // A JSON answer, or the last response on an event stream.
    let found = response(stored).or_else(|| {
        let mut splitter = crate::sse::EventSplitter::new();
        let mut events = splitter.push(stored).unwrap_or_default();
        events.push(splitter.finish());
        events.iter().rev().find_map(|e| crate::sse::data(e).as_deref().and_then(response))
    });
    (200, found.unwrap_or_else(|| error_response(id, -32603, "stored result unreadable")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ring() -> KeyRing {
        KeyRing::parse("k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap()
    }

    fn at<'a>(session_id: &'a str, params: &'a [u8]) -> CallRef<'a> {
        CallRef { session_id, server: "docs", tool: "create_page", params }
    }

    const ID: &str = "ap_0123456789abcdef0123456789abcdef";

    #[test]
    fn request_state_attack_table() {
        let params = br#"{"arguments":{"title":"x"},"name":"create_page"}"#;
        let good = mint_state(&ring(), ID, 1_600, &at("s1", params));
        assert!(ours(&good));
        assert_eq!(verify_state(&ring(), &good, &at("s1", params), 1_000), Ok(ID.to_string()));
        let flip = |s: &str, i: usize| {
            let mut b = s.as_bytes().to_vec();
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            String::from_utf8(b).unwrap()
        };
        let other_ring = KeyRing::parse("k2:ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=").unwrap();
        let foreign = mint_state(&other_ring, ID, 1_600, &at("s1", params));
        let (signed, tag) = good.rsplit_once('.').unwrap();
        type Row = (&'static str, String, &'static str, &'static [u8], u64, &'static str);
        let rows: &[Row] = &[
            ("a bit flipped in the MAC", flip(&good, good.len() - 3), "s1", params, 1_000, "mcp_state_forged"),
            ("the approval id changed", good.replace(ID, "ap_ffffffffffffffffffffffffffffffff"), "s1", params, 1_000, "mcp_state_forged"),
            ("the expiry pushed out", good.replace(".1600.", ".9600."), "s1", params, 1_000, "mcp_state_forged"),
            ("the MAC truncated", format!("{signed}.{}", &tag[..10]), "s1", params, 1_000, "mcp_state_forged"),
            ("no MAC", signed.to_string(), "s1", params, 1_000, "mcp_state_forged"),
            ("made with another key", foreign, "s1", params, 1_000, "mcp_state_forged"),
            ("a server's state in Airlock's clothes", format!("{STATE_PREFIX}anything"), "s1", params, 1_000, "mcp_state_forged"),
            ("expiry exactly now", good.clone(), "s1", params, 1_600, "mcp_state_expired"),
            ("past expiry", good.clone(), "s1", params, 9_000, "mcp_state_expired"),
            ("another session", good.clone(), "s2", params, 1_000, "mcp_state_other_session"),
            ("other arguments", good.clone(), "s1", br#"{"arguments":{"title":"y"},"name":"create_page"}"#, 1_000, "mcp_state_other_call"),
        ];
        for (what, state, session, p, now, want) in rows {
            assert_eq!(verify_state(&ring(), state, &at(session, p), *now), Err(*want), "{what}");
        }
        // Another tool of the same server, or the same tool of another server.
        let other_tool = CallRef { tool: "delete_space", ..at("s1", params) };
        assert_eq!(verify_state(&ring(), &good, &other_tool, 1_000), Err("mcp_state_other_call"));
        let other_server = CallRef { server: "docs2", ..at("s1", params) };
        assert_eq!(verify_state(&ring(), &good, &other_server, 1_000), Err("mcp_state_other_call"));
        // Survives rotation while the old key is listed.
        let rotated = KeyRing::parse("k2:ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=,k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap();
        assert_eq!(verify_state(&rotated, &good, &at("s1", params), 1_000), Ok(ID.to_string()));
    }

    #[test]
    fn binding_strips_airlocks_state_and_keeps_a_servers() {
        let mut ours_msg = json!({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
            "name": "create_page", "arguments": {"title": "x"}, "requestState": format!("{STATE_PREFIX}x"),
            "inputResponses": {INPUT_KEY: {"action": "accept"}},
            "_meta": {"io.modelcontextprotocol/clientCapabilities": {"elicitation": {"url": {}}}, "progressToken": 7}}});
        let b = bind(&mut ours_msg);
        assert_eq!(b.state.as_deref(), Some(format!("{STATE_PREFIX}x").as_str()));
        assert!(b.url_elicitation);
        assert_eq!(b.params, br#"{"arguments":{"title":"x"},"name":"create_page"}"#.to_vec(), "no _meta, no state, no responses");
        assert!(ours_msg["params"].get("requestState").is_none() && ours_msg["params"].get("inputResponses").is_none());
        // A server's state and its answers pass untouched and are bound.
        let mut theirs = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call", "params": {
            "name": "create_page", "arguments": {"title": "x"}, "requestState": "server-state", "inputResponses": {"q": {"action": "accept"}}}});
        let b = bind(&mut theirs);
        assert_eq!(b.state, None);
        assert!(!b.url_elicitation);
        assert_eq!(theirs["params"]["requestState"], "server-state");
        assert!(String::from_utf8(b.params).unwrap().contains("server-state"), "a server round is another call");
    }

    #[test]
    fn airlocks_state_is_refused_where_airlock_never_issues_one() {
        let mut rules = crate::mcp::McpRules::default();
        rules.prompts.insert("summarize".into(), crate::level::Level::Read);
        rules.resources.push(("docs://".into(), crate::level::Level::Read));
        for (method, target) in [("prompts/get", r#""name":"summarize""#), ("resources/read", r#""uri":"docs://a""#)] {
            let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{method}","params":{{{target},"requestState":"{STATE_PREFIX}x"}}}}"#);
            assert!(crate::mcp::inspect(body.as_bytes(), &rules, crate::level::Level::Admin).is_err(), "{method}");
            let theirs = body.replace(STATE_PREFIX, "server.");
            assert!(matches!(crate::mcp::inspect(theirs.as_bytes(), &rules, crate::level::Level::Admin), Ok(crate::mcp::Verdict::Forward { .. })), "{method}");
        }
    }

    fn call(era: Era) -> Call {
        Call {
            method: Some("tools/call".into()),
            id: Some(json!(5)),
            target: Some("create_page".into()),
            arg_names: vec![],
            list: None,
            era,
            headers: vec![],
            bound: None,
        }
    }

    #[test]
    fn answers_by_era_and_refusal() {
        let params = b"{}";
        let bound = |url| Bound { params: params.to_vec(), state: None, url_elicitation: url };
        let required = Error::ApprovalRequired { id: ID.into() };
        let go = |e: &Error, era, url, presented| {
            let call = Call { bound: Some(Box::new(bound(url))), ..call(era) };
            answer(e, &call, presented, &ring(), &at("s1", params), "https://airlock.example/", 1_000)
        };
        let (body, status) = go(&required, Era::Stateless, true, None).unwrap();
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!((status, &v["id"], &v["result"]["resultType"]), (200, &json!(5), &json!("input_required")));
        let ask = &v["result"]["inputRequests"][INPUT_KEY];
        assert_eq!(ask["params"]["mode"], "url");
        assert_eq!(ask["params"]["url"], format!("https://airlock.example/v1/approvals/{ID}"));
        let state = v["result"]["requestState"].as_str().unwrap();
        assert_eq!(verify_state(&ring(), state, &at("s1", params), 1_000), Ok(ID.into()));
        // Pending with a presented state: asked again, with a fresh state.
        let (body, _) = go(&Error::ApprovalPending, Era::Stateless, true, Some(ID)).unwrap();
        assert!(String::from_utf8(body).unwrap().contains("input_required"));
        // Without URL elicitation, and in the handshake era: an error with the id and URL.
        for (era, url, code, status) in [(Era::Handshake, true, -32042, 200), (Era::Stateless, false, -32010, 400)] {
            let (body, s) = go(&required, era, url, None).unwrap();
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!((s, &v["error"]["code"]), (status, &json!(code)));
            assert_eq!(v["error"]["data"]["approval_id"], ID);
            assert_eq!(v["error"]["data"]["elicitations"][0]["elicitationId"], ID);
        }
        for (e, code) in [
            (Error::ApprovalDenied, -32011),
            (Error::ApprovalInvalid, -32012),
            (Error::IdempotencyInFlight, -32014),
            (Error::IdempotencyNotStored { status: 200 }, -32015),
        ] {
            let (body, status) = go(&e, Era::Stateless, true, None).unwrap();
            let v: Value = serde_json::from_slice(&body).unwrap();
            assert_eq!((status, &v["error"]["code"]), (400, &json!(code)), "{e:?}");
        }
        assert_eq!(go(&Error::ApprovalPending, Era::Stateless, true, None), None, "pending needs the presented id");
        assert_eq!(go(&Error::StateUnavailable("x".into()), Era::Stateless, true, None), None);
    }

    #[test]
    fn replays_carry_the_new_id() {
        let json_answer = br#"{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"booked"}]}}"#;
        let (s, body) = replay(200, json_answer, &json!("b"));
        assert_eq!(s, 200);
        assert_eq!(body, br#"{"id":"b","jsonrpc":"2.0","result":{"content":[{"text":"booked","type":"text"}]}}"#.to_vec());
        let stream = b"id: e1\nretry: 100\ndata: \n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"ok\":true}}\n\n";
        assert_eq!(replay(200, stream, &json!(9)).1, br#"{"id":9,"jsonrpc":"2.0","result":{"ok":true}}"#.to_vec());
        assert!(String::from_utf8(replay(200, b"data: nothing\n\n", &json!(9)).1).unwrap().contains("-32603"));
        assert_eq!(replay(502, b"{\"error\":{}}", &json!(9)), (502, b"{\"error\":{}}".to_vec()), "Airlock's error after forwarding, as it was");
    }
}
