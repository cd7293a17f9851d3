//! The policy's JSON, read field by field into the typed
//! [`Policy`](super::Policy): every field checked, every error naming its
//! field (`tools.github.rules[0].level`), in the worker and in `airlock
//! policy check` alike.
//!
//! The JSON is read strictly first (as MCP messages are): a duplicate key
//! anywhere is an error, never "the last one wins". Unknown fields are
//! errors, and `null` is the same as leaving a field out.

use std::collections::BTreeMap;

use serde_json::Value;

use super::*;
use crate::egress::{EgressRule, HostPattern};
use crate::json::{level, Obj};
use crate::mcp::{McpGate, McpRules};

/// Parses and validates a policy.
pub(super) fn parse(json: &str) -> Result<Policy, PolicyError> {
    let mut value = crate::mcp::strict_json(json.as_bytes()).map_err(|why| err("", format!("not valid policy JSON: {why}")))?;
    // Presets fill in the JSON of their tools before anything is read, so
    // a preset tool is checked exactly like one written out by hand.
    if let Some(Value::Object(tools)) = value.get_mut("tools") {
        for (name, tool) in tools.iter_mut() {
            let Some(map) = tool.as_object_mut() else { continue };
            let preset = match map.get("preset") {
                None | Some(Value::Null) => continue,
                Some(p) => p.as_str().unwrap_or_default().to_string(),
            };
            if !super::preset::apply(&preset, map) {
                return Err(err(format!("tools.{name}.preset"), super::preset::UNKNOWN));
            }
        }
    }
    read_policy(&value)
}

/// A map of names to levels (MCP tools and prompts).
fn levels(map: Option<Obj<'_>>) -> Result<BTreeMap<String, Level>, PolicyError> {
    let Some(map) = map else { return Ok(BTreeMap::new()) };
    let mut out = BTreeMap::new();
    for (name, value) in map.map {
        if name.is_empty() {
            return Err(err(&map.path, "tool and prompt names must not be empty"));
        }
        out.insert(name.clone(), level(value, map.field(name))?);
    }
    Ok(out)
}

fn rate(obj: Option<Obj<'_>>) -> Result<Option<Rate>, PolicyError> {
    let Some(mut o) = obj else { return Ok(None) };
    let burst = o.u64("burst")?.ok_or_else(|| err(o.field("burst"), "is required"))?;
    let per_second = o.f64("per_second")?.ok_or_else(|| err(o.field("per_second"), "is required"))?;
    if burst == 0 || burst > 1_000_000 {
        return Err(err(o.field("burst"), "must be between 1 and 1000000"));
    }
    if !(per_second.is_finite() && per_second > 0.0 && per_second <= 1_000_000.0) {
        return Err(err(o.field("per_second"), "must be a number above 0 and at most 1000000"));
    }
    o.done()?;
    Ok(Some(Rate { capacity: burst as u32, per_second }))
}

// ---- validation ----------------------------------------------------------

fn is_token_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && s.as_bytes()[0].is_ascii_alphanumeric()
}

