//! The policy's JSON shape (`Raw*`, decoded by serde) and its validation
//! into the typed [`Policy`](super::Policy): every field checked, every
//! error naming its field.

use std::collections::BTreeMap;

use serde::Deserialize;

use super::*;
use crate::egress::{EgressRule, HostPattern};
use crate::mcp::McpRules;

/// Decodes the JSON shape, naming the field of a type error. The worker
/// reports the line and column instead: tracking field paths costs tens of
/// kilobytes of Wasm, and `airlock policy check` names the field before a
/// policy is deployed.
#[cfg(not(target_arch = "wasm32"))]
pub(super) fn parse_raw(json: &str) -> Result<RawPolicy, PolicyError> {
    let de = &mut serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        PolicyError { field: if path == "." { String::new() } else { path }, message: e.inner().to_string() }
    })
}

#[cfg(target_arch = "wasm32")]
pub(super) fn parse_raw(json: &str) -> Result<RawPolicy, PolicyError> {
    serde_json::from_str(json).map_err(|e| PolicyError { field: String::new(), message: format!("{e} (`airlock policy check` names the field)") })
}

// ---- raw JSON shape ------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawPolicy {
    version: u32,
    audience: String,
    #[serde(default)]
    limits: RawLimits,
    tools: BTreeMap<String, RawTool>,
    #[serde(default)]
    egress: Option<RawEgress>,
    #[serde(default)]
    require_proof: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRate {
    burst: u32,
    per_second: f64,
}

