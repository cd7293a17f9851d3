//! MCP: per-tool scope inside JSON-RPC, filtered lists, bound session ids.
//!
//! Invariants:
//! - Default deny inside the server too: `tools/call`, `prompts/get`,
//!   `resources/read` (and subscriptions and completions that name them) go
//!   to the origin only if the policy grants the named tool, prompt or URI
//!   prefix at a level the session holds. A refusal is answered by Airlock
//!   with the same JSON-RPC error whether the name exists or not.
//! - List results (`tools/list`, `resources/list`, `resources/templates/list`,
//!   `prompts/list`) reach the sandbox holding only what it may use.
//! - Unknown methods, batches and malformed messages fail closed.
//! - An origin's `Mcp-Session-Id` is handed out bound to the Airlock session
//!   (MAC-tagged), so it cannot be replayed from another session.

use std::collections::BTreeMap;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{json, Map, Value};

use crate::policy::Level;
use crate::redact::{BodyFilter, Redactor};
use crate::sse::{self, EventSplitter};
use crate::token::KeyRing;

/// Largest JSON-RPC message inspected or filtered (1 MiB).
pub const MAX_MESSAGE: usize = 1024 * 1024;

/// The policy of one MCP server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct McpRules {
    /// Tool name -> level needed to call it.
    pub tools: BTreeMap<String, Level>,
    /// Level needed for tools the policy does not name; `None` denies them.
    pub default_tool: Option<Level>,
    /// Resource URI prefix -> level; the longest matching prefix decides.
    pub resources: Vec<(String, Level)>,
    /// Prompt name -> level.
    pub prompts: BTreeMap<String, Level>,
}

fn allowed(needed: Option<Level>, granted: Level) -> bool {
    needed.is_some_and(|n| n <= granted)
}

impl McpRules {
    pub fn tool_allowed(&self, name: &str, granted: Level) -> bool {
        allowed(self.tools.get(name).copied().or(self.default_tool), granted)
    }

    pub fn prompt_allowed(&self, name: &str, granted: Level) -> bool {
        allowed(self.prompts.get(name).copied(), granted)
    }

    /// A URI is only matched by prefix if it cannot resolve elsewhere:
    /// `docs/public/../private/k` would pass a `docs/public/` prefix and then
    /// be resolved by the server to the private path.
    pub fn resource_allowed(&self, uri: &str, granted: Level) -> bool {
        if !plain_uri(uri) {
            return false;
        }
        let best = self.resources.iter().filter(|(p, _)| uri.starts_with(p.as_str())).max_by_key(|(p, _)| p.len());
        allowed(best.map(|(_, l)| *l), granted)
    }
}

/// Whether a resource URI is free of anything a server could resolve to
/// another path: dot segments (literal or percent-encoded), backslashes
/// (a separator in special URL schemes), encoded separators, control bytes.
fn plain_uri(uri: &str) -> bool {
    let lower = uri.to_ascii_lowercase();
    if lower.contains('\\') || lower.contains("%2e") || lower.contains("%2f") || lower.contains("%5c") || lower.contains("%00") {
        return false;
    }
    if uri.chars().any(char::is_control) {
        return false;
    }
    let path = uri.split(['?', '#']).next().unwrap_or_default();
    !path.split('/').any(|seg| seg == "." || seg == "..")
}

/// Which list result a response carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListKind {
    Tools,
    Resources,
    ResourceTemplates,
    Prompts,
}

/// What a sandbox's message is, for forwarding, filtering and the audit.
#[derive(Debug, Clone, PartialEq)]
pub struct Call {
    pub method: Option<String>,
    pub id: Option<Value>,
    /// The tool or prompt name, or resource URI, the message targets.
    pub target: Option<String>,
    /// Names (never values) of a tool call's arguments.
    pub arg_names: Vec<String>,
    pub list: Option<ListKind>,
}

/// The decision on one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Forward(Call),
    /// Answer with this JSON-RPC error response; the origin sees nothing.
    Refuse { call: Call, response: Vec<u8>, reason: &'static str },
}

/// A message that is not valid JSON-RPC for this broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McpError {
    TooLarge,
    Parse,
    Batch,
    Invalid(&'static str),
}