fn is_header_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_header_value_text(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

fn read_policy(value: &Value) -> Result<Policy, PolicyError> {
    let mut top = Obj::of(value, String::new())?;
    match top.get("version") {
        Some(v) if v.as_u64() == Some(1) => {}
        _ => return Err(err("version", "must be 1")),
    }
    let audience = top.required_str("audience")?;
    if audience.is_empty() || audience.len() > 128 || !is_header_value_text(audience) {
        return Err(err("audience", "must be 1-128 printable characters"));
    }
    let limits = read_limits(top.obj("limits")?)?;
    let require_proof = top.flag("require_proof")?;
    let mut tools = BTreeMap::new();
    let Some(raw_tools) = top.obj("tools")? else {
        return Err(err("tools", "is required"));
    };
    if raw_tools.map.is_empty() {
        return Err(err("tools", "declare at least one tool"));
    }
    for (name, raw) in raw_tools.map {
        let field = format!("tools.{name}");
        if !is_token_name(name) {
            return Err(err(field, "tool names are 1-64 of [a-z0-9_-], starting with a letter or digit"));
        }
        let tool = read_tool(Obj::of(raw, field)?, name)?;
        tools.insert(name.clone(), tool);
    }
    let egress = match top.obj("egress")? {
        Some(e) => read_egress(e)?,
        None => Vec::new(),
    };
    let approvals = read_approvals(top.obj("approvals")?)?;
    top.done()?;
    Ok(Policy { audience: audience.to_string(), limits, require_proof, tools, egress, approvals })
}

fn read_approvals(obj: Option<Obj<'_>>) -> Result<Approvals, PolicyError> {
    let Some(mut o) = obj else { return Ok(Approvals::default()) };
    let webhook = match o.obj("webhook")? {
        None => None,
        Some(mut w) => {
            let dest = match (w.str("url")?, w.str("service")?) {
                (Some(url), None) if url.starts_with("https://") && url.len() <= 2048 && is_header_value_text(url) && !url.contains(' ') => {
                    WebhookDest::Url(url.to_string())
                }
                (Some(_), None) => return Err(err(w.field("url"), "must be an https:// URL")),
                (None, Some(name)) if is_binding_name(name) => WebhookDest::Service(name.to_string()),
                (None, Some(_)) => return Err(err(w.field("service"), "must be a binding name")),
                _ => return Err(err(&w.path, "needs exactly one of url and service")),
            };
            w.done()?;
            Some(dest)
        }
    };
    let secret = o.str("webhook_secret")?.unwrap_or("AIRLOCK_WEBHOOK_SECRET");
    if !is_binding_name(secret) {
        return Err(err(o.field("webhook_secret"), "must be a secret name"));
    }
    let page_url = o.str("page_url")?;
    if let Some(u) = page_url {
        if !(u.starts_with("https://") || u.starts_with("http://")) || u.len() > 512 || !is_header_value_text(u) || u.contains(['"', '<', '>', ' ']) {
            return Err(err(o.field("page_url"), "must be the worker's http(s) base URL"));
        }
    }
    o.done()?;
    Ok(Approvals { webhook, webhook_secret: secret.to_string(), page_url: page_url.map(|u| u.trim_end_matches('/').to_string()) })
}

fn read_limits(obj: Option<Obj<'_>>) -> Result<Limits, PolicyError> {
    let d = Limits::default();
    let Some(mut o) = obj else { return Ok(d) };
    // Each limit: its name, the default, and the range it must be in.
    let mut bounded = |key: &'static str, default: u64, min: u64, max: u64| -> Result<u64, PolicyError> {
        let value = o.u64(key)?.unwrap_or(default);
        if !(min..=max).contains(&value) {
            return Err(err(o.field(key), format!("must be between {min} and {max}")));
        }
        Ok(value)
    };
    let limits = Limits {
        max_session_ttl_seconds: bounded("max_session_ttl_seconds", d.max_session_ttl_seconds, 1, 86_400)?,
        max_request_body_bytes: bounded("max_request_body_bytes", d.max_request_body_bytes, 0, u64::MAX)?,
        upstream_timeout_ms: bounded("upstream_timeout_ms", d.upstream_timeout_ms, 1_000, 300_000)?,
        max_response_body_bytes: bounded("max_response_body_bytes", d.max_response_body_bytes, 1, u64::MAX)?,
        upstream_idle_timeout_ms: bounded("upstream_idle_timeout_ms", d.upstream_idle_timeout_ms, 1_000, 300_000)?,
        proof_window_seconds: bounded("proof_window_seconds", d.proof_window_seconds, 1, crate::proof::MAX_WINDOW_SECS)?,
        idempotency_ttl_seconds: bounded("idempotency_ttl_seconds", d.idempotency_ttl_seconds, 60, 7 * 86_400)?,
        // Stored answers live in Durable Object rows.
        idempotency_max_body_bytes: bounded("idempotency_max_body_bytes", d.idempotency_max_body_bytes, 0, 1024 * 1024)?,
        approval_ttl_seconds: bounded("approval_ttl_seconds", d.approval_ttl_seconds, 60, 7 * 86_400)?,
        session_rate: None,
    };
    let session_rate = rate(o.obj("session_rate")?)?;
    o.done()?;
    Ok(Limits { session_rate, ..limits })
}

