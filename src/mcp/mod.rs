//! MCP: per-tool scope inside JSON-RPC, filtered lists, bound session ids.
//!
//! Invariants:
//! - Default deny inside the server too: `tools/call`, `prompts/get`,
//!   `resources/read` (and subscriptions and completions that name them) go
//!   to the origin only if the policy grants the named tool, prompt or URI
//!   prefix at a level the session holds. A refusal is answered by Airlock
//!   with the same JSON-RPC error whether the name exists or not.
//! - Forward what was decided: a message is read once, strictly, and the
//!   origin receives the canonical serialization of that reading (ASCII
//!   JSON, sorted keys), never the sandbox's bytes. Anything another JSON
//!   reader could see differently is refused before a decision: non-UTF-8
//!   or a BOM, duplicate keys at any depth (escaped or not), keys with
//!   control or invisible characters, sibling keys equal under case or
//!   Unicode folding, protocol keys respelled (`Method`, `NAME`, `ſ`,
//!   KELVIN SIGN, fullwidth), ids other than strings and safe integers,
//!   and a request charset other than UTF-8.
//! - List results (`tools`, `resources`, `resourceTemplates`, `prompts` in
//!   a `result`) reach the sandbox holding only what it may use, on every
//!   stream, matched by shape and never by id; an origin message that
//!   cannot be read strictly is replaced by an error, never passed.
//! - Unknown methods, batches and malformed messages fail closed.
//! - An origin's `Mcp-Session-Id` is handed out bound to the Airlock session
//!   (MAC-tagged), so it cannot be replayed from another session.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::de::{self, DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::Serialize;
use serde_json::ser::Formatter;
use serde_json::{json, Map, Value};

use crate::level::Level;
use crate::redact::{BodyFilter, Redactor};
use crate::sse::{self, EventSplitter};
use crate::token::KeyRing;

pub mod era;
pub mod gate;

pub use era::Era;
pub use gate::McpGate;

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
    /// Tool name -> its approval gate and duplicate suppression (a list:
    /// one more map type would cost the request path's Wasm more than a
    /// scan of a few entries costs a call).
    pub gates: Vec<(String, McpGate)>,
}

fn allowed(needed: Option<Level>, granted: Level) -> bool {
    needed.is_some_and(|n| n <= granted)
}

impl McpRules {
    /// The gate of tool `name`, if the policy gates it.
    pub fn gate(&self, name: &str) -> Option<McpGate> {
        self.gates.iter().find(|(n, _)| n == name).map(|(_, g)| *g)
    }

    pub fn tool_allowed(&self, name: &str, granted: Level) -> bool {
        allowed(self.tools.get(name).copied().or(self.default_tool), granted)
    }

    /// Whether the session can use any tool, prompt or resource at all
    /// (what `server/discover` may advertise).
    pub fn any_tool(&self, granted: Level) -> bool {
        self.default_tool.is_some_and(|l| l <= granted) || self.tools.values().any(|l| *l <= granted)
    }

    pub fn any_prompt(&self, granted: Level) -> bool {
        self.prompts.values().any(|l| *l <= granted)
    }

    pub fn any_resource(&self, granted: Level) -> bool {
        self.resources.iter().any(|(_, l)| *l <= granted)
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
    /// The request id, already checked to be a string or an integer within
    /// ±(2^53−1), so every JSON reader sees the same id.
    pub id: Option<Value>,
    /// The tool or prompt name, or resource URI, the message targets.
    pub target: Option<String>,
    /// Names (never values) of a tool call's arguments.
    pub arg_names: Vec<String>,
    pub list: Option<ListKind>,
    pub era: Era,
    /// The request metadata headers Airlock sends upstream (2026-07-28:
    /// its own spelling of the values checked against the body).
    pub headers: Vec<(String, String)>,
    /// What an allowed call to a gated or deduplicated tool binds (and a
    /// call carrying Airlock's own `requestState`).
    pub bound: Option<Box<gate::Bound>>,
}

/// The bytes to send to the origin: the canonical serialization of exactly
/// the message that was authorized. Only [`inspect`] builds one, so the edge
/// cannot forward the sandbox's own bytes by mistake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CanonicalBody(Vec<u8>);

impl CanonicalBody {
    /// ASCII-only JSON (non-ASCII escaped as `\uXXXX`), sorted keys, no
    /// duplicates; send it with `Content-Type: application/json`.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.0
    }
}

/// The Content-Type to send with a [`CanonicalBody`].
pub const CANONICAL_CONTENT_TYPE: &str = "application/json";

/// The decision on one message.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Send `body` to the origin, never the bytes received: a second parser
    /// upstream must read exactly what was authorized.
    Forward { call: Call, body: CanonicalBody },
    /// Answer with this JSON-RPC error response; the origin sees nothing.
    /// `status` is the HTTP status to answer with (200 in the handshake
    /// era, the 2026-07-28 transport's status for the code otherwise).
    Refuse { call: Call, response: Vec<u8>, reason: &'static str, status: u16 },
}

impl Verdict {
    pub fn call(&self) -> &Call {
        match self {
            Verdict::Forward { call, .. } | Verdict::Refuse { call, .. } => call,
        }
    }
}

pub use crate::error::McpError;

fn error_response(id: &Value, code: i64, message: &str) -> Vec<u8> {
    canonical(&json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}}))
}

// ---- strict reading --------------------------------------------------------

/// Reads JSON as serde_json does, but refuses every message another JSON
/// reader could see differently: duplicate keys (first-match routers take the
/// first, serde the last), keys with control or invisible characters (some
/// decoders drop trailing NULs), and sibling keys equal under case or
/// Unicode folding (Go's encoding/json matches `Name`, `NAME` and `nAme`
/// with KELVIN SIGN / LONG S to the same field).
#[derive(Clone, Copy)]
struct Strict<'a> {
    /// Set when the refusal is ours, not a syntax error.
    why: &'a Cell<Option<&'static str>>,
}

impl Strict<'_> {
    fn refuse<E: de::Error>(self, why: &'static str) -> E {
        self.why.set(Some(why));
        E::custom(why)
    }
}

impl<'de> DeserializeSeed<'de> for Strict<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Strict<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        serde_json::Number::from_f64(v).map(Value::Number).ok_or_else(|| self.refuse("a number out of range"))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(self)? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        let mut folded = BTreeSet::new();
        // Keys arrive with their escapes decoded, so `"na\u006de"` is caught
        // as a duplicate of `"name"`.
        while let Some(key) = map.next_key::<String>()? {
            if key.chars().any(invisible) {
                return Err(self.refuse("a key holds a control or invisible character"));
            }
            if out.contains_key(&key) {
                return Err(self.refuse("duplicate key"));
            }
            if !folded.insert(fold(&key)) {
                return Err(self.refuse("keys that differ only in case or form"));
            }
            let value = map.next_value_seed(self)?;
            out.insert(key, value);
        }
        Ok(Value::Object(out))
    }
}

/// Characters some decoder drops, stops at or ignores inside a key, so
/// `"name\u0000"` or `"na\u200bme"` could be read as `name`.
fn invisible(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{00ad}' | '\u{034f}' | '\u{061c}' | '\u{180e}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{206f}' | '\u{feff}' | '\u{fff9}'..='\u{fffb}')
}

/// A key as a case-insensitive reader matches it (Go's `EqualFold`, Java's
/// and .NET's ignore-case, Python's `casefold`): fullwidth forms to ASCII,
/// then lower case, with the letters whose upper case lowers to another
/// letter spelled out (KELVIN SIGN → `k` comes from lower case; LONG S →
/// `s`, final sigma → `σ`, dotless ı → `i`, MICRO SIGN → `μ`, the Greek
/// symbol forms) and the full foldings into ASCII (`ß`/`ẞ` → `ss`, the
/// Latin ligatures `ﬀ`…`ﬆ`). Lower case alone keeps the Wasm 7 KB smaller
/// than upper-then-lower case, whose tables are mostly these letters.
fn fold(key: &str) -> String {
    let mut out = String::with_capacity(key.len());
    for c in key.chars() {
        let c = match c {
            '\u{ff01}'..='\u{ff5e}' => char::from_u32(c as u32 - 0xfee0).unwrap_or(c),
            _ => c,
        };
        match c {
            '\u{17f}' => out.push('s'),
            '\u{130}' | '\u{131}' => out.push('i'),
            '\u{3c2}' => out.push('\u{3c3}'),
            '\u{b5}' => out.push('\u{3bc}'),
            '\u{3d0}' => out.push('\u{3b2}'),
            '\u{3d1}' => out.push('\u{3b8}'),
            '\u{3d5}' => out.push('\u{3c6}'),
            '\u{3d6}' => out.push('\u{3c0}'),
            '\u{3f0}' => out.push('\u{3ba}'),
            '\u{3f1}' => out.push('\u{3c1}'),
            '\u{3f5}' => out.push('\u{3b5}'),
            '\u{1e9b}' => out.push('\u{1e61}'),
            '\u{1fbe}' => out.push('\u{3b9}'),
            '\u{df}' | '\u{1e9e}' => out.push_str("ss"),
            '\u{fb00}' => out.push_str("ff"),
            '\u{fb01}' => out.push_str("fi"),
            '\u{fb02}' => out.push_str("fl"),
            '\u{fb03}' => out.push_str("ffi"),
            '\u{fb04}' => out.push_str("ffl"),
            '\u{fb05}' | '\u{fb06}' => out.push_str("st"),
            c => out.extend(c.to_lowercase()),
        }
    }
    out
}