impl McpError {
    /// The JSON-RPC error body for the sandbox (id unknown: null).
    pub fn response(&self) -> Vec<u8> {
        let (code, message) = match self {
            McpError::TooLarge => (-32600, "message too large"),
            McpError::Parse => (-32700, "parse error"),
            McpError::Batch => (-32600, "batches are not supported"),
            McpError::Invalid(why) => (-32600, *why),
        };
        error_response(&Value::Null, code, message)
    }

    pub fn code(&self) -> &'static str {
        match self {
            McpError::TooLarge => "mcp_message_too_large",
            _ => "mcp_invalid_message",
        }
    }
}

fn error_response(id: &Value, code: i64, message: &str) -> Vec<u8> {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}).to_string().into_bytes()
}

fn str_param<'a>(params: Option<&'a Map<String, Value>>, key: &str) -> Option<&'a str> {
    params?.get(key)?.as_str()
}

/// Inspects one message from the sandbox against the server's rules and
/// the session's level for the server.
pub fn inspect(body: &[u8], rules: &McpRules, granted: Level) -> Result<Verdict, McpError> {
    if body.len() > MAX_MESSAGE {
        return Err(McpError::TooLarge);
    }
    let value: Value = serde_json::from_slice(body).map_err(|_| McpError::Parse)?;
    let msg = match value {
        Value::Object(m) => m,
        Value::Array(_) => return Err(McpError::Batch),
        _ => return Err(McpError::Invalid("a message must be an object")),
    };
    if msg.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(McpError::Invalid("jsonrpc must be \"2.0\""));
    }
    let id = match msg.get("id") {
        None => None,
        Some(v @ (Value::String(_) | Value::Number(_))) => Some(v.clone()),
        Some(_) => return Err(McpError::Invalid("id must be a string or a number")),
    };
    let params = match msg.get("params") {
        None => None,
        Some(Value::Object(p)) => Some(p),
        Some(_) => return Err(McpError::Invalid("params must be an object")),
    };
    let Some(method) = msg.get("method") else {
        // A response to a server request (sampling, elicitation, roots).
        if id.is_some() && (msg.contains_key("result") || msg.contains_key("error")) {
            return Ok(Verdict::Forward(Call { method: None, id, target: None, arg_names: Vec::new(), list: None }));
        }
        return Err(McpError::Invalid("neither a request, a notification nor a response"));
    };
    let method = method.as_str().ok_or(McpError::Invalid("method must be a string"))?.to_string();
    let mut call = Call { method: Some(method.clone()), id: id.clone(), target: None, arg_names: Vec::new(), list: None };
    let Some(id) = id else {
        // Notifications carry no answer; only the protocol's own pass.
        if method.starts_with("notifications/") {
            return Ok(Verdict::Forward(call));
        }
        return Err(McpError::Invalid("unknown notification"));
    };
    let refuse = |call: Call, code: i64, message: &str, reason: &'static str| {
        Ok(Verdict::Refuse { response: error_response(&id, code, message), call, reason })
    };
    match method.as_str() {
        "initialize" | "ping" | "logging/setLevel" => Ok(Verdict::Forward(call)),
        "tools/list" => Ok(Verdict::Forward(Call { list: Some(ListKind::Tools), ..call })),
        "resources/list" => Ok(Verdict::Forward(Call { list: Some(ListKind::Resources), ..call })),
        "resources/templates/list" => Ok(Verdict::Forward(Call { list: Some(ListKind::ResourceTemplates), ..call })),
        "prompts/list" => Ok(Verdict::Forward(Call { list: Some(ListKind::Prompts), ..call })),
        "tools/call" => {
            let name = str_param(params, "name").unwrap_or_default().to_string();
            call.arg_names = params
                .and_then(|p| p.get("arguments"))
                .and_then(Value::as_object)
                .map(|a| a.keys().cloned().collect())
                .unwrap_or_default();
            call.target = Some(name.clone());
            if rules.tool_allowed(&name, granted) {
                Ok(Verdict::Forward(call))
            } else {
                // The same answer for a tool that exists and one that does not.
                refuse(call, -32602, "Tool not found", "mcp_tool_not_allowed")
            }
        }
        "prompts/get" => {
            let name = str_param(params, "name").unwrap_or_default().to_string();
            call.target = Some(name.clone());
            if rules.prompt_allowed(&name, granted) {
                Ok(Verdict::Forward(call))
            } else {
                refuse(call, -32602, "Prompt not found", "mcp_prompt_not_allowed")
            }
        }
        "resources/read" | "resources/subscribe" | "resources/unsubscribe" => {
            let uri = str_param(params, "uri").unwrap_or_default().to_string();
            call.target = Some(uri.clone());
            if rules.resource_allowed(&uri, granted) {
                Ok(Verdict::Forward(call))
            } else {
                refuse(call, -32002, "Resource not found", "mcp_resource_not_allowed")
            }
        }
        "completion/complete" => {
            let reference = params.and_then(|p| p.get("ref")).and_then(Value::as_object);
            let kind = reference.and_then(|r| r.get("type")).and_then(Value::as_str);
            let ok = match kind {
                Some("ref/prompt") => {
                    let name = reference.and_then(|r| r.get("name")).and_then(Value::as_str).unwrap_or_default();
                    call.target = Some(name.to_string());
                    rules.prompt_allowed(name, granted)
                }
                Some("ref/resource") => {
                    let uri = reference.and_then(|r| r.get("uri")).and_then(Value::as_str).unwrap_or_default();
                    call.target = Some(uri.to_string());
                    rules.resource_allowed(uri, granted)
                }
                _ => false,
            };
            if ok {
                Ok(Verdict::Forward(call))
            } else {
                refuse(call, -32602, "Reference not found", "mcp_completion_not_allowed")
            }
        }
        _ => refuse(call, -32601, "Method not found", "mcp_method_not_allowed"),
    }
}