fn read_egress(mut e: Obj<'_>) -> Result<Vec<EgressRule>, PolicyError> {
    let hosts = e.list("hosts")?;
    let list_field = e.field("hosts");
    e.done()?;
    let mut egress = Vec::new();
    for (i, entry) in hosts.iter().enumerate() {
        let field = format!("{list_field}[{i}]");
        let (host, http, ports, package_index) = match entry {
            Value::String(h) => (h.as_str(), false, Vec::new(), false),
            _ => {
                let mut o = Obj::of(entry, field.clone())?;
                let host = o.required_str("host")?;
                let http = o.flag("http")?;
                let mut ports = Vec::new();
                for (j, p) in o.list("ports")?.iter().enumerate() {
                    match p.as_u64() {
                        Some(port @ 1..=65_535) => ports.push(port as u16),
                        _ => return Err(err(format!("{field}.ports[{j}]"), "ports are 1-65535")),
                    }
                }
                let package_index = o.flag("package_index")?;
                o.done()?;
                (host, http, ports, package_index)
            }
        };
        let pattern = HostPattern::parse(host).map_err(|m| err(&field, m))?;
        egress.push(EgressRule { pattern, http, ports, package_index });
    }
    Ok(egress)
}

/// Longest per-tool upstream timeout: a long non-streaming model call.
const MAX_TOOL_TIMEOUT_MS: u64 = 900_000;

fn read_tool(mut t: Obj<'_>, name: &str) -> Result<Tool, PolicyError> {
    let field = t.path.clone();
    let preset = t.str("preset")?.and_then(super::preset::name);
    let mut session_token = read_slots(t.obj("session_token")?)?;
    let mut timeouts = [None, None];
    for (slot, key) in timeouts.iter_mut().zip(["timeout_ms", "idle_timeout_ms"]) {
        *slot = t.u64(key)?;
        if slot.is_some_and(|v| !(1_000..=MAX_TOOL_TIMEOUT_MS).contains(&v)) {
            return Err(err(t.field(key), format!("must be between 1000 and {MAX_TOOL_TIMEOUT_MS}")));
        }
    }
    let allow_http = t.flag("allow_http")?;
    let origin = match (t.str("origin")?, t.str("service")?) {
        (Some(url), None) => Origin { target: Target::Public, ..parse_origin(url, allow_http, &t.field("origin"))? },
        (url, Some(binding)) => {
            if !is_binding_name(binding) {
                return Err(err(t.field("service"), "must be a binding name ([A-Za-z_][A-Za-z0-9_]*)"));
            }
            let base = match url {
                Some(url) => parse_origin(url, allow_http, &t.field("origin"))?,
                // The private service sees this host; `.invalid` can never
                // resolve on the public internet.
                None => Origin { target: Target::Public, base: format!("https://{name}.airlock.invalid"), base_path: String::new() },
            };
            Origin { target: Target::Service { binding: binding.to_string() }, ..base }
        }
        (None, None) => return Err(err(field, "needs \"origin\" (https URL) or \"service\" (binding name)")),
    };
    let credential = t.obj("credential")?.map(|c| read_credential(c, allow_http)).transpose()?;
    if let Some(Credential { placement: Placement::AwsSigV4(_), .. }) = &credential {
        super::aws::check_tool(&mut session_token);
    }
    let mut forward_headers = Vec::new();
    for (i, h) in t.strings("forward_headers")?.into_iter().enumerate() {
        let f = format!("{field}.forward_headers[{i}]");
        let lower = h.to_ascii_lowercase();
        if !is_header_name(&lower) {
            return Err(err(f, "not a valid header name"));
        }
        if header_is_forbidden(&lower) {
            return Err(err(f, format!("{lower:?} can never be forwarded from the sandbox")));
        }
        if is_token_header(&lower, Some(&session_token)) {
            return Err(err(f, "is a place for the session token and is never forwarded"));
        }
        // Headers are bound by neither request proofs nor approvals, so
        // an approved POST could come back as a DELETE; the query
        // parameter (with `allow_method_override`) is bound by both.
        if is_method_override_name(lower.as_bytes()) {
            return Err(err(
                f,
                "is a method-override header and is never forwarded; use the real method, or the query parameter with \"allow_method_override\": true",
            ));
        }
        if let Some(Credential { placement: Placement::Header { name, .. }, .. }) = &credential {
            if *name == lower {
                return Err(err(f, "is the credential header; the sandbox may not send it"));
            }
        }
        forward_headers.push(lower);
    }
    let mcp = t.obj("mcp")?.map(read_mcp).transpose()?;
    let raw_rules = t.list("rules")?;
    if raw_rules.is_empty() && mcp.is_none() {
        return Err(err(t.field("rules"), "declare at least one rule (default is deny), or an \"mcp\" section"));
    }
    let mut rules = Vec::new();
    for (i, r) in raw_rules.iter().enumerate() {
        rules.push(read_rule(Obj::of(r, format!("{field}.rules[{i}]"))?, &session_token)?);
    }
    let tool = Tool {
        name: name.to_string(),
        preset,
        origin,
        credential,
        forward_headers,
        allow_path_params: t.flag("allow_path_params")?,
        allow_method_override: t.flag("allow_method_override")?,
        allow_range: t.flag("allow_range")?,
        rules,
        mcp,
        require_proof: t.flag("require_proof")?,
        rate: rate(t.obj("rate")?)?,
        session_token,
        timeout_ms: timeouts[0],
        idle_timeout_ms: timeouts[1],
        pass_server_errors: t.flag("pass_server_errors")?,
    };
    t.done()?;
    Ok(tool)
}