/// Parses strict UTF-8 JSON with [`Strict`]; a BOM or invalid UTF-8 anywhere
/// is refused before serde sees it (a lenient decoder may skip the BOM or
/// substitute the bytes).
pub(crate) fn parse_strict(bytes: &[u8]) -> Result<Value, McpError> {
    strict(bytes).map_err(|(why, _)| why.map_or(McpError::Parse, McpError::Invalid))
}

/// Strict JSON (as [`parse_strict`] reads it) for configuration: the error
/// says why, with the line and column of a syntax error.
pub(crate) fn strict_json(bytes: &[u8]) -> Result<Value, String> {
    strict(bytes).map_err(|(why, syntax)| match why {
        Some(why) => why.to_string(),
        None => syntax,
    })
}

/// Our refusal, or the parser's own description of a syntax error.
fn strict(bytes: &[u8]) -> Result<Value, (Option<&'static str>, String)> {
    if bytes.starts_with(b"\xef\xbb\xbf") {
        return Err((Some("a byte order mark is not allowed"), String::new()));
    }
    if std::str::from_utf8(bytes).is_err() {
        return Err((Some("the message is not UTF-8"), String::new()));
    }
    let why = Cell::new(None);
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let parsed = Strict { why: &why }.deserialize(&mut de).and_then(|v| de.end().map(|()| v));
    parsed.map_err(|e| (why.get(), e.to_string()))
}

/// Escapes every non-ASCII character as `\uXXXX`, so the canonical bytes
/// read the same under any ASCII-compatible charset.
struct AsciiFormatter;

impl Formatter for AsciiFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()> {
        for c in fragment.chars() {
            if c.is_ascii() {
                writer.write_all(&[c as u8])?;
            } else {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(writer, "\\u{unit:04x}")?;
                }
            }
        }
        Ok(())
    }
}

/// The canonical serialization of a parsed value: sorted keys (serde_json's
/// map), no whitespace, ASCII only.
pub fn canonical(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, AsciiFormatter);
    // Writing a `Value` to a Vec cannot fail; an empty body would be
    // refused by any reader rather than misread.
    if value.serialize(&mut ser).is_err() {
        out.clear();
    }
    out
}

// ---- the sandbox's messages ------------------------------------------------

/// Keys the protocol gives meaning to at its own levels (the message,
/// `params`, `params.ref`, `params._meta`).
const PROTOCOL_KEYS: &[&str] = &[
    "jsonrpc",
    "method",
    "id",
    "params",
    "result",
    "error",
    "name",
    "uri",
    "arguments",
    "ref",
    "type",
    "_meta",
    "cursor",
    "argument",
    "progressToken",
    era::VERSION_META,
    "inputResponses",
    "requestState",
    "notifications",
    "resourceSubscriptions",
];

/// Refuses, at a protocol level, any key a case-insensitive reader would
/// take for a protocol key it is not (`Method`, `NAME`, `ſ`/KELVIN SIGN or
/// fullwidth spellings: non-ASCII keys are refused there outright).
fn check_protocol_keys(level: Option<&Value>) -> Result<(), McpError> {
    let Some(Value::Object(obj)) = level else {
        return Ok(());
    };
    for key in obj.keys() {
        if !key.is_ascii() {
            return Err(McpError::Invalid("a protocol-level key must be ASCII"));
        }
        if PROTOCOL_KEYS.iter().any(|p| *p != key && p.eq_ignore_ascii_case(key)) {
            return Err(McpError::Invalid("a key spelled like a protocol key"));
        }
    }
    Ok(())
}

/// Largest integer every JSON reader holds exactly (JavaScript's
/// `Number.MAX_SAFE_INTEGER`).
pub const MAX_SAFE_ID: u64 = (1 << 53) - 1;

/// A request id every reader sees the same: a string, or an integer within
/// ±(2^53−1). `1.0`, `1e0` and `-0` are floats to serde but `1` and `0` to
/// JavaScript, so a response could be matched to the wrong request.
fn safe_id(id: &Value) -> bool {
    match id {
        Value::String(_) => true,
        Value::Number(n) => n.as_u64().is_some_and(|u| u <= MAX_SAFE_ID) || n.as_i64().is_some_and(|i| i.unsigned_abs() <= MAX_SAFE_ID),
        _ => false,
    }
}

/// Checks the request's `Content-Type`: `application/json`, with no
/// parameter but an optional `charset=utf-8` (any case, optionally quoted).
/// A server honouring another charset (express reads `utf-7`, where
/// `"+AG4-ame"` is `"name"`) would read other text than was authorized.
pub fn check_content_type(value: Option<&str>) -> Result<(), McpError> {
    let refused = McpError::Invalid("Content-Type must be application/json (UTF-8)");
    let value = value.ok_or(refused.clone())?;
    let mut parts = value.split(';');
    let media = parts.next().unwrap_or_default().trim_matches([' ', '\t']);
    if !media.eq_ignore_ascii_case("application/json") {
        return Err(refused);
    }
    let mut charset_seen = false;
    for param in parts {
        let Some((name, val)) = param.split_once('=') else {
            return Err(refused);
        };
        let val = val.trim_matches([' ', '\t']);
        let val = val.strip_prefix('"').and_then(|v| v.strip_suffix('"')).unwrap_or(val);
        // Two charsets: readers disagree on which one counts.
        if charset_seen || !name.trim_matches([' ', '\t']).eq_ignore_ascii_case("charset") || !val.eq_ignore_ascii_case("utf-8") {
            return Err(refused);
        }
        charset_seen = true;
    }
    Ok(())
}

fn str_param<'a>(params: Option<&'a Map<String, Value>>, key: &str) -> Option<&'a str> {
    params?.get(key)?.as_str()
}

/// Inspects one message from the sandbox against the server's rules and
/// the session's level for the server, with no request metadata headers
/// (a handshake-era message; see [`inspect_request`]).
pub fn inspect(body: &[u8], rules: &McpRules, granted: Level) -> Result<Verdict, McpError> {
    inspect_request(body, &[], rules, granted)
}

/// HTTP status of a 2026-07-28 refusal, by its JSON-RPC code (the
/// transport's table); handshake-era refusals are answered with 200.
fn stateless_status(code: i64) -> u16 {
    if code == -32601 {
        404
    } else {
        400
    }
}

