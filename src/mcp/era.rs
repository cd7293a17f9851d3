//! MCP eras: which protocol a request speaks, and the request metadata
//! headers of the stateless 2026-07-28 protocol checked against its body.
//!
//! Invariants:
//! - The era is what the client declares, and it must declare one thing:
//!   `params._meta["io.modelcontextprotocol/protocolVersion"]` and the
//!   `MCP-Protocol-Version` header agree, or the request is refused. No
//!   body version and no `2026-07-28` header is the handshake era
//!   (2025-11-25 and before), unchanged.
//! - In 2026-07-28, `Mcp-Method` (every request), `Mcp-Name` (for the
//!   methods that name a target) and every `Mcp-Param-*` header must equal
//!   the body after decoding, each present once; an intermediary routing on
//!   a header would otherwise act on another message than Airlock decided.
//! - What goes upstream is Airlock's own spelling of those values, rebuilt
//!   from the body, never the sandbox's header bytes.
//!
//! Must never: trust a header value the body does not carry, or decode a
//! value two ways (non-canonical base64 is refused).

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{Map, Value};

/// The one stateless protocol revision Airlock inspects.
pub const STATELESS: &str = "2026-07-28";
/// Where a 2026-07-28 request declares its version.
pub const VERSION_META: &str = "io.modelcontextprotocol/protocolVersion";

/// The protocol a request speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Era {
    /// `initialize` handshake and `Mcp-Session-Id` (2025-11-25 and before).
    #[default]
    Handshake,
    /// Per-request metadata, no sessions (2026-07-28).
    Stateless,
}

impl Era {
    /// The value of the audit record's `mcp_era`.
    pub fn as_str(self) -> &'static str {
        match self {
            Era::Handshake => "2025-11-25",
            Era::Stateless => STATELESS,
        }
    }
}

/// Why request metadata was refused: a mismatch (`-32020`) or a version
/// Airlock does not inspect (`-32022`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Mismatch(&'static str),
    Unsupported,
}

/// The one value of header `name` (any case); two copies are a mismatch,
/// since first-copy and last-copy readers would disagree.
fn one<'a>(headers: &'a [(String, String)], name: &str) -> Result<Option<&'a str>, Fault> {
    let mut found = headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name));
    let first = found.next().map(|(_, v)| v.as_str());
    if found.next().is_some() {
        return Err(Fault::Mismatch("a request metadata header appears twice"));
    }
    Ok(first)
}

/// The version the header declares, for a request without a body (GET,
/// DELETE): only the header can say.
pub fn header_era(headers: &[(String, String)]) -> Era {
    match one(headers, "mcp-protocol-version") {
        Ok(Some(STATELESS)) | Err(_) => Era::Stateless,
        _ => Era::Handshake,
    }
}

/// The era a message declares, from the header and the body's `_meta`.
pub fn detect(headers: &[(String, String)], meta_version: Option<&Value>) -> Result<Era, Fault> {
    let header = one(headers, "mcp-protocol-version")?;
    match (meta_version, header) {
        // A 2026-07-28 header with a body that declares nothing: the two
        // parts of one request say different things.
        (None, Some(STATELESS)) => Err(Fault::Mismatch("MCP-Protocol-Version names 2026-07-28, the body no version")),
        (None, _) => Ok(Era::Handshake),
        (Some(v), Some(h)) if v.as_str() == Some(h) => match h {
            STATELESS => Ok(Era::Stateless),
            _ => Err(Fault::Unsupported),
        },
        (Some(_), _) => Err(Fault::Mismatch("MCP-Protocol-Version does not match the body")),
    }
}

/// A header value as the spec encodes it: plain visible ASCII, or
/// `=?base64?…?=` holding canonical base64 of UTF-8. `None` for anything
/// else (control bytes, a malformed or non-canonical sentinel).
pub fn decode_value(raw: &str) -> Option<String> {
    if let Some(payload) = raw.strip_prefix("=?base64?").and_then(|r| r.strip_suffix("?=")) {
        let bytes = STANDARD.decode(payload).ok()?;
        // One spelling per value: padding bits and the like are refused.
        if STANDARD.encode(&bytes) != payload {
            return None;
        }
        return String::from_utf8(bytes).ok();
    }
    raw.bytes().all(|b| (0x20..=0x7e).contains(&b)).then(|| raw.to_string())
}

/// Airlock's spelling of a value (the spec's client rule): plain when it is
/// visible ASCII without edge spaces and not sentinel-shaped, else base64.
pub fn encode_value(value: &str) -> String {
    let plain = value.bytes().all(|b| (0x20..=0x7e).contains(&b)) && value.trim() == value && !(value.starts_with("=?base64?") && value.ends_with("?="));
    if plain {
        value.to_string()
    } else {
        format!("=?base64?{}?=", STANDARD.encode(value))
    }
}