fn read_rule(mut r: Obj<'_>, slots: &TokenSlots) -> Result<Rule, PolicyError> {
    let names = r.strings("methods")?;
    if names.is_empty() {
        return Err(err(r.field("methods"), "list at least one method"));
    }
    let mut methods = Vec::new();
    for (j, m) in names.iter().enumerate() {
        let method = Method::parse(m).ok_or_else(|| {
            err(format!("{}.methods[{j}]", r.path), format!("unknown method {m:?}; use upper-case GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS"))
        })?;
        methods.push(method);
    }
    let path = PathPattern::parse(r.required_str("path")?).map_err(|m| err(r.field("path"), m))?;
    let mut query = Vec::new();
    if let Some(q) = r.obj("query")? {
        for (name, value) in q.map {
            let Some(value) = value.as_str() else {
                return Err(err(q.field(name), "must be a string"));
            };
            if name.is_empty() || is_method_override_name(name.as_bytes()) || slots.query.contains(name) {
                return Err(err(&q.path, format!("{name:?} cannot be matched")));
            }
            if value.bytes().any(|b| b.is_ascii_control()) {
                return Err(err(q.field(name), "must not contain control characters"));
            }
            query.push((name.clone(), value.to_string()));
        }
    }
    let level = level(r.get("level").unwrap_or(&Value::Null), r.field("level"))?;
    let (approval, approval_wait_s) = read_approval(&mut r)?;
    r.done()?;
    Ok(Rule { methods, path, query, level, approval, approval_wait_s })
}

/// `approval`: `true`, or `{"wait_seconds": N}` to hold the request open.
fn read_approval(r: &mut Obj<'_>) -> Result<(bool, u64), PolicyError> {
    Ok(match r.get("approval") {
        None | Some(Value::Bool(false)) => (false, 0),
        Some(Value::Bool(true)) => (true, 0),
        Some(v) => {
            let mut o = Obj::of(v, r.field("approval"))?;
            let wait = o.u64("wait_seconds")?.unwrap_or(0);
            if wait > MAX_APPROVAL_WAIT_S {
                return Err(err(o.field("wait_seconds"), format!("must be between 0 and {MAX_APPROVAL_WAIT_S}")));
            }
            o.done()?;
            (true, wait)
        }
    })
}