impl RawRate {
    fn validate(self, field: &str) -> Result<Rate, PolicyError> {
        if self.burst == 0 || self.burst > 1_000_000 {
            return Err(err(format!("{field}.burst"), "must be between 1 and 1000000"));
        }
        if !(self.per_second.is_finite() && self.per_second > 0.0 && self.per_second <= 1_000_000.0) {
            return Err(err(format!("{field}.per_second"), "must be a number above 0 and at most 1000000"));
        }
        Ok(Rate { capacity: self.burst, per_second: self.per_second })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEgress {
    hosts: Vec<RawEgressHost>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawEgressHost {
    Name(String),
    Entry(RawEgressEntry),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEgressEntry {
    host: String,
    #[serde(default)]
    http: bool,
    #[serde(default)]
    ports: Vec<u16>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_session_ttl_seconds: Option<u64>,
    max_request_body_bytes: Option<u64>,
    upstream_timeout_ms: Option<u64>,
    max_response_body_bytes: Option<u64>,
    upstream_idle_timeout_ms: Option<u64>,
    session_rate: Option<RawRate>,
    proof_window_seconds: Option<u64>,
    idempotency_ttl_seconds: Option<u64>,
    idempotency_max_body_bytes: Option<u64>,
    approval_ttl_seconds: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTool {
    pub(super) preset: Option<String>,
    pub(super) origin: Option<String>,
    pub(super) service: Option<String>,
    #[serde(default)]
    pub(super) allow_http: bool,
    pub(super) credential: Option<RawCredential>,
    #[serde(default)]
    pub(super) forward_headers: Vec<String>,
    #[serde(default)]
    pub(super) allow_path_params: bool,
    #[serde(default)]
    pub(super) allow_method_override: bool,
    #[serde(default)]
    pub(super) allow_range: bool,
    #[serde(default)]
    pub(super) rules: Vec<RawRule>,
    pub(super) mcp: Option<RawMcp>,
    #[serde(default)]
    pub(super) require_proof: bool,
    pub(super) rate: Option<RawRate>,
    pub(super) session_token: Option<RawTokenSlots>,
    pub(super) timeout_ms: Option<u64>,
    pub(super) idle_timeout_ms: Option<u64>,
    pub(super) pass_server_errors: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTokenSlots {
    #[serde(default)]
    headers: Vec<String>,
    #[serde(default)]
    query: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMcp {
    #[serde(default)]
    tools: BTreeMap<String, Level>,
    default_tool_level: Option<Level>,
    #[serde(default)]
    resources: Vec<RawMcpResource>,
    #[serde(default)]
    prompts: BTreeMap<String, Level>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMcpResource {
    prefix: String,
    level: Level,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCredential {
    pub(super) secret: String,
    /// Optional only when a preset gives the placement.
    pub(super) inject: Option<RawInject>,
    pub(super) header: Option<String>,
    pub(super) format: Option<String>,
    pub(super) username: Option<String>,
    pub(super) param: Option<String>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawInject {
    Bearer,
    Header,
    Basic,
    Query,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRule {
    pub(super) methods: Vec<String>,
    pub(super) path: String,
    #[serde(default)]
    pub(super) query: BTreeMap<String, String>,
    pub(super) level: Level,
    #[serde(default)]
    pub(super) approval: bool,
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

fn is_binding_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') && !s.as_bytes()[0].is_ascii_digit()
}

fn is_header_value_text(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

impl RawPolicy {
    pub(super) fn validate(self) -> Result<Policy, PolicyError> {
        if self.version != 1 {
            return Err(err("version", "must be 1"));
        }
        if self.audience.is_empty() || self.audience.len() > 128 || !is_header_value_text(&self.audience) {
            return Err(err("audience", "must be 1-128 printable characters"));
        }
        let d = Limits::default();
        let limits = Limits {
            max_session_ttl_seconds: self.limits.max_session_ttl_seconds.unwrap_or(d.max_session_ttl_seconds),
            max_request_body_bytes: self.limits.max_request_body_bytes.unwrap_or(d.max_request_body_bytes),
            upstream_timeout_ms: self.limits.upstream_timeout_ms.unwrap_or(d.upstream_timeout_ms),
            max_response_body_bytes: self.limits.max_response_body_bytes.unwrap_or(d.max_response_body_bytes),
            upstream_idle_timeout_ms: self.limits.upstream_idle_timeout_ms.unwrap_or(d.upstream_idle_timeout_ms),
            session_rate: self.limits.session_rate.map(|r| r.validate("limits.session_rate")).transpose()?,
            proof_window_seconds: self.limits.proof_window_seconds.unwrap_or(d.proof_window_seconds),
            idempotency_ttl_seconds: self.limits.idempotency_ttl_seconds.unwrap_or(d.idempotency_ttl_seconds),
            idempotency_max_body_bytes: self.limits.idempotency_max_body_bytes.unwrap_or(d.idempotency_max_body_bytes),
            approval_ttl_seconds: self.limits.approval_ttl_seconds.unwrap_or(d.approval_ttl_seconds),
        };
        if !(1..=crate::proof::MAX_WINDOW_SECS).contains(&limits.proof_window_seconds) {
            return Err(err("limits.proof_window_seconds", format!("must be between 1 and {}", crate::proof::MAX_WINDOW_SECS)));
        }
        if !(60..=7 * 86_400).contains(&limits.idempotency_ttl_seconds) {
            return Err(err("limits.idempotency_ttl_seconds", "must be between 60 and 604800"));
        }
        if limits.idempotency_max_body_bytes > 1024 * 1024 {
            return Err(err("limits.idempotency_max_body_bytes", "must be at most 1048576 (stored answers live in Durable Object rows)"));
        }
        if !(60..=7 * 86_400).contains(&limits.approval_ttl_seconds) {
            return Err(err("limits.approval_ttl_seconds", "must be between 60 and 604800"));
        }
        if limits.max_response_body_bytes == 0 {
            return Err(err("limits.max_response_body_bytes", "must be at least 1"));
        }
        if !(1_000..=300_000).contains(&limits.upstream_idle_timeout_ms) {
            return Err(err("limits.upstream_idle_timeout_ms", "must be between 1000 and 300000"));
        }
        if !(1..=86_400).contains(&limits.max_session_ttl_seconds) {
            return Err(err("limits.max_session_ttl_seconds", "must be between 1 and 86400"));
        }
        if !(1_000..=300_000).contains(&limits.upstream_timeout_ms) {
            return Err(err("limits.upstream_timeout_ms", "must be between 1000 and 300000"));
        }
        if self.tools.is_empty() {
            return Err(err("tools", "declare at least one tool"));
        }
        let mut tools = BTreeMap::new();
        for (name, mut raw) in self.tools {
            let field = format!("tools.{name}");
            if !is_token_name(&name) {
                return Err(err(field, "tool names are 1-64 of [a-z0-9_-], starting with a letter or digit"));
            }
            let preset = match raw.preset.take() {
                Some(p) => Some(super::preset::apply(&p, &mut raw).ok_or_else(|| err(format!("{field}.preset"), super::preset::UNKNOWN))?),
                None => None,
            };
            let mut tool = raw.validate(&name, &field)?;
            tool.preset = preset;
            tools.insert(name, tool);
        }
        let mut egress = Vec::new();
        for (i, entry) in self.egress.map(|e| e.hosts).unwrap_or_default().into_iter().enumerate() {
            let field = format!("egress.hosts[{i}]");
            let (host, http, ports) = match entry {
                RawEgressHost::Name(h) => (h, false, Vec::new()),
                RawEgressHost::Entry(e) => (e.host, e.http, e.ports),
            };
            let pattern = HostPattern::parse(&host).map_err(|m| err(&field, m))?;
            if ports.contains(&0) {
                return Err(err(format!("{field}.ports"), "ports are 1-65535"));
            }
            egress.push(EgressRule { pattern, http, ports });
        }
        Ok(Policy { audience: self.audience, limits, require_proof: self.require_proof, tools, egress })
    }
}

impl RawTool {
    fn validate(self, name: &str, field: &str) -> Result<Tool, PolicyError> {
        let session_token = validate_slots(self.session_token.unwrap_or_default(), &format!("{field}.session_token"))?;
        for (key, value) in [("timeout_ms", self.timeout_ms), ("idle_timeout_ms", self.idle_timeout_ms)] {
            if value.is_some_and(|v| !(1_000..=MAX_TOOL_TIMEOUT_MS).contains(&v)) {
                return Err(err(format!("{field}.{key}"), format!("must be between 1000 and {MAX_TOOL_TIMEOUT_MS}")));
            }
        }
        let origin = match (self.origin, self.service) {
            (Some(url), None) => Origin { target: Target::Public, ..parse_origin(&url, self.allow_http, &format!("{field}.origin"))? },
            (url, Some(binding)) => {
                if !is_binding_name(&binding) {
                    return Err(err(format!("{field}.service"), "must be a binding name ([A-Za-z_][A-Za-z0-9_]*)"));
                }
                let base = match url {
                    Some(url) => parse_origin(&url, self.allow_http, &format!("{field}.origin"))?,
                    // The private service sees this host; `.invalid` can never
                    // resolve on the public internet.
                    None => Origin { target: Target::Public, base: format!("https://{name}.airlock.invalid"), base_path: String::new() },
                };
                Origin { target: Target::Service { binding }, ..base }
            }
            (None, None) => return Err(err(field, "needs \"origin\" (https URL) or \"service\" (binding name)")),
        };
        let credential = self.credential.map(|c| c.validate(&format!("{field}.credential"))).transpose()?;
        let mut forward_headers = Vec::new();
        for (i, h) in self.forward_headers.into_iter().enumerate() {
            let f = format!("{field}.forward_headers[{i}]");
            let lower = h.to_ascii_lowercase();
            if !is_header_name(&lower) {
                return Err(err(f, "not a valid header name"));
            }
            if header_is_forbidden(&lower) {
                return Err(err(f, format!("{lower:?} can never be forwarded from the sandbox")));
            }
            // Headers are bound by neither request proofs nor approvals, so
            // an approved POST could come back as a DELETE; the query
            // parameter (with `allow_method_override`) is bound by both.
            if crate::authenticate::is_token_header(&lower, Some(&session_token)) {
                return Err(err(f, "is a place for the session token and is never forwarded"));
            }
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
        if self.rules.is_empty() && self.mcp.is_none() {
            return Err(err(format!("{field}.rules"), "declare at least one rule (default is deny), or an \"mcp\" section"));
        }
        let mcp = match self.mcp {
            Some(m) => {
                for (i, r) in m.resources.iter().enumerate() {
                    if r.prefix.is_empty() {
                        return Err(err(format!("{field}.mcp.resources[{i}].prefix"), "must not be empty (name the URI scheme at least)"));
                    }
                }
                if m.tools.keys().chain(m.prompts.keys()).any(|n| n.is_empty()) {
                    return Err(err(format!("{field}.mcp"), "tool and prompt names must not be empty"));
                }
                Some(McpRules {
                    tools: m.tools,
                    default_tool: m.default_tool_level,
                    resources: m.resources.into_iter().map(|r| (r.prefix, r.level)).collect(),
                    prompts: m.prompts,
                })
            }
            None => None,
        };
        let mut rules = Vec::new();
        for (i, r) in self.rules.into_iter().enumerate() {
            let f = format!("{field}.rules[{i}]");
            if r.methods.is_empty() {
                return Err(err(format!("{f}.methods"), "list at least one method"));
            }
            let mut methods = Vec::new();
            for (j, m) in r.methods.iter().enumerate() {
                let method = Method::parse(m).ok_or_else(|| {
                    err(format!("{f}.methods[{j}]"), format!("unknown method {m:?}; use upper-case GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS"))
                })?;
                methods.push(method);
            }
            let path = PathPattern::parse(&r.path).map_err(|m| err(format!("{f}.path"), m))?;
            for (name, value) in &r.query {
                if name.is_empty() || is_method_override_name(name.as_bytes()) || session_token.query.contains(name) {
                    return Err(err(format!("{f}.query"), format!("{name:?} cannot be matched")));
                }
                if value.bytes().any(|b| b.is_ascii_control()) {
                    return Err(err(format!("{f}.query.{name}"), "must not contain control characters"));
                }
            }
            let query = r.query.into_iter().collect();
            rules.push(Rule { methods, path, query, level: r.level, approval: r.approval });
        }
        let rate = self.rate.map(|r| r.validate(&format!("{field}.rate"))).transpose()?;
        Ok(Tool {
            name: name.to_string(),
            origin,
            credential,
            forward_headers,
            allow_path_params: self.allow_path_params,
            allow_method_override: self.allow_method_override,
            allow_range: self.allow_range,
            rules,
            mcp,
            require_proof: self.require_proof,
            rate,
            preset: None,
            session_token,
            timeout_ms: self.timeout_ms,
            idle_timeout_ms: self.idle_timeout_ms,
            pass_server_errors: self.pass_server_errors.unwrap_or(false),
        })
    }
}

/// Longest per-tool upstream timeout: a long non-streaming model call.
const MAX_TOOL_TIMEOUT_MS: u64 = 900_000;

/// A tool's extra places for the session token: header names that are not
/// otherwise forwarded or forbidden, and query parameter names.
fn validate_slots(raw: RawTokenSlots, field: &str) -> Result<TokenSlots, PolicyError> {
    let mut headers = Vec::new();
    for (i, h) in raw.headers.into_iter().enumerate() {
        let lower = h.to_ascii_lowercase();
        let builtin = crate::inject::FORWARDED_HEADERS.contains(&lower.as_str()) || crate::inject::MCP_HEADERS.contains(&lower.as_str());
        if !is_header_name(&lower) || header_is_forbidden(&lower) || builtin {
            return Err(err(format!("{field}.headers[{i}]"), format!("{lower:?} cannot carry the session token")));
        }
        headers.push(lower);
    }
    for (i, q) in raw.query.iter().enumerate() {
        if q.is_empty() || !q.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b)) || is_method_override_name(q.as_bytes()) {
            return Err(err(format!("{field}.query[{i}]"), "must be 1+ of [A-Za-z0-9-_.~] and not a method override"));
        }
    }
    Ok(TokenSlots { headers, query: raw.query })
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

impl RawCredential {
    fn validate(self, field: &str) -> Result<Credential, PolicyError> {
        if !is_binding_name(&self.secret) {
            return Err(err(format!("{field}.secret"), "must be a secret binding name ([A-Za-z_][A-Za-z0-9_]*)"));
        }
        let unexpected = |name: &str, present: bool| -> Result<(), PolicyError> {
            if present {
                Err(err(format!("{field}.{name}"), "does not apply to this \"inject\" mode"))
            } else {
                Ok(())
            }
        };
        let inject = self.inject.ok_or_else(|| err(format!("{field}.inject"), "required: bearer, header, basic or query (or a tool \"preset\")"))?;
        let placement = match inject {
            RawInject::Bearer => {
                unexpected("header", self.header.is_some())?;
                unexpected("format", self.format.is_some())?;
                unexpected("username", self.username.is_some())?;
                unexpected("param", self.param.is_some())?;
                Placement::Bearer
            }
            RawInject::Header => {
                unexpected("username", self.username.is_some())?;
                unexpected("param", self.param.is_some())?;
                let name = self.header.ok_or_else(|| err(format!("{field}.header"), "required when inject is \"header\""))?.to_ascii_lowercase();
                if !is_header_name(&name) {
                    return Err(err(format!("{field}.header"), "not a valid header name"));
                }
                if name != "authorization" && header_is_forbidden(&name) {
                    return Err(err(format!("{field}.header"), format!("{name:?} cannot carry a credential")));
                }
                let format = self.format.unwrap_or_else(|| "{secret}".to_string());
                let (prefix, suffix) = format.split_once("{secret}").ok_or_else(|| err(format!("{field}.format"), "must contain {secret} once"))?;
                if suffix.contains("{secret}") || !is_header_value_text(&format) {
                    return Err(err(format!("{field}.format"), "must contain {secret} once and only printable characters"));
                }
                Placement::Header { name, prefix: prefix.to_string(), suffix: suffix.to_string() }
            }
            RawInject::Basic => {
                unexpected("header", self.header.is_some())?;
                unexpected("format", self.format.is_some())?;
                unexpected("param", self.param.is_some())?;
                if let Some(u) = &self.username {
                    if u.contains(':') || !is_header_value_text(u) {
                        return Err(err(format!("{field}.username"), "must not contain ':' or control characters"));
                    }
                }
                Placement::Basic { username: self.username }
            }
            RawInject::Query => {
                unexpected("header", self.header.is_some())?;
                unexpected("format", self.format.is_some())?;
                unexpected("username", self.username.is_some())?;
                let param = self.param.ok_or_else(|| err(format!("{field}.param"), "required when inject is \"query\""))?;
                if param.is_empty() || !param.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~".contains(&b)) {
                    return Err(err(format!("{field}.param"), "must be 1+ of [A-Za-z0-9-_.~]"));
                }
                Placement::Query { param }
            }
        };
        Ok(Credential { secret: self.secret, placement })
    }
}