/// Inspects one message from the sandbox with the request's headers: its
/// era (declared by `MCP-Protocol-Version` and `_meta`, which must agree),
/// in 2026-07-28 its request metadata headers against the body, then the
/// method and target against the server's rules and the session's level.
/// A forwarded message comes with its canonical bytes, which the edge sends
/// instead of `body`, and (2026-07-28) the headers Airlock sends with it.
pub fn inspect_request(body: &[u8], headers: &[(String, String)], rules: &McpRules, granted: Level) -> Result<Verdict, McpError> {
    if body.len() > MAX_MESSAGE {
        return Err(McpError::TooLarge);
    }
    let mut value = parse_strict(body)?;
    let msg = match &value {
        Value::Object(m) => m,
        Value::Array(_) => return Err(McpError::Batch),
        _ => return Err(McpError::Invalid("a message must be an object")),
    };
    check_protocol_keys(Some(&value))?;
    if let Some(params) = msg.get("params") {
        check_protocol_keys(Some(params))?;
        check_protocol_keys(params.get("ref"))?;
        check_protocol_keys(params.get("_meta"))?;
        check_protocol_keys(params.get("notifications"))?;
    }
    if msg.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err(McpError::Invalid("jsonrpc must be \"2.0\""));
    }
    let id = match msg.get("id") {
        None => None,
        Some(v) if safe_id(v) => Some(v.clone()),
        Some(_) => return Err(McpError::Invalid("id must be a string or an integer within 2^53")),
    };
    let params = match msg.get("params") {
        None => None,
        Some(Value::Object(p)) => Some(p),
        Some(_) => return Err(McpError::Invalid("params must be an object")),
    };
    let method = match msg.get("method") {
        None => None,
        Some(m) => Some(m.as_str().ok_or(McpError::Invalid("method must be a string"))?.to_string()),
    };
    let mut call =
        Call { method: method.clone(), id: id.clone(), target: None, arg_names: Vec::new(), list: None, era: Era::Handshake, headers: Vec::new(), bound: None };
    let answer_id = id.clone().unwrap_or(Value::Null);
    let refuse = |call: Call, code: i64, message: &str, reason: &'static str| {
        let status = if call.era == Era::Stateless { stateless_status(code) } else { 200 };
        Ok(Verdict::Refuse { response: error_response(&answer_id, code, message), call, reason, status })
    };
    let meta_version = params.and_then(|p| p.get("_meta")).and_then(|m| m.get(era::VERSION_META));
    call.era = match era::detect(headers, meta_version) {
        Ok(e) => e,
        Err(fault) => return refuse_fault(Call { era: Era::Stateless, ..call }, fault, &answer_id),
    };
    let Some(method) = method else {
        // A response to a server request (sampling, elicitation, roots):
        // the handshake era only; 2026-07-28 clients send none.
        if call.era == Era::Handshake && id.is_some() && (msg.contains_key("result") || msg.contains_key("error")) {
            return Ok(Verdict::Forward { call, body: CanonicalBody(canonical(&value)) });
        }
        return Err(McpError::Invalid("neither a request, a notification nor a response"));
    };
    if call.era == Era::Stateless {
        let name_key = match method.as_str() {
            "tools/call" | "prompts/get" => Some("name"),
            "resources/read" => Some("uri"),
            _ => None,
        };
        call.headers = match era::check_headers(headers, &method, params, name_key) {
            Ok(h) => h,
            Err(fault) => return refuse_fault(call, fault, &answer_id),
        };
    }
    if id.is_none() {
        // Notifications carry no answer; only the protocol's own pass, and
        // 2026-07-28 defines none a client sends over HTTP.
        if method.starts_with("notifications/") && call.era == Era::Handshake {
            return Ok(Verdict::Forward { call, body: CanonicalBody(canonical(&value)) });
        }
        return Err(McpError::Invalid("unknown notification"));
    }
    let stateless = call.era == Era::Stateless;
    let airlocks = params.and_then(|p| p.get("requestState")).and_then(Value::as_str).is_some_and(gate::ours);
    if airlocks && method != "tools/call" {
        // Airlock only gates tool calls: its state on anything else is forged.
        return Err(McpError::Invalid("a requestState Airlock never issued"));
    }
    let decided = |call: Call, allowed: bool, code: i64, message: &str, reason: &'static str| {
        if allowed {
            Ok(Verdict::Forward { call, body: CanonicalBody(canonical(&value)) })
        } else {
            refuse(call, code, message, reason)
        }
    };
    match (method.as_str(), stateless) {
        // Removed in 2026-07-28: the handshake, ping, the log level request
        // and resource subscriptions (now subscriptions/listen).
        ("initialize" | "ping" | "logging/setLevel", false) => decided(call, true, 0, "", ""),
        ("server/discover", true) => decided(call, true, 0, "", ""),
        ("tools/list", _) => decided(Call { list: Some(ListKind::Tools), ..call }, true, 0, "", ""),
        ("resources/list", _) => decided(Call { list: Some(ListKind::Resources), ..call }, true, 0, "", ""),
        ("resources/templates/list", _) => decided(Call { list: Some(ListKind::ResourceTemplates), ..call }, true, 0, "", ""),
        ("prompts/list", _) => decided(Call { list: Some(ListKind::Prompts), ..call }, true, 0, "", ""),
        ("tools/call", _) => {
            let name = str_param(params, "name").unwrap_or_default().to_string();
            call.arg_names = params.and_then(|p| p.get("arguments")).and_then(Value::as_object).map(|a| a.keys().cloned().collect()).unwrap_or_default();
            call.target = Some(name.clone());
            // The same answer for a tool that exists and one that does not.
            // A multi round-trip retry (inputResponses, requestState) is a
            // new call and decided like one.
            let allowed = rules.tool_allowed(&name, granted);
            if !allowed || !(airlocks || rules.gate(&name).is_some()) {
                return decided(call, allowed, -32602, "Tool not found", "mcp_tool_not_allowed");
            }
            // Airlock's own state is taken out here: it never reaches the server.
            call.bound = Some(Box::new(gate::bind(&mut value)));
            Ok(Verdict::Forward { call, body: CanonicalBody(canonical(&value)) })
        }
        ("prompts/get", _) => {
            let name = str_param(params, "name").unwrap_or_default().to_string();
            call.target = Some(name.clone());
            decided(call, rules.prompt_allowed(&name, granted), -32602, "Prompt not found", "mcp_prompt_not_allowed")
        }
        ("resources/read", _) | ("resources/subscribe" | "resources/unsubscribe", false) => {
            let uri = str_param(params, "uri").unwrap_or_default().to_string();
            call.target = Some(uri.clone());
            // Resource not found is -32602 from 2026-07-28 on.
            let code = if stateless { -32602 } else { -32002 };
            decided(call, rules.resource_allowed(&uri, granted), code, "Resource not found", "mcp_resource_not_allowed")
        }
        ("subscriptions/listen", true) => {
            // Updates about a resource the session may not read are not
            // asked for: its URI is dropped from the filter (the stream is
            // filtered too).
            if let Some(Value::Array(uris)) = subscriptions(&mut value) {
                uris.retain(|u| u.as_str().is_some_and(|u| rules.resource_allowed(u, granted)));
            }
            Ok(Verdict::Forward { call, body: CanonicalBody(canonical(&value)) })
        }
        ("completion/complete", _) => {
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
            decided(call, ok, -32602, "Reference not found", "mcp_completion_not_allowed")
        }
        _ => refuse(call, -32601, "Method not found", "mcp_method_not_allowed"),
    }
}

/// A refusal of the request metadata: HTTP 400 with `-32020`
/// (HeaderMismatch) or `-32022` (UnsupportedProtocolVersion, naming the
/// one version Airlock inspects besides the handshake era's).
fn refuse_fault(call: Call, fault: era::Fault, id: &Value) -> Result<Verdict, McpError> {
    let response = match fault {
        era::Fault::Mismatch(why) => error_response(id, -32020, why),
        era::Fault::Unsupported => canonical(
            &json!({"jsonrpc": "2.0", "id": id, "error": {"code": -32022, "message": "Unsupported protocol version", "data": {"supported": [era::STATELESS]}}}),
        ),
    };
    let reason = if matches!(fault, era::Fault::Mismatch(_)) { "mcp_header_mismatch" } else { "mcp_version_unsupported" };
    Ok(Verdict::Refuse { call, response, reason, status: 400 })
}

// ---- the origin's messages -------------------------------------------------

/// The list containers a result can hold, with the rule that filters each.
const LISTS: &[(&str, ListKind)] =
    &[("tools", ListKind::Tools), ("prompts", ListKind::Prompts), ("resources", ListKind::Resources), ("resourceTemplates", ListKind::ResourceTemplates)];