/// Keeps only the list items the session may use.
fn filter_list(kind: ListKind, result: &mut Map<String, Value>, rules: &McpRules, granted: Level) {
    let (key, field) = match kind {
        ListKind::Tools => ("tools", "name"),
        ListKind::Resources => ("resources", "uri"),
        ListKind::ResourceTemplates => ("resourceTemplates", "uriTemplate"),
        ListKind::Prompts => ("prompts", "name"),
    };
    let keep = |item: &Value| {
        let Some(v) = item.get(field).and_then(Value::as_str) else {
            return false;
        };
        match kind {
            ListKind::Tools => rules.tool_allowed(v, granted),
            ListKind::Prompts => rules.prompt_allowed(v, granted),
            ListKind::Resources | ListKind::ResourceTemplates => rules.resource_allowed(v, granted),
        }
    };
    match result.get_mut(key) {
        Some(Value::Array(items)) => items.retain(keep),
        // A list result without its list (or of the wrong shape) is emptied.
        _ => {
            result.insert(key.to_string(), Value::Array(Vec::new()));
        }
    }
}

/// Filters one message from the origin. A response to `call` that carries a
/// list keeps only the allowed items; anything else passes unchanged. A
/// list response that cannot be parsed is replaced by an error, never
/// passed on unfiltered.
pub fn filter_message(message: &[u8], call: &Call, rules: &McpRules, granted: Level) -> Vec<u8> {
    let Some(kind) = call.list else {
        return message.to_vec();
    };
    let id = call.id.clone().unwrap_or(Value::Null);
    let Ok(Value::Object(mut msg)) = serde_json::from_slice::<Value>(message) else {
        // Empty data (an SSE priming event) or anything that is not an object
        // cannot be a list result: pass it. An object this parser refuses is
        // replaced, in case a more lenient client parser would accept it.
        let looks_like_object = message.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
        return if looks_like_object { error_response(&id, -32603, "malformed list response") } else { message.to_vec() };
    };
    if msg.get("id") != Some(&id) {
        return message.to_vec();
    }
    match msg.get_mut("result") {
        Some(Value::Object(result)) => filter_list(kind, result, rules, granted),
        Some(_) => return error_response(&id, -32603, "malformed list response"),
        None => return message.to_vec(),
    }
    Value::Object(msg).to_string().into_bytes()
}

/// An MCP event stream as the sandbox receives it: cut into whole events;
/// the list response to the sandbox's request is filtered; every event is
/// scrubbed as a unit, so redaction never breaks the framing. Events that
/// need no change pass byte for byte.
pub struct EventFilter {
    splitter: EventSplitter,
    redactor: Redactor,
    call: Option<Call>,
    rules: McpRules,
    granted: Level,
}