/// Tool levels, and the gates of the tools that have one.
type McpTools = (BTreeMap<String, Level>, Vec<(String, McpGate)>);

/// An MCP server's `tools`: name -> level, or name -> `{"level", "approval",
/// "dedupe_seconds"}` for a gated or deduplicated tool.
fn read_mcp_tools(map: Option<Obj<'_>>) -> Result<McpTools, PolicyError> {
    let Some(map) = map else { return Ok(Default::default()) };
    let (mut tools, mut gates) = (BTreeMap::new(), Vec::new());
    for (name, value) in map.map {
        if name.is_empty() {
            return Err(err(&map.path, "tool and prompt names must not be empty"));
        }
        if !value.is_object() {
            tools.insert(name.clone(), level(value, map.field(name))?);
            continue;
        }
        let mut o = Obj::of(value, map.field(name))?;
        tools.insert(name.clone(), level(o.get("level").unwrap_or(&Value::Null), o.field("level"))?);
        let (approval, wait_s) = read_approval(&mut o)?;
        let dedupe_s = o.u64("dedupe_seconds")?.unwrap_or(0);
        if dedupe_s > MAX_DEDUPE_S {
            return Err(err(o.field("dedupe_seconds"), "must be between 0 and 86400 (one day)"));
        }
        o.done()?;
        if approval || dedupe_s > 0 {
            gates.push((name.clone(), McpGate { approval, wait_s, dedupe_s }));
        }
    }
    Ok((tools, gates))
}

fn read_mcp(mut m: Obj<'_>) -> Result<McpRules, PolicyError> {
    let (tools, gates) = read_mcp_tools(m.obj("tools")?)?;
    let prompts = levels(m.obj("prompts")?)?;
    let default_tool = m.get("default_tool_level").map(|v| level(v, m.field("default_tool_level"))).transpose()?;
    let mut resources = Vec::new();
    for (i, r) in m.list("resources")?.iter().enumerate() {
        let mut o = Obj::of(r, format!("{}.resources[{i}]", m.path))?;
        let prefix = o.required_str("prefix")?;
        if prefix.is_empty() {
            return Err(err(o.field("prefix"), "must not be empty (name the URI scheme at least)"));
        }
        let level = level(o.get("level").unwrap_or(&Value::Null), o.field("level"))?;
        o.done()?;
        resources.push((prefix.to_string(), level));
    }
    m.done()?;
    Ok(McpRules { tools, default_tool, resources, prompts, gates })
}

/// A tool's extra places for the session token: header names that are not
/// otherwise forwarded or forbidden, and query parameter names.
fn read_slots(obj: Option<Obj<'_>>) -> Result<TokenSlots, PolicyError> {
    let Some(mut o) = obj else { return Ok(TokenSlots::default()) };
    let mut headers = Vec::new();
    for (i, h) in o.strings("headers")?.into_iter().enumerate() {
        let lower = h.to_ascii_lowercase();
        let builtin = FORWARDED_HEADERS.contains(&lower.as_str()) || MCP_HEADERS.contains(&lower.as_str());
        if !is_header_name(&lower) || header_is_forbidden(&lower) || builtin {
            return Err(err(format!("{}.headers[{i}]", o.path), format!("{lower:?} cannot carry the session token")));
        }
        headers.push(lower);
    }
    let query = o.strings("query")?;
    for (i, q) in query.iter().enumerate() {
        if q.is_empty() || !q.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b)) || is_method_override_name(q.as_bytes()) {
            return Err(err(format!("{}.query[{i}]", o.path), "must be 1+ of [A-Za-z0-9-_.~] and not a method override"));
        }
    }
    o.done()?;
    Ok(TokenSlots { headers, query })
}