/// Keeps only the list items the session may use.
fn filter_items(kind: ListKind, list: &mut Value, rules: &McpRules, granted: Level) {
    let field = match kind {
        ListKind::Tools | ListKind::Prompts => "name",
        ListKind::Resources => "uri",
        ListKind::ResourceTemplates => "uriTemplate",
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
    match list {
        Value::Array(items) => items.retain(keep),
        // A list of the wrong shape is emptied, never passed.
        other => *other = Value::Array(Vec::new()),
    }
}

/// Filters every list a JSON-RPC response carries, whatever its id: a
/// `result` object holding `tools`, `prompts`, `resources` or
/// `resourceTemplates` (under any spelling a lenient client would match).
/// Returns whether anything was a list.
fn filter_shape(msg: &mut Value, rules: &McpRules, granted: Level) -> bool {
    let Value::Object(msg) = msg else {
        return false;
    };
    let mut found = false;
    for (key, result) in msg.iter_mut() {
        if fold(key) != "result" {
            continue;
        }
        let Value::Object(result) = result else {
            continue;
        };
        for (key, list) in result.iter_mut() {
            let folded = fold(key);
            if let Some((_, kind)) = LISTS.iter().find(|(name, _)| fold(name) == folded) {
                filter_items(*kind, list, rules, granted);
                found = true;
            }
        }
    }
    found
}

/// `params.notifications.resourceSubscriptions` of a listen request or its
/// acknowledgement.
fn subscriptions(msg: &mut Value) -> Option<&mut Value> {
    msg.get_mut("params")?.get_mut("notifications")?.get_mut("resourceSubscriptions")
}

/// What filtering made of one origin message.
enum Outcome {
    /// Pass it; `true` when it was changed (re-serialize).
    Keep(bool),
    /// Drop it: a notification about something the session may not see.
    Drop,
    /// Replace it by an error: nothing a client should act on.
    Malformed,
}

/// Keys of a 2026-07-28 result whose respellings a lenient client could
/// read as the real thing.
const STATELESS_KEYS: &[&str] = &["result", "resultType", "inputRequests", "capabilities", "cacheScope", "supportedVersions"];

/// Filters one parsed origin message: lists by shape, notifications about
/// resources the session may not read, and for the response to a
/// 2026-07-28 request (`stateless` = its method) the result's metadata.
fn filter_one(msg: &mut Value, stateless: Option<&str>, rules: &McpRules, granted: Level) -> Outcome {
    let mut changed = filter_shape(msg, rules, granted);
    let uri_allowed = |u: &Value| u.as_str().is_some_and(|u| rules.resource_allowed(u, granted));
    match msg.get("method").and_then(Value::as_str) {
        // An update names a resource: one the session may not read is not
        // its business, not even that it changed.
        Some("notifications/resources/updated") if !msg.get("params").and_then(|p| p.get("uri")).is_some_and(uri_allowed) => return Outcome::Drop,
        Some("notifications/subscriptions/acknowledged") => {
            if let Some(Value::Array(uris)) = subscriptions(msg) {
                let n = uris.len();
                uris.retain(uri_allowed);
                changed |= uris.len() != n;
            }
        }
        _ => {}
    }
    let Some(method) = stateless else {
        return Outcome::Keep(changed);
    };
    let Value::Object(m) = msg else {
        return Outcome::Keep(changed);
    };
    let respelled = |o: &Map<String, Value>| o.keys().any(|k| STATELESS_KEYS.iter().any(|p| *p != k && fold(p) == fold(k)));
    if respelled(m) || m.get("result").and_then(Value::as_object).is_some_and(respelled) {
        return Outcome::Malformed;
    }
    let Some(Value::Object(result)) = m.get_mut("result") else {
        return Outcome::Keep(changed);
    };
    if result.get("resultType").and_then(Value::as_str) == Some("input_required") {
        // Multi round-trip: only on the three methods that may ask, and
        // only for input a client gives (elicitation, sampling, roots).
        let asks = |q: &Value| matches!(q.get("method").and_then(Value::as_str), Some("elicitation/create" | "sampling/createMessage" | "roots/list"));
        // A server's state can never pass for Airlock's own.
        let ok = matches!(method, "tools/call" | "prompts/get" | "resources/read")
            && result.get("inputRequests").is_none_or(|r| r.as_object().is_some_and(|r| r.values().all(asks)))
            && !result.get("requestState").and_then(Value::as_str).is_some_and(gate::ours);
        return if ok { Outcome::Keep(changed) } else { Outcome::Malformed };
    }
    if method == "server/discover" {
        // Advertise only what the session can use: a capability whose
        // every method Airlock would refuse (extensions, experimental and
        // anything it does not know) is not offered.
        let (t, p, r) = (rules.any_tool(granted), rules.any_prompt(granted), rules.any_resource(granted));
        if let Some(Value::Object(caps)) = result.get_mut("capabilities") {
            let hidden: Vec<String> = caps
                .keys()
                .filter(|k| match k.as_str() {
                    "tools" => !t,
                    "prompts" => !p,
                    "resources" => !r,
                    "completions" => !(p || r),
                    "logging" => false,
                    _ => true,
                })
                .cloned()
                .collect();
            for k in hidden {
                caps.remove(&k);
            }
        }
        if let Some(Value::Array(versions)) = result.get_mut("supportedVersions") {
            versions.retain(|v| v.as_str().is_some_and(|v| v <= era::STATELESS));
        }
    } else if !matches!(method, "tools/list" | "prompts/list" | "resources/list" | "resources/templates/list" | "resources/read") {
        return Outcome::Keep(changed);
    }
    // Filtered for this session (or read under its authorization): a
    // shared cache must never serve it to another.
    result.insert("cacheScope".into(), Value::String("private".into()));
    Outcome::Keep(true)
}

/// Filters one message from the origin (see [`filter_origin_message`]):
/// `None` when it must not reach the sandbox at all.
fn filter_inner(message: &[u8], id: Option<&Value>, stateless: Option<&str>, rules: &McpRules, granted: Level) -> Option<Vec<u8>> {
    let malformed = || Some(error_response(id.unwrap_or(&Value::Null), -32603, "malformed response"));
    if message.iter().all(u8::is_ascii_whitespace) {
        // Empty data: a resumable server's priming event.
        return Some(message.to_vec());
    }
    let mut value = match parse_strict(message) {
        Ok(v) => v,
        // Text that holds no brace or bracket cannot be read as a list by
        // any client; anything else might be, by a more lenient parser.
        Err(_) if !message.iter().any(|b| matches!(b, b'{' | b'[')) => return Some(message.to_vec()),
        Err(_) => return malformed(),
    };
    let mut changed = false;
    let items = match &mut value {
        // A batch of responses: each is filtered.
        Value::Array(items) => items.iter_mut().collect::<Vec<_>>(),
        other => vec![other],
    };
    let single = items.len() == 1 && !message.starts_with(b"[");
    let mut drop = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        match filter_one(item, stateless, rules, granted) {
            Outcome::Keep(c) => changed |= c,
            Outcome::Drop if single => return None,
            Outcome::Drop => drop.push(i),
            Outcome::Malformed => return malformed(),
        }
    }
    if let Value::Array(items) = &mut value {
        for i in drop.iter().rev() {
            items.remove(*i);
            changed = true;
        }
    }
    Some(if changed { canonical(&value) } else { message.to_vec() })
}

/// Filters one message from the origin on any stream of the session, with
/// or without a request to match it to (a resumed GET stream has none):
/// every list result is filtered by its shape, not by its id, since an id
/// can be respelled (`1.0` for `1`) or absent. Messages holding no list pass
/// byte for byte; a filtered one is re-serialized canonically; one that
/// could be an object but is not strict JSON (or has duplicate or folded
/// keys) is replaced by a JSON-RPC error, never passed, and so is a whole
/// body that is only a notification the session may not see.
pub fn filter_origin_message(message: &[u8], id: Option<&Value>, rules: &McpRules, granted: Level) -> Vec<u8> {
    filter_response(message, id, None, rules, granted)
}

/// [`filter_origin_message`] for the response to `call`: in 2026-07-28 the
/// result's metadata too (discovered capabilities, `cacheScope`, multi
/// round-trip requests).
pub fn filter_message(message: &[u8], call: &Call, rules: &McpRules, granted: Level) -> Vec<u8> {
    filter_response(message, call.id.as_ref(), stateless_method(Some(call)), rules, granted)
}

fn filter_response(message: &[u8], id: Option<&Value>, stateless: Option<&str>, rules: &McpRules, granted: Level) -> Vec<u8> {
    filter_inner(message, id, stateless, rules, granted).unwrap_or_else(|| error_response(id.unwrap_or(&Value::Null), -32603, "malformed response"))
}

/// The method of a 2026-07-28 call, whose response is filtered by it.
fn stateless_method(call: Option<&Call>) -> Option<&str> {
    call.filter(|c| c.era == Era::Stateless).and_then(|c| c.method.as_deref())
}