impl EventFilter {
    pub fn new(redactor: Redactor, call: Option<Call>, rules: McpRules, granted: Level) -> EventFilter {
        EventFilter { splitter: EventSplitter::new(), redactor, call, rules, granted }
    }

    fn event(&self, event: &[u8]) -> Vec<u8> {
        let rewritten = match (&self.call, sse::data(event)) {
            (Some(call), Some(data)) if call.list.is_some() => {
                let filtered = filter_message(&data, call, &self.rules, self.granted);
                (filtered != data).then(|| sse::with_data(event, &filtered))
            }
            _ => None,
        };
        self.redactor.redact(rewritten.as_deref().unwrap_or(event))
    }
}

impl BodyFilter for EventFilter {
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<u8>, &'static str> {
        let events = self.splitter.push(chunk).map_err(|_| "too_large")?;
        Ok(events.iter().flat_map(|e| self.event(e)).collect())
    }

    fn finish(&mut self) -> Vec<u8> {
        let rest = self.splitter.finish();
        self.event(&rest)
    }
}

/// Whether a session id is something we can pass in a header.
fn visible_ascii(s: &str) -> bool {
    !s.is_empty() && s.len() <= 512 && s.bytes().all(|b| (0x21..=0x7e).contains(&b))
}

fn binding_input(session_id: &str, origin_sid: &str) -> Vec<u8> {
    format!("airlock-mcp-session\0{session_id}\0{origin_sid}").into_bytes()
}

/// The `Mcp-Session-Id` handed to the sandbox: the origin's id, tagged
/// with a MAC over it and the Airlock session id. `None` if the origin's
/// id is not visible ASCII (as the MCP spec requires).
pub fn bind_session_id(origin_sid: &str, session_id: &str, ring: &KeyRing) -> Option<String> {
    if !visible_ascii(origin_sid) {
        return None;
    }
    let tag = ring.tag(&binding_input(session_id, origin_sid));
    Some(format!("{}.{origin_sid}", URL_SAFE_NO_PAD.encode(&tag[..16])))
}