/// Whether `header` (decoded) is what an argument value renders to: a
/// string as is, a boolean as `true`/`false`, an integer in decimal
/// (numerically: `42` and `42.0` are one integer).
fn renders_as(value: &Value, header: &str) -> bool {
    match value {
        Value::String(s) => s == header,
        Value::Bool(b) => header == if *b { "true" } else { "false" },
        Value::Number(n) => {
            let whole = header.split_once('.').filter(|(_, f)| !f.is_empty() && f.bytes().all(|b| b == b'0')).map_or(header, |(w, _)| w);
            let int = n.as_i64().or_else(|| n.as_f64().filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15).map(|f| f as i64));
            int.map_or(n.as_u64().is_some_and(|u| u.to_string() == whole), |i| i.to_string() == whole)
        }
        _ => false,
    }
}

/// Whether an argument reachable through object keys only (the places an
/// `x-mcp-header` annotation may mirror) renders as `header`.
fn mirrored(arguments: &Map<String, Value>, header: &str, depth: usize) -> bool {
    arguments.values().any(|v| match v {
        Value::Object(inner) => depth < 32 && mirrored(inner, header, depth + 1),
        other => renders_as(other, header),
    })
}

/// The headers of a 2026-07-28 request checked against its body: the
/// method, the target (`Mcp-Name`, for `name_key` = `name`/`uri`), and each
/// `Mcp-Param-*`. Returns the headers Airlock sends in their place.
///
/// Airlock holds no tool schema per request, so a `Mcp-Param-*` header
/// passes only if its decoded value is a value of the call's arguments; the
/// origin, holding the schema, checks the exact place on the canonical
/// body, which is all it receives.
pub fn check_headers(
    headers: &[(String, String)],
    method: &str,
    params: Option<&Map<String, Value>>,
    name_key: Option<&str>,
) -> Result<Vec<(String, String)>, Fault> {
    if one(headers, "mcp-method")? != Some(method) {
        return Err(Fault::Mismatch("Mcp-Method does not match the body"));
    }
    let mut out = vec![("mcp-protocol-version".to_string(), STATELESS.to_string()), ("mcp-method".to_string(), method.to_string())];
    let target = name_key.and_then(|k| params?.get(k)).and_then(Value::as_str);
    match (one(headers, "mcp-name")?.map(decode_value), target) {
        (None, None) => {}
        (Some(Some(h)), Some(t)) if h == t => out.push(("mcp-name".into(), encode_value(t))),
        _ => return Err(Fault::Mismatch("Mcp-Name does not match the body")),
    }
    let arguments = params.and_then(|p| p.get("arguments")).and_then(Value::as_object);
    for (name, raw) in headers {
        let Some(token) = name.get(..10).filter(|p| p.eq_ignore_ascii_case("mcp-param-")).and(name.get(10..)) else {
            continue;
        };
        let token = token.to_ascii_lowercase();
        let ok = !token.is_empty()
            && token.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
            && method == "tools/call"
            && !out.iter().any(|(n, _)| n.get(10..) == Some(token.as_str()) && n.starts_with("mcp-param-"));
        match decode_value(raw) {
            Some(v) if ok && arguments.is_some_and(|a| mirrored(a, &v, 0)) => out.push((format!("mcp-param-{token}"), encode_value(&v))),
            _ => return Err(Fault::Mismatch("an Mcp-Param header does not match the arguments")),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    type Headers = Vec<(String, String)>;

    fn h(pairs: &[(&str, &str)]) -> Headers {
        pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_era_is_declared_once() {
        let v26 = json!(STATELESS);
        // (what, headers, body version, expected)
        type Row<'a> = (&'static str, Headers, Option<&'a Value>, Result<Era, Fault>);
        let rows: &[Row] = &[
            ("handshake, header", h(&[("MCP-Protocol-Version", "2025-11-25")]), None, Ok(Era::Handshake)),
            ("handshake, no header (initialize)", h(&[]), None, Ok(Era::Handshake)),
            ("stateless, both agree", h(&[("mcp-protocol-version", STATELESS)]), Some(&v26), Ok(Era::Stateless)),
            (
                "header 2026, body none",
                h(&[("mcp-protocol-version", STATELESS)]),
                None,
                Err(Fault::Mismatch("MCP-Protocol-Version names 2026-07-28, the body no version")),
            ),
            (
                "header 2025, body 2026",
                h(&[("mcp-protocol-version", "2025-11-25")]),
                Some(&v26),
                Err(Fault::Mismatch("MCP-Protocol-Version does not match the body")),
            ),
            ("no header, body 2026", h(&[]), Some(&v26), Err(Fault::Mismatch("MCP-Protocol-Version does not match the body"))),
            (
                "body a number",
                h(&[("mcp-protocol-version", STATELESS)]),
                Some(&json!(20260728)),
                Err(Fault::Mismatch("MCP-Protocol-Version does not match the body")),
            ),
            (
                "header with a space",
                h(&[("mcp-protocol-version", " 2026-07-28")]),
                Some(&v26),
                Err(Fault::Mismatch("MCP-Protocol-Version does not match the body")),
            ),
            (
                "header twice",
                h(&[("mcp-protocol-version", STATELESS), ("MCP-PROTOCOL-VERSION", STATELESS)]),
                Some(&v26),
                Err(Fault::Mismatch("a request metadata header appears twice")),
            ),
            ("a future version, agreeing", h(&[("mcp-protocol-version", "2027-01-01")]), Some(&json!("2027-01-01")), Err(Fault::Unsupported)),
            ("a handshake version in _meta", h(&[("mcp-protocol-version", "2025-11-25")]), Some(&json!("2025-11-25")), Err(Fault::Unsupported)),
        ];
        for (what, headers, meta, want) in rows {
            assert_eq!(detect(headers, *meta), *want, "{what}");
        }
        assert_eq!(header_era(&h(&[("Mcp-Protocol-Version", STATELESS)])), Era::Stateless);
        assert_eq!(header_era(&h(&[("mcp-protocol-version", "2025-11-25")])), Era::Handshake);
        assert_eq!(header_era(&h(&[])), Era::Handshake);
    }

    #[test]
    fn header_values_have_one_spelling() {
        for (raw, want) in [
            ("search", Some("search")),
            ("=?base64?c2VhcmNo?=", Some("search")),
            ("=?base64?SGVsbG8sIOS4lueVjA==?=", Some("Hello, \u{4e16}\u{754c}")),
            ("=?base64?c2VhcmNo?", Some("=?base64?c2VhcmNo?")),
            ("=?base64?c2VhcmNo====?=", None),
            ("=?base64?YR==?=", None),
            ("=?BASE64?c2VhcmNo?=", Some("=?BASE64?c2VhcmNo?=")),
            ("=?base64?/w==?=", None),
            ("sea\u{0}rch", None),
            ("caf\u{e9}", None),
        ] {
            assert_eq!(decode_value(raw).as_deref(), want, "{raw:?}");
        }
        for v in ["search", "us-west1", " padded ", "line1\nline2", "=?base64?literal?=", "Hello, \u{4e16}"] {
            assert_eq!(decode_value(&encode_value(v)).as_deref(), Some(v), "{v:?}");
        }
        assert_eq!(encode_value("=?base64?literal?="), "=?base64?PT9iYXNlNjQ/bGl0ZXJhbD89?=");
    }

    #[test]
    fn headers_must_match_the_body() {
        let params = json!({"name": "search", "arguments": {"query": "x", "region": "us-west1", "opts": {"limit": 5, "exact": true}, "list": ["hidden"]}});
        let p = params.as_object();
        let base = [("Mcp-Method", "tools/call"), ("Mcp-Name", "search")];
        let ok = |extra: &[(&str, &str)]| {
            let mut all = base.to_vec();
            all.extend_from_slice(extra);
            check_headers(&h(&all), "tools/call", p, Some("name"))
        };
        let sent = ok(&[("Mcp-Param-Region", "us-west1"), ("mcp-param-limit", "5"), ("Mcp-Param-Exact", "true"), ("Mcp-Param-L2", "5.0")]).unwrap();
        assert_eq!(
            sent,
            h(&[
                ("mcp-protocol-version", STATELESS),
                ("mcp-method", "tools/call"),
                ("mcp-name", "search"),
                ("mcp-param-region", "us-west1"),
                ("mcp-param-limit", "5"),
                ("mcp-param-exact", "true"),
                ("mcp-param-l2", "5.0"),
            ])
        );
        assert!(ok(&[("Mcp-Param-Region", "=?base64?dXMtd2VzdDE=?=")]).is_ok(), "an encoded value decodes to the body's");
        // (what, headers, method, name key)
        let refused: &[(&str, Headers)] = &[
            ("no Mcp-Method", h(&[("Mcp-Name", "search")])),
            ("Mcp-Method another case", h(&[("Mcp-Method", "Tools/Call"), ("Mcp-Name", "search")])),
            ("Mcp-Method percent-encoded", h(&[("Mcp-Method", "tools%2Fcall"), ("Mcp-Name", "search")])),
            ("Mcp-Method with a space", h(&[("Mcp-Method", "tools/call "), ("Mcp-Name", "search")])),
            ("Mcp-Method another method", h(&[("Mcp-Method", "tools/list"), ("Mcp-Name", "search")])),
            ("Mcp-Method twice", h(&[("Mcp-Method", "tools/call"), ("mcp-method", "tools/call"), ("Mcp-Name", "search")])),
            ("Mcp-Method joined", h(&[("Mcp-Method", "tools/call, tools/call"), ("Mcp-Name", "search")])),
            ("Mcp-Method base64", h(&[("Mcp-Method", "=?base64?dG9vbHMvY2FsbA==?="), ("Mcp-Name", "search")])),
            ("no Mcp-Name", h(&[("Mcp-Method", "tools/call")])),
            ("Mcp-Name another tool", h(&[("Mcp-Method", "tools/call"), ("Mcp-Name", "delete_repo")])),
            ("Mcp-Name another case", h(&[("Mcp-Method", "tools/call"), ("Mcp-Name", "Search")])),
            ("Mcp-Name with a space", h(&[("Mcp-Method", "tools/call"), ("Mcp-Name", "search ")])),
            ("Mcp-Name percent-encoded", h(&[("Mcp-Method", "tools/call"), ("Mcp-Name", "sea%72ch")])),
            ("Mcp-Name base64 of another", h(&[("Mcp-Method", "tools/call"), ("Mcp-Name", "=?base64?ZGVsZXRlX3JlcG8=?=")])),
            ("Mcp-Name non-canonical base64", h(&[("Mcp-Method", "tools/call"), ("Mcp-Name", "=?base64?c2VhcmNp?=")])),
            ("Mcp-Name twice, same value", h(&[("Mcp-Method", "tools/call"), ("Mcp-Name", "search"), ("MCP-NAME", "search")])),
            ("Mcp-Name NUL", h(&[("Mcp-Method", "tools/call"), ("Mcp-Name", "search\u{0}")])),
            ("Mcp-Param of no argument", h(&[("Mcp-Method", "tools/call"), ("Mcp-Name", "search"), ("Mcp-Param-Region", "eu-west1")])),
            ("Mcp-Param from an array", h(&[("Mcp-Method", "tools/call"), ("Mcp-Name", "search"), ("Mcp-Param-L", "hidden")])),
            ("Mcp-Param twice", h(&[("Mcp-Method", "tools/call"), ("Mcp-Name", "search"), ("Mcp-Param-Region", "us-west1"), ("mcp-param-region", "us-west1")])),
            ("Mcp-Param empty token", h(&[("Mcp-Method", "tools/call"), ("Mcp-Name", "search"), ("Mcp-Param-", "x")])),
            ("Mcp-Param bad base64", h(&[("Mcp-Method", "tools/call"), ("Mcp-Name", "search"), ("Mcp-Param-Region", "=?base64?dXMtd2VzdDE?=")])),
            ("Mcp-Param 5.5 for 5", h(&[("Mcp-Method", "tools/call"), ("Mcp-Name", "search"), ("Mcp-Param-Limit", "5.5")])),
            ("Mcp-Param True for true", h(&[("Mcp-Method", "tools/call"), ("Mcp-Name", "search"), ("Mcp-Param-Exact", "True")])),
        ];
        for (what, headers) in refused {
            assert!(matches!(check_headers(headers, "tools/call", p, Some("name")), Err(Fault::Mismatch(_))), "{what}");
        }
        // Methods without a target carry no Mcp-Name, and no Mcp-Param.
        assert!(check_headers(&h(&[("Mcp-Method", "tools/list")]), "tools/list", None, None).is_ok());
        assert!(check_headers(&h(&[("Mcp-Method", "tools/list"), ("Mcp-Name", "x")]), "tools/list", None, None).is_err());
        // A call naming nothing carries no Mcp-Name either (and is refused later).
        assert!(check_headers(&h(&[("Mcp-Method", "tools/call")]), "tools/call", None, Some("name")).is_ok());
        let uri = json!({"uri": "docs://public/\u{e9}"});
        assert!(check_headers(
            &h(&[("Mcp-Method", "resources/read"), ("Mcp-Name", "=?base64?ZG9jczovL3B1YmxpYy/DqQ==?=")]),
            "resources/read",
            uri.as_object(),
            Some("uri")
        )
        .is_ok());
    }
}