pub(super) fn read_credential(mut c: Obj<'_>, allow_http: bool) -> Result<Credential, PolicyError> {
    // An AWS signing credential is read by its own module; the other
    // kinds are minted (`upstream`).
    if c.str("kind")? == Some("aws_sigv4") {
        return super::aws::read(c);
    }
    let secret = c.required_str("secret")?;
    if !is_binding_name(secret) {
        return Err(err(c.field("secret"), "must be a secret binding name ([A-Za-z_][A-Za-z0-9_]*)"));
    }
    let upstream = super::upstream::read(&mut c, allow_http)?;
    let inject = match (c.str("inject")?, &upstream) {
        (Some(inject), _) => inject,
        // A minted token is a bearer token unless the policy says otherwise.
        (None, Some(_)) => "bearer",
        (None, None) => return Err(err(c.field("inject"), "required: bearer, header, basic or query (or a tool \"preset\")")),
    };
    let header = c.str("header")?;
    let format = c.str("format")?;
    let username = c.str("username")?;
    let param = c.str("param")?;
    let path = c.path.clone();
    c.done()?;
    // The fields each mode takes; any other that is set is an error.
    let (placement, takes): (Placement, &[&str]) = match inject {
        "bearer" => (Placement::Bearer, &[]),
        "header" => {
            let name = header.ok_or_else(|| err(format!("{path}.header"), "required when inject is \"header\""))?.to_ascii_lowercase();
            if !is_header_name(&name) {
                return Err(err(format!("{path}.header"), "not a valid header name"));
            }
            if name != "authorization" && header_is_forbidden(&name) {
                return Err(err(format!("{path}.header"), format!("{name:?} cannot carry a credential")));
            }
            let format = format.unwrap_or("{secret}");
            let (prefix, suffix) = format.split_once("{secret}").ok_or_else(|| err(format!("{path}.format"), "must contain {secret} once"))?;
            if suffix.contains("{secret}") || !is_header_value_text(format) {
                return Err(err(format!("{path}.format"), "must contain {secret} once and only printable characters"));
            }
            (Placement::Header { name, prefix: prefix.to_string(), suffix: suffix.to_string() }, &["header", "format"])
        }
        "basic" => {
            if let Some(u) = username {
                if u.contains(':') || !is_header_value_text(u) {
                    return Err(err(format!("{path}.username"), "must not contain ':' or control characters"));
                }
            }
            (Placement::Basic { username: username.map(str::to_string) }, &["username"])
        }
        "query" => {
            let param = param.ok_or_else(|| err(format!("{path}.param"), "required when inject is \"query\""))?;
            if param.is_empty() || !param.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b)) {
                return Err(err(format!("{path}.param"), "must be 1+ of [A-Za-z0-9-_.~]"));
            }
            (Placement::Query { param: param.to_string() }, &["param"])
        }
        _ => return Err(err(format!("{path}.inject"), "must be \"bearer\", \"header\", \"basic\" or \"query\"")),
    };
    for (key, set) in [("header", header.is_some()), ("format", format.is_some()), ("username", username.is_some()), ("param", param.is_some())] {
        if set && !takes.contains(&key) {
            return Err(err(format!("{path}.{key}"), "does not apply to this \"inject\" mode"));
        }
    }
    Ok(Credential { secret: secret.to_string(), placement, upstream })
}

fn parse_origin(raw: &str, allow_http: bool, field: &str) -> Result<Origin, PolicyError> {
    // The URL parser's IDNA step has debug assertions reachable from
    // crafted punycode; origins are ASCII host names without it.
    if crate::egress::has_punycode(raw) {
        return Err(err(field, "punycode (xn--) host names are not supported in origins"));
    }
    let url = url::Url::parse(raw).map_err(|e| err(field, format!("not a URL: {e}")))?;
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        "http" => return Err(err(field, "must be https (set \"allow_http\": true only for local development)")),
        other => return Err(err(field, format!("scheme {other:?} is not supported"))),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(err(field, "must not contain credentials; use \"credential\""));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(err(field, "must not contain a query or fragment"));
    }
    let host = url.host_str().filter(|h| !h.is_empty()).ok_or_else(|| err(field, "needs a host"))?;
    let base = match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    };
    let base_path = url.path().trim_end_matches('/').to_string();
    Ok(Origin { target: Target::Public, base, base_path })
}