/// An MCP event stream as the sandbox receives it: cut into whole events;
/// every list result on it is filtered by shape (`call` is the POST's
/// request, or `None` for a GET stream, resumed or not); every event is
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
        // Every event is filtered by shape, whether or not it answers the
        // request that opened the stream: a resumed GET stream replays
        // responses Airlock never saw the request of.
        let id = self.call.as_ref().and_then(|c| c.id.as_ref());
        let mut dropped = false;
        let rewritten = sse::data(event).and_then(|data| match filter_inner(&data, id, stateless_method(self.call.as_ref()), &self.rules, self.granted) {
            Some(filtered) => (filtered != data).then(|| sse::with_data(event, &filtered)),
            None => {
                dropped = true;
                None
            }
        });
        if dropped {
            return Vec::new();
        }
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
            ..Default::default()
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
                Ok(Verdict::Forward { .. }) => assert!(forward, "forwarded: {body}"),
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
        let Verdict::Forward { call, .. } =
            verdict(r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"query":"my secret search","limit":5}}}"#, Read)
                .unwrap()
        else {
            panic!()
        };
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
            (r#"{"jsonrpc":"2.0","id":{},"method":"ping"}"#, McpError::Invalid("id must be a string or an integer within 2^53")),
            (
                r#"{"jsonrpc":"2.0","id":null,"method":"tools/call","params":{"name":"search"}}"#,
                McpError::Invalid("id must be a string or an integer within 2^53"),
            ),
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
        let Verdict::Forward { call, .. } = verdict(r#"{"jsonrpc":"2.0","id":"L1","method":"tools/list","params":{"cursor":"c"}}"#, Write).unwrap() else {
            panic!()
        };
        let response = br#"{"jsonrpc":"2.0","id":"L1","result":{"tools":[{"name":"search"},{"name":"create_issue"},{"name":"delete_repo"},{"name":"hidden"},{"noname":1}],"nextCursor":"n"}}"#;
        let out: Value = serde_json::from_slice(&filter_message(response, &call, &rules(), Write)).unwrap();
        let names: Vec<&str> = out["result"]["tools"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
        assert_eq!(names, vec!["search", "create_issue"]);
        assert_eq!(out["result"]["nextCursor"], "n", "paging survives");
        // Another id is filtered too: lists are found by shape, not by id.
        let other = br#"{"jsonrpc":"2.0","id":"L2","result":{"tools":[{"name":"hidden"}]}}"#;
        assert_eq!(filter_message(other, &call, &rules(), Write), br#"{"id":"L2","jsonrpc":"2.0","result":{"tools":[]}}"#.to_vec());
        // A message holding no list passes byte for byte.
        let plain = br#"{"jsonrpc":"2.0", "method":"notifications/message","params":{"level":"info"}}"#;
        assert_eq!(filter_message(plain, &call, &rules(), Write), plain.to_vec());
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

        let Verdict::Forward { call, .. } = verdict(r#"{"jsonrpc":"2.0","id":2,"method":"resources/list"}"#, Read).unwrap() else { panic!() };
        let response = br#"{"jsonrpc":"2.0","id":2,"result":{"resources":[{"uri":"file:///docs/a"},{"uri":"file:///docs/secret/b"},{"uri":"https://x"}]}}"#;
        let out: Value = serde_json::from_slice(&filter_message(response, &call, &rules(), Read)).unwrap();
        assert_eq!(out["result"]["resources"], json!([{"uri": "file:///docs/a"}]));

        let Verdict::Forward { call, .. } = verdict(r#"{"jsonrpc":"2.0","id":3,"method":"prompts/list"}"#, Admin).unwrap() else { panic!() };
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
        let Verdict::Forward { call, .. } = verdict(r#"{"jsonrpc":"2.0","id":5,"method":"tools/list"}"#, Read).unwrap() else { panic!() };
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
        let Verdict::Forward { call, .. } = verdict(r#"{"jsonrpc":"2.0","id":42,"method":"tools/list"}"#, Read).unwrap() else { panic!() };
        let stream: &[u8] = b"id: S::3\nretry: 1000\ndata: \n\nevent: message\nid: S::4\ndata: {\"result\":{\"tools\":[{\"name\":\"search\"},{\"name\":\"hidden\"}]},\"jsonrpc\":\"2.0\",\"id\":42}\n\n";
        let out = String::from_utf8(run_filter(&[stream], Some(call), Read)).unwrap();
        assert!(out.starts_with("id: S::3\nretry: 1000\ndata: \n\n"), "{out}");
        assert!(out.contains("search") && !out.contains("hidden") && !out.contains("-32603"), "{out}");
    }

    #[test]
    fn streams_without_a_list_call_are_filtered_by_shape() {
        let stream: &[u8] = b"data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"hidden\"}]}}\n\n";
        // A GET stream (resumed or not) has no request: its lists are
        // filtered all the same.
        assert_eq!(run_filter(&[stream], None, Read), b"data: {\"id\":1,\"jsonrpc\":\"2.0\",\"result\":{\"tools\":[]}}\n\n".to_vec());
        let plain: &[u8] = b"id: 9\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\"}\n\n";
        assert_eq!(run_filter(&[plain], None, Read), plain.to_vec(), "no list: byte for byte");
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

#[cfg(test)]
mod differential_tests {
    //! Attack tables for parser differentials: every hostile spelling is
    //! refused before a decision, so no `Forward` verdict (nothing to send
    //! upstream) comes out.
    use super::*;
    use Level::*;

    fn rules() -> McpRules {
        McpRules {
            tools: [("search".to_string(), Read), ("delete_repo".to_string(), Admin)].into_iter().collect(),
            default_tool: None,
            resources: vec![("file:///docs/".into(), Read)],
            prompts: [("summarize".to_string(), Read)].into_iter().collect(),
            ..Default::default()
        }
    }

    #[test]
    fn forwarded_numbers_are_the_authorized_numbers() {
        // Long decimal expansions, large integers, exponents: the canonical
        // bytes must parse back to exactly the value that was inspected
        // (found by the `mcp_message` fuzz target before floats were parsed
        // correctly rounded).
        for number in [
            "1.3333333333333333333333333333333333333333333333333330",
            "0.1",
            "1e300",
            "-2.5e-308",
            "123456789012345678901234567890",
            "18446744073709551616",
            "-0.0",
        ] {
            let body = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"search","arguments":{{"n":{number}}}}}}}"#);
            let authorized: Value = serde_json::from_str(&body).unwrap();
            let Ok(Verdict::Forward { body: forwarded, .. }) = inspect(body.as_bytes(), &rules(), Read) else { panic!("{number}: not forwarded") };
            let reread: Value = serde_json::from_slice(forwarded.as_bytes()).unwrap();
            assert_eq!(reread, authorized, "{number}: forwarded as {}", String::from_utf8_lossy(forwarded.as_bytes()));
        }
    }

    /// Asserts the message is refused as a whole: an error (never a verdict,
    /// so no bytes to forward) whose JSON-RPC code is `code`.
    fn assert_refused(what: &str, body: &[u8], code: i64) {
        match inspect(body, &rules(), Read) {
            Ok(v) => panic!("{what}: not refused, verdict {v:?} for {}", String::from_utf8_lossy(body)),
            Err(e) => {
                let response: Value = serde_json::from_slice(&e.response()).unwrap();
                assert_eq!(response["error"]["code"], code, "{what}: {e:?}");
                assert_eq!(e.code(), "mcp_invalid_message", "{what}");
            }
        }
    }

    /// Messages the read session may send (each key below appears once).
    const BASES: &[(&str, &[&str])] = &[
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"q":"x"},"_meta":{"progressToken":"t"}}}"#,
            &["jsonrpc", "id", "method", "params", "name", "arguments", "_meta", "progressToken"],
        ),
        (r#"{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///docs/a"}}"#, &["uri"]),
        (r#"{"jsonrpc":"2.0","id":4,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"summarize"}}}"#, &["ref", "type", "name"]),
        (r#"{"jsonrpc":"2.0","id":9,"result":{}}"#, &["result"]),
    ];

    /// Spellings a lenient reader may take for `key` (JSON text of the key).
    fn variants(key: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut chars: Vec<char> = key.chars().collect();
        if let Some(i) = chars.iter().position(|c| c.is_ascii_alphabetic()) {
            chars[i] = chars[i].to_ascii_uppercase();
            out.push(("first letter upper".to_string(), chars.iter().collect()));
            let fullwidth = char::from_u32(key.chars().nth(i).map_or(0, |c| c as u32 + 0xfee0)).unwrap();
            let mut fw: Vec<char> = key.chars().collect();
            fw[i] = fullwidth;
            out.push(("fullwidth letter".to_string(), fw.iter().collect()));
        }
        out.push(("all caps".to_string(), key.to_ascii_uppercase()));
        if key.contains('s') {
            out.push(("LONG S".to_string(), key.replacen('s', "\u{17f}", 1)));
        }
        if key.contains('k') {
            out.push(("KELVIN SIGN".to_string(), key.replacen('k', "\u{212a}", 1)));
        }
        if let Some(c) = key.chars().next().filter(char::is_ascii_alphabetic) {
            out.push(("escaped upper".to_string(), format!("\\u{:04X}{}", c.to_ascii_uppercase() as u32, &key[1..])));
        }
        out.push(("trailing NUL".to_string(), format!("{key}\\u0000")));
        out.push(("two trailing NULs".to_string(), format!("{key}\\u0000\\u0000")));
        out.push(("inner BEL".to_string(), format!("{}\\u0007{}", &key[..1], &key[1..])));
        out.push(("trailing DEL".to_string(), format!("{key}\u{7f}")));
        out.push(("zero-width space".to_string(), format!("{key}\u{200b}")));
        out.push(("trailing BOM".to_string(), format!("{key}\\ufeff")));
        out
    }

    #[test]
    fn the_base_messages_are_forwarded() {
        for (base, _) in BASES {
            assert!(matches!(inspect(base.as_bytes(), &rules(), Read), Ok(Verdict::Forward { .. })), "{base}");
        }
    }

    #[test]
    fn respelled_protocol_keys_are_refused_alone_and_beside_the_real_one() {
        let mut rows = 0;
        for (base, keys) in BASES {
            for key in *keys {
                let quoted = format!("\"{key}\":");
                assert!(base.contains(&quoted), "{key} in {base}");
                for (how, variant) in variants(key) {
                    // Alone: a case-insensitive server reads it as `key`.
                    let alone = base.replacen(&quoted, &format!("\"{variant}\":"), 1);
                    assert_refused(&format!("{key}: {how}, alone"), alone.as_bytes(), -32600);
                    // Beside the real key, first or last: which one a server
                    // takes is up to the server.
                    let first = base.replacen(&quoted, &format!("\"{variant}\":\"delete_repo\",{quoted}"), 1);
                    assert_refused(&format!("{key}: {how}, first"), first.as_bytes(), -32600);
                    rows += 2;
                }
                // Exact duplicates, raw and escaped.
                let dup = base.replacen(&quoted, &format!("{quoted}\"delete_repo\",{quoted}"), 1);
                assert_refused(&format!("{key}: exact duplicate"), dup.as_bytes(), -32600);
                let escaped = format!("\"\\u{:04x}{}\":", key.chars().next().map_or(0, |c| c as u32), &key[1..]);
                let dup = base.replacen(&quoted, &format!("{escaped}\"delete_repo\",{quoted}"), 1);
                assert_refused(&format!("{key}: escaped duplicate"), dup.as_bytes(), -32600);
                rows += 2;
            }
        }
        assert!(rows > 150, "{rows}");
    }

    #[test]
    fn duplicates_and_collisions_at_any_depth_are_refused() {
        let table: &[(&str, &str)] = &[
            ("method twice, admin last", r#"{"jsonrpc":"2.0","id":1,"method":"tools/list","method":"tools/call","params":{"name":"delete_repo"}}"#),
            ("method twice, admin first", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","method":"tools/list","params":{"name":"delete_repo"}}"#),
            ("name twice, admin last", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","name":"delete_repo"}}"#),
            ("name twice, admin first", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_repo","name":"search"}}"#),
            ("params twice", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_repo"},"params":{"name":"search"}}"#),
            ("id twice", r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#),
            (
                "ref.name twice",
                r#"{"jsonrpc":"2.0","id":4,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"summarize","name":"jailbreak"}}}"#,
            ),
            ("uri twice", r#"{"jsonrpc":"2.0","id":2,"method":"resources/read","params":{"uri":"file:///docs/a","uri":"file:///etc/passwd"}}"#),
            ("escaped name", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","na\u006de":"delete_repo"}}"#),
            ("escaped method", r#"{"jsonrpc":"2.0","id":1,"\u006dethod":"tools/call","method":"ping"}"#),
            (
                "duplicate deep in arguments",
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"q":{"a":[{"b":1,"b":2}]}}}}"#,
            ),
            (
                "duplicate in _meta",
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","_meta":{"progressToken":1,"progressToken":2}}}"#,
            ),
            (
                "folded siblings deep in arguments",
                r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"path":"a","PATH":"b"}}}"#,
            ),
            (
                "KELVIN siblings in arguments",
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"search\",\"arguments\":{\"kind\":1,\"\u{212a}ind\":2}}}",
            ),
            (
                "LONG S siblings in arguments",
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"search\",\"arguments\":{\"user\":1,\"u\u{17f}er\":2}}}",
            ),
            (
                "sharp s siblings in arguments",
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"search\",\"arguments\":{\"class\":1,\"cla\u{df}\":2}}}",
            ),
            (
                "ligature siblings in arguments",
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"search\",\"arguments\":{\"file\":1,\"\u{fb01}le\":2}}}",
            ),
            (
                "dotless i siblings in arguments",
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"search\",\"arguments\":{\"id2\":1,\"\u{131}d2\":2}}}",
            ),
            (
                "final sigma siblings in arguments",
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"search\",\"arguments\":{\"\u{3c3}\":1,\"\u{3c2}\":2}}}",
            ),
            (
                "Greek capital and small siblings in arguments",
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"search\",\"arguments\":{\"\u{3a3}\":1,\"\u{3c3}\":2}}}",
            ),
            (
                "micro sign siblings in arguments",
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"search\",\"arguments\":{\"\u{b5}s\":1,\"\u{3bc}s\":2}}}",
            ),
            (
                "fullwidth siblings in arguments",
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"search\",\"arguments\":{\"q\":1,\"\u{ff51}\":2}}}",
            ),
            (
                "Cyrillic case siblings",
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"search\",\"arguments\":{\"\u{416}\":1,\"\u{436}\":2}}}",
            ),
            ("NUL key in arguments", r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","arguments":{"q\u0000":1}}}"#),
            ("NUL-only key", r#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"\u0000":1}}"#),
            (
                "non-ASCII params key",
                "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"search\",\"\u{1d427}ame\":\"delete_repo\"}}",
            ),
            ("non-ASCII top-level key", "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"\u{e9}\":1}"),
            ("Method alone with a result", r#"{"jsonrpc":"2.0","id":1,"result":{},"Method":"tools/call","params":{"name":"delete_repo"}}"#),
        ];
        for (what, body) in table {
            assert_refused(what, body.as_bytes(), -32600);
        }
    }

    #[test]
    fn encodings_other_than_strict_utf8_are_refused() {
        let table: &[(&str, &[u8], i64)] = &[
            ("BOM", b"\xef\xbb\xbf{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}", -32600),
            ("invalid UTF-8 in a value", b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{\"name\":\"search\xff\"}}", -32600),
            ("overlong slash", b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools\xc0\xafcall\"}", -32600),
            ("latin1 key", b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\",\"\xe9\":1}", -32600),
            ("UTF-16LE", b"{\0\"\0j\0s\0o\0n\0r\0p\0c\0\"\0:\0\"\x002\0.\x000\0\"\0}\0", -32700),
            ("UTF-16BE BOM", b"\xfe\xff\0{\0}", -32600),
            ("lone high surrogate", br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search\ud800"}}"#, -32700),
            ("lone low surrogate in a key", br#"{"jsonrpc":"2.0","id":1,"method":"ping","params":{"\udc00":1}}"#, -32700),
            ("trailing garbage", br#"{"jsonrpc":"2.0","id":1,"method":"ping"}x"#, -32700),
            ("raw control in a string", b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\x00\"}", -32700),
        ];
        for (what, body, code) in table {
            assert_refused(what, body, *code);
        }
        // Read as UTF-8, a UTF-7 spelling of `name` is another key: the call
        // names no tool and is refused; the Content-Type check refuses the
        // charset before this.
        let utf7 = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"+AG4-ame":"delete_repo"}}"#;
        assert!(matches!(inspect(utf7, &rules(), Admin), Ok(Verdict::Refuse { .. })));
        assert!(check_content_type(Some("application/json; charset=utf-7")).is_err());
    }

    #[test]
    fn ids_are_strings_or_safe_integers() {
        for id in
            ["1.0", "1e0", "1e3", "-0", "-0.0", "0.5", "9007199254740992", "-9007199254740992", "18446744073709551615", "1E400", "true", "null", "[1]", "{}"]
        {
            let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#);
            assert_refused(&format!("id {id}"), body.as_bytes(), if id == "1E400" { -32700 } else { -32600 });
            let response = format!(r#"{{"jsonrpc":"2.0","id":{id},"result":{{}}}}"#);
            assert_refused(&format!("response id {id}"), response.as_bytes(), if id == "1E400" { -32700 } else { -32600 });
        }
        for (id, want) in
            [("0", json!(0)), ("9007199254740991", json!(9007199254740991u64)), ("-9007199254740991", json!(-9007199254740991i64)), (r#""1.0""#, json!("1.0"))]
        {
            let body = format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"ping"}}"#);
            let Ok(Verdict::Forward { call, .. }) = inspect(body.as_bytes(), &rules(), Read) else { panic!("{id}") };
            assert_eq!(call.id, Some(want), "{id}");
        }
    }

    #[test]
    fn content_types_other_than_utf8_json_are_refused() {
        for ok in [
            "application/json",
            "Application/JSON",
            "application/json; charset=utf-8",
            "application/json;charset=UTF-8",
            "application/json; charset=\"utf-8\"",
            " application/json ",
        ] {
            assert_eq!(check_content_type(Some(ok)), Ok(()), "{ok}");
        }
        for bad in [
            None,
            Some(""),
            Some("application/json; charset=utf-7"),
            Some("application/json; charset=UTF-7"),
            Some("application/json; charset=iso-8859-1"),
            Some("application/json; charset=latin1"),
            Some("application/json; charset=utf-16"),
            Some("application/json; charset=utf-16le"),
            Some("application/json; charset=utf-8; charset=utf-7"),
            Some("application/json; charset=utf-8, application/json; charset=utf-7"),
            Some("application/json; charset="),
            Some("application/json; boundary=x"),
            Some("application/json;"),
            Some("text/plain"),
            Some("text/json"),
            Some("application/x-www-form-urlencoded"),
            Some("application/jsonx"),
            Some("application/json-seq"),
        ] {
            let e = check_content_type(bad).unwrap_err();
            let response: Value = serde_json::from_slice(&e.response()).unwrap();
            assert_eq!(response["error"]["code"], -32600, "{bad:?}");
        }
    }

    #[test]
    fn forwarded_bytes_are_the_canonical_reading() {
        let table: &[&str] = &[
            r#"{ "params" : {"name":"search","arguments":{"q":"caf\u00e9 \ud83d\ude00","n":[1,2.5,-3,{"z":null,"a":true}]}}, "method":"tools/call","id":1,"jsonrpc":"2.0"}"#,
            "{\"jsonrpc\":\"2.0\",\"id\":\"\u{e9}\",\"method\":\"tools/call\",\"params\":{\"name\":\"search\",\"arguments\":{\"\u{416}\":\"\u{212a}\"}}}",
            r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
            r#"{"jsonrpc":"2.0","id":9,"result":{"roots":[{"uri":"file:///x"}]}}"#,
            r#"{"jsonrpc":"2.0","id":4,"method":"completion/complete","params":{"ref":{"type":"ref/prompt","name":"summarize"},"argument":{"name":"a","value":"b"}}}"#,
        ];
        for body in table {
            let Ok(Verdict::Forward { call, body: canonical_body }) = inspect(body.as_bytes(), &rules(), Read) else { panic!("{body}") };
            let sent = canonical_body.as_bytes();
            assert!(sent.is_ascii(), "{body}");
            let authorized: Value = serde_json::from_str(body).unwrap();
            assert_eq!(serde_json::from_slice::<Value>(sent).unwrap(), authorized, "{body}");
            // The sent bytes pass the same strict reading, to the same call.
            let Ok(Verdict::Forward { call: again, body: twice }) = inspect(sent, &rules(), Read) else { panic!("{body}") };
            assert_eq!((again, twice.as_bytes()), (call, sent), "{body}");
        }
    }

    #[test]
    fn lists_are_filtered_whatever_the_id_and_on_resumed_streams() {
        let Ok(Verdict::Forward { call, .. }) = inspect(br#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#, &rules(), Read) else { panic!() };
        let names = |out: &[u8]| -> Vec<String> {
            let v: Value = serde_json::from_slice(out).unwrap();
            let items = v.as_array().and_then(|a| a.first()).unwrap_or(&v)["result"]["tools"].as_array().cloned().unwrap_or_default();
            items.iter().map(|t| t["name"].as_str().unwrap_or("?").to_string()).collect()
        };
        let rows: &[(&str, &str)] = &[
            ("same id", r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"search"},{"name":"delete_repo"}]}}"#),
            ("id 1.0 (a JS server's 1)", r#"{"jsonrpc":"2.0","id":1.0,"result":{"tools":[{"name":"search"},{"name":"delete_repo"}]}}"#),
            ("id as a string", r#"{"jsonrpc":"2.0","id":"1","result":{"tools":[{"name":"search"},{"name":"delete_repo"}]}}"#),
            ("another id", r#"{"jsonrpc":"2.0","id":77,"result":{"tools":[{"name":"search"},{"name":"delete_repo"}]}}"#),
            ("no id", r#"{"jsonrpc":"2.0","result":{"tools":[{"name":"search"},{"name":"delete_repo"}]}}"#),
            ("null id", r#"{"jsonrpc":"2.0","id":null,"result":{"tools":[{"name":"search"},{"name":"delete_repo"}]}}"#),
            ("Result spelled by a lenient server", r#"{"jsonrpc":"2.0","id":1,"Result":{"Tools":[{"name":"search"},{"name":"delete_repo"}]}}"#),
            ("a batch of responses", r#"[{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"search"},{"name":"delete_repo"}]}}]"#),
            ("item name respelled", r#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"search"},{"Name":"delete_repo"}]}}"#),
        ];
        for (what, response) in rows {
            let out = filter_message(response.as_bytes(), &call, &rules(), Read);
            assert!(!String::from_utf8_lossy(&out).contains("delete_repo"), "{what}: {}", String::from_utf8_lossy(&out));
            let got = names(&out);
            assert!(got == ["search"] || got == ["search", "?"] || got.is_empty(), "{what}: {got:?}");
            // The same on a GET stream, with no request at all.
            let out = filter_origin_message(response.as_bytes(), None, &rules(), Read);
            assert!(!String::from_utf8_lossy(&out).contains("delete_repo"), "{what} (no call)");
        }
        // Prompts, resources and templates by shape too, even in one result.
        let mixed = br#"{"jsonrpc":"2.0","id":"x","result":{"prompts":[{"name":"summarize"},{"name":"jailbreak"}],"resources":[{"uri":"file:///docs/a"},{"uri":"file:///etc/passwd"}],"resourceTemplates":[{"uriTemplate":"file:///etc/{x}"}]}}"#;
        let out: Value = serde_json::from_slice(&filter_origin_message(mixed, None, &rules(), Read)).unwrap();
        assert_eq!(out["result"], json!({"prompts":[{"name":"summarize"}],"resources":[{"uri":"file:///docs/a"}],"resourceTemplates":[]}));
        // What cannot be read strictly is replaced, never passed.
        for (what, bad) in [
            ("duplicate result, hidden list last", &br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[]},"result":{"tools":[{"name":"delete_repo"}]}}"#[..]),
            ("duplicate tools", br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[],"tools":[{"name":"delete_repo"}]}}"#),
            ("folded tools siblings", br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[],"TOOLS":[{"name":"delete_repo"}]}}"#),
            ("BOM", b"\xef\xbb\xbf{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{\"tools\":[{\"name\":\"delete_repo\"}]}}"),
            ("lone surrogate", br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"delete_repo\ud800"}]}}"#),
            ("trailing comma", br#"{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"delete_repo"},]}}"#),
            ("a batch with garbage", br#"[{"jsonrpc":"2.0","id":1,"result":{"tools":[{"name":"delete_repo"}]}}, x]"#),
        ] {
            let out = filter_origin_message(bad, None, &rules(), Read);
            let v: Value = serde_json::from_slice(&out).unwrap_or_else(|_| panic!("{what}"));
            assert_eq!(v["error"]["code"], -32603, "{what}");
        }
    }

    #[test]
    fn a_resumed_get_stream_replays_lists_filtered() {
        // GET with Last-Event-ID: the stream replays a list response to a
        // POST Airlock answered earlier; there is no call to match it to.
        let stream: &[u8] = b"id: S::7\ndata: {\"jsonrpc\":\"2.0\",\"id\":1.0,\"result\":{\"tools\":[{\"name\":\"search\"},{\"name\":\"delete_repo\"}]}}\n\nid: S::8\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n";
        for i in 0..=stream.len() {
            let mut f = EventFilter::new(Redactor::new(Vec::new()), None, rules(), Read);
            let mut out = f.push(&stream[..i]).unwrap();
            out.extend(f.push(&stream[i..]).unwrap());
            out.extend(f.finish());
            let text = String::from_utf8(out).unwrap();
            assert!(!text.contains("delete_repo") && text.contains("search"), "split {i}: {text}");
            assert!(
                text.contains("id: S::7\n") && text.ends_with("id: S::8\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n"),
                "split {i}: {text}"
            );
        }
    }
}

#[cfg(test)]
mod stateless_tests {
    //! The 2026-07-28 era: request metadata checked before any decision,
    //! the era's methods, and its results filtered per session.
    use super::*;
    use Level::*;

    fn rules() -> McpRules {
        McpRules {
            tools: [("search".to_string(), Read), ("delete_repo".to_string(), Admin)].into_iter().collect(),
            default_tool: None,
            resources: vec![("docs://public/".into(), Read), ("docs://private/".into(), Admin)],
            prompts: [("summarize".to_string(), Admin)].into_iter().collect(),
            ..Default::default()
        }
    }

    const META: &str = r#""_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}"#;

    fn msg(method: &str, params: &str) -> String {
        let sep = if params.is_empty() { "" } else { "," };
        format!(r#"{{"jsonrpc":"2.0","id":7,"method":"{method}","params":{{{params}{sep}{META}}}}}"#)
    }

    fn headers(method: &str, name: Option<&str>) -> Vec<(String, String)> {
        let mut h = vec![("MCP-Protocol-Version".to_string(), era::STATELESS.to_string()), ("Mcp-Method".to_string(), method.to_string())];
        h.extend(name.map(|n| ("Mcp-Name".to_string(), n.to_string())));
        h
    }

    /// (HTTP status, JSON-RPC code) of a refusal; panics on a forward.
    fn refused(body: &str, h: &[(String, String)], granted: Level) -> (u16, i64) {
        match inspect_request(body.as_bytes(), h, &rules(), granted) {
            Ok(Verdict::Refuse { response, status, .. }) => (status, serde_json::from_slice::<Value>(&response).unwrap()["error"]["code"].as_i64().unwrap()),
            other => panic!("not refused: {other:?} for {body}"),
        }
    }

    fn forwarded(body: &str, h: &[(String, String)], granted: Level) -> (Call, Value) {
        match inspect_request(body.as_bytes(), h, &rules(), granted) {
            Ok(Verdict::Forward { call, body }) => (call, serde_json::from_slice(body.as_bytes()).unwrap()),
            other => panic!("not forwarded: {other:?} for {body}"),
        }
    }

    #[test]
    fn methods_of_the_era() {
        let (call, _) = forwarded(&msg("server/discover", ""), &headers("server/discover", None), Read);
        assert_eq!(
            (call.era, call.headers),
            (Era::Stateless, vec![("mcp-protocol-version".into(), "2026-07-28".into()), ("mcp-method".into(), "server/discover".into())])
        );
        let (call, _) = forwarded(&msg("tools/call", r#""name":"search","arguments":{"q":"x"}"#), &headers("tools/call", Some("search")), Read);
        assert_eq!(call.headers.last(), Some(&("mcp-name".to_string(), "search".to_string())));
        // A multi round-trip retry is decided again, like a new call.
        let retry = r#""name":"search","arguments":{"q":"x"},"inputResponses":{"confirm":{"action":"accept"}},"requestState":"opaque""#;
        forwarded(&msg("tools/call", retry), &headers("tools/call", Some("search")), Read);
        let retry = r#""name":"delete_repo","inputResponses":{},"requestState":"opaque""#;
        assert_eq!(refused(&msg("tools/call", retry), &headers("tools/call", Some("delete_repo")), Read), (400, -32602));
        // Resource not found is -32602 in this era, -32002 before.
        assert_eq!(refused(&msg("resources/read", r#""uri":"docs://private/x""#), &headers("resources/read", Some("docs://private/x")), Read), (400, -32602));
        let old = r#"{"jsonrpc":"2.0","id":7,"method":"resources/read","params":{"uri":"docs://private/x"}}"#;
        assert_eq!(refused(old, &[("mcp-protocol-version".into(), "2025-11-25".into())], Read), (200, -32002));
        // Removed in the era: refused before the origin sees them.
        for m in ["initialize", "ping", "logging/setLevel", "resources/subscribe", "resources/unsubscribe", "tasks/get", "tasks/list"] {
            assert_eq!(refused(&msg(m, ""), &headers(m, None), Admin), (404, -32601), "{m}");
        }
        // The era's own methods are unknown to the handshake era.
        for m in ["server/discover", "subscriptions/listen"] {
            let old = format!(r#"{{"jsonrpc":"2.0","id":1,"method":"{m}"}}"#);
            assert_eq!(refused(&old, &[], Admin), (200, -32601), "{m}");
        }
        // No client notifications and no client responses in this era.
        let n = format!(r#"{{"jsonrpc":"2.0","method":"notifications/initialized","params":{{{META}}}}}"#);
        assert!(inspect_request(n.as_bytes(), &headers("notifications/initialized", None), &rules(), Admin).is_err());
        let r = r#"{"jsonrpc":"2.0","id":1,"result":{}}"#;
        assert_eq!(refused(r, &headers("x", None), Admin), (400, -32020));
    }

    #[test]
    fn metadata_must_agree_before_anything_is_decided() {
        let body = msg("tools/call", r#""name":"search""#);
        // (what, headers, expected code): each refused with HTTP 400.
        type Row = (&'static str, Vec<(String, String)>, i64);
        let rows: &[Row] = &[
            ("no headers at all", vec![], -32020),
            ("no Mcp-Method", headers("tools/call", Some("search")).into_iter().filter(|(n, _)| n != "Mcp-Method").collect(), -32020),
            ("Mcp-Name of an allowed tool, body another", headers("tools/call", Some("delete_repo")), -32020),
            ("Mcp-Method list, body call", headers("tools/list", Some("search")), -32020),
            (
                "handshake version header",
                vec![("mcp-protocol-version".into(), "2025-11-25".into()), ("mcp-method".into(), "tools/call".into()), ("mcp-name".into(), "search".into())],
                -32020,
            ),
        ];
        for (what, h, code) in rows {
            assert_eq!(refused(&body, h, Admin), (400, *code), "{what}");
        }
        // A body version Airlock does not inspect, agreeing with the header.
        let future = body.replace("2026-07-28", "2027-01-01");
        let mut h = headers("tools/call", Some("search"));
        h[0].1 = "2027-01-01".into();
        assert_eq!(refused(&future, &h, Admin), (400, -32022));
        // A 2026-07-28 header on a handshake-era body.
        let old = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search"}}"#;
        assert_eq!(refused(old, &headers("tools/call", Some("search")), Admin), (400, -32020));
        // The version key respelled is refused as a message.
        let respelled = body.replace("io.modelcontextprotocol/protocolVersion", "io.modelcontextprotocol/protocolversion");
        assert!(inspect_request(respelled.as_bytes(), &headers("tools/call", Some("search")), &rules(), Admin).is_err());
    }

    #[test]
    fn listen_asks_only_for_what_the_session_may_read() {
        let body = msg("subscriptions/listen", r#""notifications":{"toolsListChanged":true,"resourceSubscriptions":["docs://public/a","docs://private/b",7]}"#);
        let (_, sent) = forwarded(&body, &headers("subscriptions/listen", None), Read);
        assert_eq!(sent["params"]["notifications"], json!({"toolsListChanged": true, "resourceSubscriptions": ["docs://public/a"]}));
        let (call, _) = forwarded(&body, &headers("subscriptions/listen", None), Read);
        let stream: &[u8] = b"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/subscriptions/acknowledged\",\"params\":{\"notifications\":{\"resourceSubscriptions\":[\"docs://public/a\",\"docs://private/b\"]}}}\n\n\
data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/resources/updated\",\"params\":{\"uri\":\"docs://private/b\"}}\n\n\
data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/resources/updated\",\"params\":{\"uri\":\"docs://public/a\"}}\n\n\
data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n";
        for i in 0..=stream.len() {
            let mut f = EventFilter::new(Redactor::new(Vec::new()), Some(call.clone()), rules(), Read);
            let mut out = f.push(&stream[..i]).unwrap();
            out.extend(f.push(&stream[i..]).unwrap());
            out.extend(f.finish());
            let text = String::from_utf8(out).unwrap();
            assert!(!text.contains("private"), "split {i}: {text}");
            assert_eq!(text.matches("data: ").count(), 3, "split {i}: {text}");
        }
    }

    #[test]
    fn results_are_marked_private_and_discovery_filtered() {
        let call = |method: &str, name: Option<&str>, granted| {
            forwarded(&msg(method, name.map(|_| r#""name":"search""#).unwrap_or_default()), &headers(method, name), granted).0
        };
        let out = |c: &Call, response: &str, granted| serde_json::from_slice::<Value>(&filter_message(response.as_bytes(), c, &rules(), granted)).unwrap();
        let discover = r#"{"jsonrpc":"2.0","id":7,"result":{"resultType":"complete","supportedVersions":["2026-07-28","2099-01-01"],"capabilities":{"tools":{"listChanged":true},"prompts":{},"resources":{"subscribe":true},"completions":{},"logging":{},"extensions":{"io.modelcontextprotocol/tasks":{}},"experimental":{}},"cacheScope":"public","ttlMs":60000}}"#;
        let v = out(&call("server/discover", None, Read), discover, Read);
        assert_eq!(v["result"]["capabilities"], json!({"tools": {"listChanged": true}, "resources": {"subscribe": true}, "completions": {}, "logging": {}}));
        assert_eq!((&v["result"]["cacheScope"], &v["result"]["supportedVersions"]), (&json!("private"), &json!(["2026-07-28"])));
        let v = out(&call("server/discover", None, Admin), discover, Admin);
        assert!(v["result"]["capabilities"]["prompts"].is_object());
        let nothing = McpRules::default();
        let c = call("server/discover", None, Read);
        let v: Value = serde_json::from_slice(&filter_message(discover.as_bytes(), &c, &nothing, Read)).unwrap();
        assert_eq!(v["result"]["capabilities"], json!({"logging": {}}), "a session that can use nothing is offered nothing");
        // Lists: filtered as before, and private.
        let list =
            r#"{"jsonrpc":"2.0","id":7,"result":{"resultType":"complete","tools":[{"name":"search"},{"name":"delete_repo"}],"cacheScope":"public","ttlMs":5}}"#;
        let v = out(&call("tools/list", None, Read), list, Read);
        assert_eq!((v["result"]["tools"].clone(), v["result"]["cacheScope"].clone()), (json!([{"name": "search"}]), json!("private")));
        // The handshake era's lists are not marked.
        let old = inspect(br#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#, &rules(), Read).unwrap();
        let v = out(old.call(), list, Read);
        assert_eq!(v["result"]["cacheScope"], "public");
        // Respelled metadata a lenient client would read is not passed.
        for bad in [
            r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[],"cacheScope":"private","CacheScope":"public"}}"#,
            r#"{"jsonrpc":"2.0","id":7,"result":{"tools":[],"ResultType":"input_required"}}"#,
        ] {
            assert_eq!(out(&call("tools/list", None, Read), bad, Read)["error"]["code"], -32603, "{bad}");
        }
    }

    #[test]
    fn input_required_passes_only_where_the_era_allows_it() {
        let c = forwarded(&msg("tools/call", r#""name":"search""#), &headers("tools/call", Some("search")), Read).0;
        let ask = r#"{"jsonrpc":"2.0","id":7,"result":{"resultType":"input_required","inputRequests":{"confirm":{"method":"elicitation/create","params":{"mode":"form","message":"ok?","requestedSchema":{"type":"object"}}}},"requestState":"server-state"}}"#;
        assert_eq!(filter_message(ask.as_bytes(), &c, &rules(), Read), ask.as_bytes().to_vec(), "passes byte for byte (then scrubbed)");
        let odd = ask.replace("elicitation/create", "tools/call");
        let v: Value = serde_json::from_slice(&filter_message(odd.as_bytes(), &c, &rules(), Read)).unwrap();
        assert_eq!(v["error"]["code"], -32603, "a request the client does not serve");
        let list = forwarded(&msg("tools/list", ""), &headers("tools/list", None), Read).0;
        let v: Value = serde_json::from_slice(&filter_message(ask.as_bytes(), &list, &rules(), Read)).unwrap();
        assert_eq!(v["error"]["code"], -32603, "not on a list");
    }
}