/// The origin's session id inside a bound id, if it was bound to this
/// Airlock session (by any key still in the ring).
pub fn unbind_session_id(presented: &str, session_id: &str, ring: &KeyRing) -> Option<String> {
    let (tag, origin_sid) = presented.split_once('.')?;
    let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
    if tag.len() != 16 || !visible_ascii(origin_sid) {
        return None;
    }
    ring.check_tag(&binding_input(session_id, origin_sid), &tag).then(|| origin_sid.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use Level::*;

    fn rules() -> McpRules {
        McpRules {
            tools: [("search".to_string(), Read), ("create_issue".to_string(), Write), ("delete_repo".to_string(), Admin)].into_iter().collect(),
            default_tool: None,
            resources: vec![("file:///docs/".into(), Read), ("file:///docs/secret/".into(), Admin)],
            prompts: [("summarize".to_string(), Read)].into_iter().collect(),
        }
    }

    fn verdict(body: &str, granted: Level) -> Result<Verdict, McpError> {
        inspect(body.as_bytes(), &rules(), granted)
    }

    #[test]
    fn calls_are_decided_by_name_and_level() {
        // (message, granted level, forwarded?)
        let table: &[(&str, Level, bool)] = &[
            (r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"q":"x"}}}"#, Read, true),
            (r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_issue"}}"#, Read, false),
            (r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"create_issue"}}"#, Write, true),
            (r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_repo"}}"#, Write, false),
            (r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"unlisted"}}"#, Admin, false),
            (r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{}}"#, Admin, false),
            (r#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#, Admin, false),
            (r#"{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///docs/a.md"}}"#, Read, true),
            (r#"{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///docs/secret/k"}}"#, Write, false),
            (r#"{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///etc/passwd"}}"#, Admin, false),
            (r#"{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///docs/../etc/passwd"}}"#, Admin, false),
            (r#"{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///docs/a/../secret/k"}}"#, Admin, false),
            (r#"{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///docs/%2e%2e/secret/k"}}"#, Admin, false),
            (r#"{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///docs/.%2E/x"}}"#, Admin, false),
            (r#"{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///docs/./a"}}"#, Admin, false),
            (r#"{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///docs/..\\secret\\k"}}"#, Admin, false),
            (r#"{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///docs/a%2f..%2fsecret"}}"#, Admin, false),
            (r#"{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///docs/a..b/c"}}"#, Read, true),
            (r#"{"jsonrpc":"2.0","id":2,"method":"resources/subscribe","params":{"uri":"file:///docs/a"}}"#, Read, true),
            (r#"{"jsonrpc":"2.0","id":3,"method":"prompts/get","params":{"name":"summarize"}}"#, Read, true),
            (r#"{"jsonrpc":"2.0","id":3,"method":"prompts/get","params":{"name":"jailbreak"}}"#, Admin, false),
            (r#"{"jsonrpc":"2.0","id":4,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"summarize"}}}"#, Read, true),
            (r#"{"jsonrpc":"2.0","id":4,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"other"}}}"#, Admin, false),
            (r#"{"jsonrpc":"2.0","id":5,"method":"initialize","params":{}}"#, Read, true),
            (r#"{"jsonrpc":"2.0","id":"p","method":"ping"}"#, Read, true),
            (r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#, Read, true),
            (r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}"#, Read, true),
            (r#"{"jsonrpc":"2.0","id":9,"result":{"roots":[]}}"#, Read, true),
            (r#"{"jsonrpc":"2.0","id":9,"error":{"code":-1,"message":"no"}}"#, Read, true),
            (r#"{"jsonrpc":"2.0","id":6,"method":"sampling/createMessage"}"#, Admin, false),
            (r#"{"jsonrpc":"2.0","id":6,"method":"tools/delete"}"#, Admin, false),
        ];
        for (body, granted, forward) in table {
            match verdict(body, *granted) {
                Ok(Verdict::Forward(_)) => assert!(forward, "forwarded: {body}"),
                Ok(Verdict::Refuse { response, .. }) => {
                    assert!(!forward, "refused: {body}");
                    let v: Value = serde_json::from_slice(&response).unwrap();
                    assert!(v["error"]["code"].is_i64(), "{body}");
                }
                Err(e) => panic!("{body}: {e:?}"),
            }
        }
    }

    #[test]
    fn denied_and_unknown_tools_get_the_same_answer() {
        let a = verdict(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"delete_repo"}}"#, Read).unwrap();
        let b = verdict(r#"{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"no_such_tool"}}"#, Read).unwrap();
        let (Verdict::Refuse { response: ra, .. }, Verdict::Refuse { response: rb, .. }) = (a, b) else { panic!() };
        assert_eq!(ra, rb);
        assert_eq!(ra, br#"{"error":{"code":-32602,"message":"Tool not found"},"id":7,"jsonrpc":"2.0"}"#.to_vec());
    }

    #[test]
    fn audit_facts_are_names_not_values() {
        let Verdict::Forward(call) = verdict(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"query":"my secret search","limit":5}}}"#, Read).unwrap() else { panic!() };
        assert_eq!(call.target.as_deref(), Some("search"));
        assert_eq!(call.arg_names, vec!["limit", "query"]);
        assert!(!format!("{call:?}").contains("my secret search"));
    }

    #[test]
    fn malformed_messages_fail_closed() {
        let table: &[(&str, McpError)] = &[
            ("{", McpError::Parse),
            ("", McpError::Parse),
            (r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#, McpError::Batch),
            ("42", McpError::Invalid("a message must be an object")),
            (r#"{"id":1,"method":"ping"}"#, McpError::Invalid("jsonrpc must be \"2.0\"")),
            (r#"{"jsonrpc":"1.0","id":1,"method":"ping"}"#, McpError::Invalid("jsonrpc must be \"2.0\"")),
            (r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#, McpError::Invalid("id must be a string or a number")),
            (r#"{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"search"}}"#, McpError::Invalid("id must be a string or a number")),
            (r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":["search"]}"#, McpError::Invalid("params must be an object")),
            (r#"{"jsonrpc":"2.0","id":1,"method":7}"#, McpError::Invalid("method must be a string")),
            (r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"delete_repo"}}"#, McpError::Invalid("unknown notification")),
            (r#"{"jsonrpc":"2.0","id":1}"#, McpError::Invalid("neither a request, a notification nor a response")),
        ];
        for (body, want) in table {
            assert_eq!(verdict(body, Admin).unwrap_err(), *want, "{body}");
        }
        let big = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"ping","params":{{"pad":"{}"}}}}"#, "x".repeat(MAX_MESSAGE));
        assert_eq!(verdict(&big, Admin).unwrap_err(), McpError::TooLarge);
    }

    #[test]
    fn lists_are_filtered() {
        let Verdict::Forward(call) = verdict(r#"{"jsonrpc":"2.0","id":"L1","method":"tools/list","params":{"cursor":"c"}}"#, Write).unwrap() else { panic!() };
        let response = br#"{"jsonrpc":"2.0","id":"L1","result":{"tools":[{"name":"search"},{"name":"create_issue"},{"name":"delete_repo"},{"name":"hidden"},{"noname":1}],"nextCursor":"n"}}"#;
        let out: Value = serde_json::from_slice(&filter_message(response, &call, &rules(), Write)).unwrap();
        let names: Vec<&str> = out["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(names, vec!["search", "create_issue"]);
        assert_eq!(out["result"]["nextCursor"], "n", "paging survives");
        // Another id, or a notification, passes untouched.
        let other = br#"{"jsonrpc":"2.0","id":"L2","result":{"tools":[{"name":"hidden"}]}}"#;
        assert_eq!(filter_message(other, &call, &rules(), Write), other.to_vec());
        // An object this parser refuses is replaced, not passed on (a lone
        // surrogate: JSON.parse would accept it).
        let bad = filter_message(br#"{"jsonrpc":"2.0","id":"L1","result":{"tools":[{"name":"hidden\ud800"}]}}"#, &call, &rules(), Write);
        assert!(String::from_utf8(bad).unwrap().contains("-32603"));
        let bad = filter_message(b"  {not json", &call, &rules(), Write);
        assert!(String::from_utf8(bad).unwrap().contains("-32603"));
        // Empty data (a resumable server's priming event) or a non-object passes.
        assert_eq!(filter_message(b"", &call, &rules(), Write), b"".to_vec());
        assert_eq!(filter_message(b"42", &call, &rules(), Write), b"42".to_vec());
        // A result with the wrong shape is emptied.
        let odd = br#"{"jsonrpc":"2.0","id":"L1","result":{"tools":{"name":"hidden"}}}"#;
        let out: Value = serde_json::from_slice(&filter_message(odd, &call, &rules(), Write)).unwrap();
        assert_eq!(out["result"]["tools"], json!([]));

        let Verdict::Forward(call) = verdict(r#"{"jsonrpc":"2.0","id":2,"method":"resources/list"}"#, Read).unwrap() else { panic!() };
        let response = br#"{"jsonrpc":"2.0","id":2,"result":{"resources":[{"uri":"file:///docs/a"},{"uri":"file:///docs/secret/b"},{"uri":"https://x"}]}}"#;
        let out: Value = serde_json::from_slice(&filter_message(response, &call, &rules(), Read)).unwrap();
        assert_eq!(out["result"]["resources"], json!([{"uri": "file:///docs/a"}]));

        let Verdict::Forward(call) = verdict(r#"{"jsonrpc":"2.0","id":3,"method":"prompts/list"}"#, Admin).unwrap() else { panic!() };
        let response = br#"{"jsonrpc":"2.0","id":3,"result":{"prompts":[{"name":"summarize"},{"name":"jailbreak"}]}}"#;
        let out: Value = serde_json::from_slice(&filter_message(response, &call, &rules(), Admin)).unwrap();
        assert_eq!(out["result"]["prompts"], json!([{"name": "summarize"}]));
    }

    fn run_filter(chunks: &[&[u8]], call: Option<Call>, granted: Level) -> Vec<u8> {
        let redactor = Redactor::new(vec![crate::secret::Secret::new(b"SECRET-TOKEN-1".to_vec())]);
        let mut f = EventFilter::new(redactor, call, rules(), granted);
        let mut out = Vec::new();
        for c in chunks {
            out.extend(f.push(c).unwrap());
        }
        out.extend(f.finish());
        out
    }

    #[test]
    fn event_streams_are_filtered_and_scrubbed_at_any_chunking() {
        let Verdict::Forward(call) = verdict(r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#, Read).unwrap() else { panic!() };
        let stream: &[u8] = b": keep-alive comment\n\n\
id: ev-1\r\nevent: message\r\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/message\",\r\ndata: \"params\":{\"data\":\"token SECRET-TOKEN-1\"}}\r\n\r\n\
retry: 3000\n\n\
id: ev-2\nevent: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":5,\"result\":{\"tools\":[{\"name\":\"search\"},{\"name\":\"delete_repo\"},{\"name\":\"hidden\"}]}}\n\n";
        let once = run_filter(&[stream], Some(call.clone()), Read);
        let text = String::from_utf8(once.clone()).unwrap();
        assert!(text.starts_with(": keep-alive comment\n\nid: ev-1\r\nevent: message\r\n"), "untouched events keep their bytes: {text}");
        assert!(!text.contains("SECRET-TOKEN-1") && text.contains("token [REDACTED]"), "{text}");
        assert!(text.contains("retry: 3000\n\n"));
        assert!(text.contains("id: ev-2\nevent: message\ndata: "), "framing kept: {text}");
        assert!(text.contains(r#"{"name":"search"}"#) && !text.contains("delete_repo") && !text.contains("hidden"), "{text}");
        // Every two-way split gives the same bytes.
        for i in 0..=stream.len() {
            assert_eq!(run_filter(&[&stream[..i], &stream[i..]], Some(call.clone()), Read), once, "split at {i}");
        }
        // One byte at a time.
        let bytes: Vec<&[u8]> = stream.chunks(1).collect();
        assert_eq!(run_filter(&bytes, Some(call), Read), once);
    }

    #[test]
    fn a_priming_event_passes_and_the_list_after_it_is_filtered() {
        let Verdict::Forward(call) = verdict(r#"{"jsonrpc":"2.0","id":42,"method":"tools/list"}"#, Read).unwrap() else { panic!() };
        let stream: &[u8] = b"id: S::3\nretry: 1000\ndata: \n\nevent: message\nid: S::4\ndata: {\"result\":{\"tools\":[{\"name\":\"search\"},{\"name\":\"hidden\"}]},\"jsonrpc\":\"2.0\",\"id\":42}\n\n";
        let out = String::from_utf8(run_filter(&[stream], Some(call), Read)).unwrap();
        assert!(out.starts_with("id: S::3\nretry: 1000\ndata: \n\n"), "{out}");
        assert!(out.contains("search") && !out.contains("hidden") && !out.contains("-32603"), "{out}");
    }

    #[test]
    fn streams_without_a_list_call_pass_except_for_secrets() {
        let stream: &[u8] = b"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"hidden\"}]}}\n\n";
        // Not a response to a list request of this POST: left as is.
        assert_eq!(run_filter(&[stream], None, Read), stream.to_vec());
        let unterminated: &[u8] = b"data: SECRET-TOKEN-1 at the end";
        assert_eq!(run_filter(&[unterminated], None, Read), b"data: [REDACTED] at the end".to_vec());
    }

    #[test]
    fn session_ids_are_bound_to_the_airlock_session() {
        let ring = KeyRing::parse("k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap();
        let bound = bind_session_id("origin-sid-123", "session-a", &ring).unwrap();
        assert!(bound.ends_with(".origin-sid-123"));
        assert_eq!(unbind_session_id(&bound, "session-a", &ring).as_deref(), Some("origin-sid-123"));
        assert_eq!(unbind_session_id(&bound, "session-b", &ring), None, "another session cannot use it");
        assert_eq!(unbind_session_id("origin-sid-123", "session-a", &ring), None, "a raw origin id is refused");
        let forged = bound.replace("origin-sid-123", "origin-sid-124");
        assert_eq!(unbind_session_id(&forged, "session-a", &ring), None);
        assert_eq!(bind_session_id("bad id", "s", &ring), None);
        // Survives rotation while the old key is listed.
        let rotated = KeyRing::parse("k2:ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=,k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap();
        assert_eq!(unbind_session_id(&bound, "session-a", &rotated).as_deref(), Some("origin-sid-123"));
    }
}
