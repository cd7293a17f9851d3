//! The deploy-time policy: tools, their origins, credentials and rules.
//!
//! Invariants:
//! - Parse, don't validate: JSON becomes a [`Policy`] only if every field is
//!   valid; otherwise the error names the field (`tools.github.rules[0].level`).
//!   There is no partially valid policy, so there is no half-working broker.
//! - Default deny: a request is only ever allowed by a rule listed here.
//! - Holds secret *names*, never secret values.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::egress::{EgressRule, HostPattern};
use crate::mcp::McpRules;
use crate::state::bucket::Rate;

/// Access levels, ordered: `read < write < admin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Read,
    Write,
    Admin,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Read => "read",
            Level::Write => "write",
            Level::Admin => "admin",
        }
    }
}

/// HTTP methods a rule can allow. Anything else (CONNECT, TRACE, custom
/// verbs) can never match a rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Patch,
    Delete,
    Options,
}

impl Method {
    /// Exact, upper-case method names only.
    pub fn parse(s: &str) -> Option<Method> {
        Some(match s {
            "GET" => Method::Get,
            "HEAD" => Method::Head,
            "POST" => Method::Post,
            "PUT" => Method::Put,
            "PATCH" => Method::Patch,
            "DELETE" => Method::Delete,
            "OPTIONS" => Method::Options,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
        }
    }

    /// Whether a request of this method may carry a body.
    pub fn allows_body(self) -> bool {
        !matches!(self, Method::Get | Method::Head)
    }
}

/// One segment of a rule's path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    /// Matches exactly this (decoded) segment.
    Literal(String),
    /// `*`: exactly one non-empty segment.
    One,
    /// `**`: zero or more segments; only allowed last.
    Rest,
}

/// A path pattern such as `/repos/*/*/issues/**`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    source: String,
    segments: Vec<Segment>,
}

impl PathPattern {
    pub fn parse(s: &str) -> Result<PathPattern, String> {
        let rest = s.strip_prefix('/').ok_or("must start with '/'")?;
        let mut segments = Vec::new();
        if !rest.is_empty() {
            let parts: Vec<&str> = rest.split('/').collect();
            for (i, part) in parts.iter().enumerate() {
                let seg = match *part {
                    "" => return Err("empty segment ('//' or trailing '/')".into()),
                    "*" => Segment::One,
                    "**" if i + 1 == parts.len() => Segment::Rest,
                    "**" => return Err("'**' is only allowed as the last segment".into()),
                    "." | ".." => return Err("dot segments are not allowed".into()),
                    lit => {
                        if lit.contains('*') {
                            return Err(format!("segment {lit:?}: '*' must be a whole segment"));
                        }
                        if lit.bytes().any(|b| b == b'%' || b == b'\\' || b.is_ascii_control()) {
                            return Err(format!(
                                "segment {lit:?}: write literals decoded, without '%', '\\' or control characters"
                            ));
                        }
                        Segment::Literal(lit.to_string())
                    }
                };
                segments.push(seg);
            }
        }
        Ok(PathPattern { source: s.to_string(), segments })
    }

    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// Matches decoded path segments.
    pub fn matches<S: AsRef<str>>(&self, path: &[S]) -> bool {
        let mut i = 0;
        for seg in &self.segments {
            match seg {
                Segment::Rest => return true,
                Segment::One => match path.get(i) {
                    Some(p) if !p.as_ref().is_empty() => i += 1,
                    _ => return false,
                },
                Segment::Literal(lit) => match path.get(i) {
                    Some(p) if p.as_ref() == lit => i += 1,
                    _ => return false,
                },
            }
        }
        i == path.len()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub methods: Vec<Method>,
    pub path: PathPattern,
    pub level: Level,
    /// A human must approve each matching request before it is forwarded.
    pub approval: bool,
}

impl Rule {
    pub fn matches<S: AsRef<str>>(&self, method: Method, path: &[S]) -> bool {
        self.methods.contains(&method) && self.path.matches(path)
    }
}

/// Where a tool's requests go. The sandbox never chooses any part of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// A public origin reached with `fetch`.
    Public,
    /// A private origin reached through a service (tunnel) binding.
    Service { binding: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub target: Target,
    /// `scheme://host[:port]`, lower-case, no trailing slash.
    pub base: String,
    /// Path prefix of the origin URL, without trailing slash (may be empty).
    pub base_path: String,
}

/// Where and how the credential is set on the forwarded request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Placement {
    /// `Authorization: Bearer <secret>`
    Bearer,
    /// `<name>: <prefix><secret><suffix>`
    Header { name: String, prefix: String, suffix: String },
    /// `Authorization: Basic base64(<username>:<secret>)`, or
    /// `base64(<secret>:)` when no username is set.
    Basic { username: Option<String> },
    /// `?<param>=<secret>`; any parameter of that name the sandbox sent is dropped.
    Query { param: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// Name of the platform secret holding the value.
    pub secret: String,
    pub placement: Placement,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    pub origin: Origin,
    pub credential: Option<Credential>,
    /// Extra request headers forwarded on top of the built-in allowlist (lower-case).
    pub forward_headers: Vec<String>,
    /// Whether `;` path parameters may appear in request paths.
    pub allow_path_params: bool,
    /// Whether a request may carry a method-override query parameter
    /// (`?_method=DELETE`); if so, the override method is authorized too.
    pub allow_method_override: bool,
    /// Whether `Range`/`If-Range` are forwarded and a `206` answer passed
    /// on. Off by default: slices of an echoed body shorter than the
    /// credential cannot be redacted and can be reassembled.
    pub allow_range: bool,
    pub rules: Vec<Rule>,
    /// Set for MCP servers, served at `/mcp/{name}`.
    pub mcp: Option<McpRules>,
    /// Every request to this tool must carry a request proof.
    pub require_proof: bool,
    /// Rate limit per (session, tool).
    pub rate: Option<Rate>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Limits {
    pub max_session_ttl_seconds: u64,
    pub max_request_body_bytes: u64,
    pub upstream_timeout_ms: u64,
    pub max_response_body_bytes: u64,
    pub upstream_idle_timeout_ms: u64,
    /// Rate limit per session, across all routes.
    pub session_rate: Option<Rate>,
    /// How far a proof's timestamp may be from now, either way.
    pub proof_window_seconds: u64,
    pub idempotency_ttl_seconds: u64,
    /// Largest answer body stored for idempotent replays.
    pub idempotency_max_body_bytes: u64,
    pub approval_ttl_seconds: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_session_ttl_seconds: 3600,
            max_request_body_bytes: 10 * 1024 * 1024,
            upstream_timeout_ms: 30_000,
            max_response_body_bytes: 1024 * 1024 * 1024,
            upstream_idle_timeout_ms: 30_000,
            session_rate: None,
            proof_window_seconds: 60,
            idempotency_ttl_seconds: 86_400,
            idempotency_max_body_bytes: 64 * 1024,
            approval_ttl_seconds: 3_600,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub audience: String,
    pub limits: Limits,
    /// Every session-bound request must carry a request proof.
    pub require_proof: bool,
    tools: BTreeMap<String, Tool>,
    /// Hosts reachable through `/e/` without credentials; empty means none.
    pub egress: Vec<EgressRule>,
}

impl Policy {
    pub fn tool(&self, name: &str) -> Option<&Tool> {
        self.tools.get(name)
    }

    pub fn tools(&self) -> impl Iterator<Item = &Tool> {
        self.tools.values()
    }

    /// Parses and validates a policy. The error names the offending field.
    pub fn parse(json: &str) -> Result<Policy, PolicyError> {
        parse_raw(json)?.validate()
    }
}

/// Decodes the JSON shape, naming the field of a type error. The worker
/// reports the line and column instead: tracking field paths costs tens of
/// kilobytes of Wasm, and `airlock policy check` names the field before a
/// policy is deployed.
#[cfg(not(target_arch = "wasm32"))]
fn parse_raw(json: &str) -> Result<RawPolicy, PolicyError> {
    let de = &mut serde_json::Deserializer::from_str(json);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        PolicyError { field: if path == "." { String::new() } else { path }, message: e.inner().to_string() }
    })
}

#[cfg(target_arch = "wasm32")]
fn parse_raw(json: &str) -> Result<RawPolicy, PolicyError> {
    serde_json::from_str(json).map_err(|e| PolicyError { field: String::new(), message: format!("{e} (`airlock policy check` names the field)") })
}

/// A policy error: the field path and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.field.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

fn err(field: impl Into<String>, message: impl Into<String>) -> PolicyError {
    PolicyError { field: field.into(), message: message.into() }
}

// ---- raw JSON shape ------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
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
struct RawRate {
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
struct RawTool {
    origin: Option<String>,
    service: Option<String>,
    #[serde(default)]
    allow_http: bool,
    credential: Option<RawCredential>,
    #[serde(default)]
    forward_headers: Vec<String>,
    #[serde(default)]
    allow_path_params: bool,
    #[serde(default)]
    allow_method_override: bool,
    #[serde(default)]
    allow_range: bool,
    #[serde(default)]
    rules: Vec<RawRule>,
    mcp: Option<RawMcp>,
    #[serde(default)]
    require_proof: bool,
    rate: Option<RawRate>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMcp {
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
struct RawCredential {
    secret: String,
    inject: RawInject,
    header: Option<String>,
    format: Option<String>,
    username: Option<String>,
    param: Option<String>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawInject {
    Bearer,
    Header,
    Basic,
    Query,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRule {
    methods: Vec<String>,
    path: String,
    level: Level,
    #[serde(default)]
    approval: bool,
}

// ---- validation ----------------------------------------------------------

/// Request headers the policy may never name: they carry the sandbox's own
/// authority, routing, or framing, and forwarding or overwriting them would
/// reopen what Airlock closes.
pub const FORBIDDEN_HEADERS: &[&str] = &[
    "host", "authorization", "proxy-authorization", "cookie", "set-cookie", "connection",
    "keep-alive", "te", "trailer", "transfer-encoding", "upgrade", "content-length",
    "forwarded", "x-real-ip", "expect", "proxy-connection",
];
pub const FORBIDDEN_HEADER_PREFIXES: &[&str] = &["x-forwarded-", "proxy-", "cf-", "x-airlock-"];

pub fn header_is_forbidden(name: &str) -> bool {
    FORBIDDEN_HEADERS.contains(&name) || FORBIDDEN_HEADER_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Names under which frameworks take a method override from the query or a
/// header, in the spelling [`is_method_override_name`] reduces names to:
/// `_method` (Laravel, Symfony, Rails/Rack, Spring `HiddenHttpMethodFilter`,
/// Express `method-override`, Jersey, CakePHP), `_METHOD` (Slim),
/// `X-HTTP-Method-Override` (Rack, Express, ASP.NET Core, Symfony, Jersey,
/// Google APIs), `X-HTTP-Method` (OData, Microsoft), `X-Method-Override`,
/// `_HttpMethod`.
const METHOD_OVERRIDE_NAMES: &[&[u8]] = &[b"_method", b"_httpmethod", b"x_http_method_override", b"x_http_method", b"x_method_override"];

/// Whether a (decoded) query key or header name is a method override in
/// any spelling an origin might read it: case-insensitively (with the
/// Turkish dotless and dotted I, which Java and .NET upper- and lower-case
/// to `I`/`i`), `-` and `_` alike (CGI turns header dashes into
/// underscores), leading spaces dropped and `.`, ` ` and `[` read as `_`
/// (PHP does both to query keys: `?.method=` is `$_GET['_method']`), and a
/// `[...]` suffix ignored (`_method[]`).
pub fn is_method_override_name(name: &[u8]) -> bool {
    let text = String::from_utf8_lossy(name);
    let mut folded = Vec::with_capacity(name.len());
    for c in text.trim_start_matches(' ').chars() {
        folded.push(match c {
            '\u{131}' | '\u{130}' => b'i',
            '-' | '.' | ' ' => b'_',
            c if c.is_ascii() => (c as u8).to_ascii_lowercase(),
            _ => return false,
        });
    }
    let base = folded.split(|&b| b == b'[').next().unwrap_or_default();
    let php: Vec<u8> = folded.iter().map(|&b| if b == b'[' { b'_' } else { b }).collect();
    METHOD_OVERRIDE_NAMES.iter().any(|n| base == *n || php == *n)
}

fn is_token_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
        && s.as_bytes()[0].is_ascii_alphanumeric()
}

fn is_header_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn is_binding_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        && !s.as_bytes()[0].is_ascii_digit()
}

fn is_header_value_text(s: &str) -> bool {
    s.bytes().all(|b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

impl RawPolicy {
    fn validate(self) -> Result<Policy, PolicyError> {
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
        for (name, raw) in self.tools {
            let field = format!("tools.{name}");
            if !is_token_name(&name) {
                return Err(err(field, "tool names are 1-64 of [a-z0-9_-], starting with a letter or digit"));
            }
            let tool = raw.validate(&name, &field)?;
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
            if is_method_override_name(lower.as_bytes()) {
                return Err(err(f, "is a method-override header and is never forwarded; use the real method, or the query parameter with \"allow_method_override\": true"));
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
            rules.push(Rule { methods, path, level: r.level, approval: r.approval });
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
        })
    }
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
        let placement = match self.inject {
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
                let (prefix, suffix) = format
                    .split_once("{secret}")
                    .ok_or_else(|| err(format!("{field}.format"), "must contain {secret} once"))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const GOOD: &str = r#"{
      "version": 1,
      "audience": "airlock-test",
      "limits": { "max_session_ttl_seconds": 600 },
      "tools": {
        "github": {
          "origin": "https://api.github.com/",
          "credential": { "secret": "GITHUB_TOKEN", "inject": "bearer" },
          "forward_headers": ["X-GitHub-Api-Version"],
          "rules": [
            { "methods": ["GET", "HEAD"], "path": "/repos/*/*/**", "level": "read" },
            { "methods": ["POST"], "path": "/repos/*/*/issues", "level": "write" },
            { "methods": ["DELETE"], "path": "/repos/*/*", "level": "admin" }
          ]
        },
        "crm": {
          "service": "CRM_TUNNEL",
          "credential": { "secret": "CRM_KEY", "inject": "header", "header": "X-Api-Key", "format": "Key {secret}" },
          "rules": [ { "methods": ["GET"], "path": "/**", "level": "read" } ]
        }
      }
    }"#;

    #[test]
    fn parses_a_good_policy() {
        let p = Policy::parse(GOOD).unwrap();
        assert_eq!(p.audience, "airlock-test");
        assert_eq!(p.limits.max_session_ttl_seconds, 600);
        assert_eq!(p.limits.upstream_timeout_ms, 30_000);
        let gh = p.tool("github").unwrap();
        assert_eq!(gh.origin, Origin { target: Target::Public, base: "https://api.github.com".into(), base_path: String::new() });
        assert_eq!(gh.forward_headers, vec!["x-github-api-version"]);
        let crm = p.tool("crm").unwrap();
        assert_eq!(crm.origin.target, Target::Service { binding: "CRM_TUNNEL".into() });
        assert_eq!(crm.origin.base, "https://crm.airlock.invalid");
        assert_eq!(
            crm.credential.as_ref().unwrap().placement,
            Placement::Header { name: "x-api-key".into(), prefix: "Key ".into(), suffix: String::new() }
        );
        assert!(p.tool("nope").is_none());
    }

    fn with(path: &[&str], value: serde_json::Value) -> String {
        let mut v: serde_json::Value = serde_json::from_str(GOOD).unwrap();
        let mut cur = &mut v;
        for (i, key) in path.iter().enumerate() {
            if i + 1 == path.len() {
                if value.is_null() {
                    cur.as_object_mut().unwrap().remove(*key);
                } else {
                    cur[*key] = value.clone();
                }
                break;
            }
            cur = if let Ok(n) = key.parse::<usize>() { &mut cur[n] } else { &mut cur[*key] };
        }
        v.to_string()
    }

    #[test]
    fn errors_name_the_field() {
        use serde_json::json;
        let table: Vec<(&str, String, &str)> = vec![
            ("not json", "{".into(), ""),
            ("unknown top-level field", with(&["extra"], json!(1)), "extra"),
            ("wrong version", with(&["version"], json!(2)), "version"),
            ("missing audience", with(&["audience"], serde_json::Value::Null), ""),
            ("bad level", with(&["tools", "github", "rules", "0", "level"], json!("superuser")), "tools.github.rules[0].level"),
            ("unknown rule field", with(&["tools", "github", "rules", "1", "approve"], json!(true)), "tools.github.rules[1]"),
            ("lower-case method", with(&["tools", "github", "rules", "0", "methods"], json!(["get"])), "tools.github.rules[0].methods[0]"),
            ("no methods", with(&["tools", "github", "rules", "0", "methods"], json!([])), "tools.github.rules[0].methods"),
            ("relative path", with(&["tools", "github", "rules", "0", "path"], json!("repos/*")), "tools.github.rules[0].path"),
            ("** in the middle", with(&["tools", "github", "rules", "0", "path"], json!("/**/x")), "tools.github.rules[0].path"),
            ("partial star", with(&["tools", "github", "rules", "0", "path"], json!("/re*")), "tools.github.rules[0].path"),
            ("dot segment", with(&["tools", "github", "rules", "0", "path"], json!("/a/../b")), "tools.github.rules[0].path"),
            ("encoded literal", with(&["tools", "github", "rules", "0", "path"], json!("/a%2fb")), "tools.github.rules[0].path"),
            ("http origin", with(&["tools", "github", "origin"], json!("http://api.github.com")), "tools.github.origin"),
            ("origin with userinfo", with(&["tools", "github", "origin"], json!("https://u:p@api.github.com")), "tools.github.origin"),
            ("origin with query", with(&["tools", "github", "origin"], json!("https://api.github.com/?a=1")), "tools.github.origin"),
            ("ftp origin", with(&["tools", "github", "origin"], json!("ftp://x")), "tools.github.origin"),
            ("punycode origin", with(&["tools", "github", "origin"], json!("https://xn--ttgrxct7l.example.com")), "tools.github.origin"),
            ("encoded punycode origin", with(&["tools", "github", "origin"], json!("https://xn%2D-ttgrxct7l.example.com")), "tools.github.origin"),
            ("no origin", with(&["tools", "github", "origin"], serde_json::Value::Null), "tools.github"),
            ("bad binding", with(&["tools", "crm", "service"], json!("crm-tunnel")), "tools.crm.service"),
            ("no rules", with(&["tools", "github", "rules"], json!([])), "tools.github.rules"),
            ("forbidden forward header", with(&["tools", "github", "forward_headers"], json!(["Cookie"])), "tools.github.forward_headers[0]"),
            ("x-forwarded forward header", with(&["tools", "github", "forward_headers"], json!(["X-Forwarded-For"])), "tools.github.forward_headers[0]"),
            ("credential header forwarded", with(&["tools", "crm", "forward_headers"], json!(["x-api-key"])), "tools.crm.forward_headers[0]"),
            ("bad inject", with(&["tools", "github", "credential", "inject"], json!("cookie")), "tools.github.credential.inject"),
            ("bearer with header", with(&["tools", "github", "credential", "header"], json!("x")), "tools.github.credential.header"),
            ("format without secret", with(&["tools", "crm", "credential", "format"], json!("Key")), "tools.crm.credential.format"),
            ("credential into host", with(&["tools", "crm", "credential", "header"], json!("Host")), "tools.crm.credential.header"),
            ("secret name", with(&["tools", "github", "credential", "secret"], json!("github token")), "tools.github.credential.secret"),
            ("bad tool name", with(&["tools", "Bad Name"], json!({"origin": "https://x", "rules": [{"methods": ["GET"], "path": "/", "level": "read"}]})), "tools.Bad Name"),
            ("ttl zero", with(&["limits", "max_session_ttl_seconds"], json!(0)), "limits.max_session_ttl_seconds"),
            ("unknown limit", with(&["limits", "max_rps"], json!(1)), "limits"),
            ("no tools", with(&["tools"], json!({})), "tools"),
            ("egress IP literal", with(&["egress"], json!({"hosts": ["169.254.169.254"]})), "egress.hosts[0]"),
            ("egress localhost", with(&["egress"], json!({"hosts": ["pypi.org", "localhost"]})), "egress.hosts[1]"),
            ("egress wildcard apex", with(&["egress"], json!({"hosts": ["*"]})), "egress.hosts[0]"),
            ("egress internal suffix", with(&["egress"], json!({"hosts": ["*.internal"]})), "egress.hosts[0]"),
            ("egress unknown entry field", with(&["egress"], json!({"hosts": [{"host": "pypi.org", "scheme": "http"}]})), "egress.hosts[0]"),
            ("egress port zero", with(&["egress"], json!({"hosts": [{"host": "pypi.org", "ports": [0]}]})), "egress.hosts[0].ports"),
            ("egress unknown field", with(&["egress"], json!({"allow": []})), "egress"),
            ("idle timeout", with(&["limits", "upstream_idle_timeout_ms"], json!(10)), "limits.upstream_idle_timeout_ms"),
            ("response cap zero", with(&["limits", "max_response_body_bytes"], json!(0)), "limits.max_response_body_bytes"),
            ("method-override header", with(&["tools", "github", "forward_headers"], json!(["X-HTTP-Method-Override"])), "tools.github.forward_headers[0]"),
            ("x-http-method header", with(&["tools", "github", "forward_headers"], json!(["accept", "x-http-method"])), "tools.github.forward_headers[1]"),
            ("x-method-override header", with(&["tools", "github", "forward_headers"], json!(["x-method-override"])), "tools.github.forward_headers[0]"),
            ("CGI spelling of the override header", with(&["tools", "github", "forward_headers"], json!(["x_http_method_override"])), "tools.github.forward_headers[0]"),
            ("allow_range not a bool", with(&["tools", "github", "allow_range"], json!("yes")), "tools.github.allow_range"),
            ("allow_method_override not a bool", with(&["tools", "github", "allow_method_override"], json!(1)), "tools.github.allow_method_override"),
        ];
        for (what, json, field) in table {
            let e = Policy::parse(&json).expect_err(what);
            assert!(e.field.starts_with(field), "{what}: got field {:?} ({})", e.field, e.message);
            if !field.is_empty() {
                assert!(e.to_string().starts_with(field), "{what}: {e}");
            }
        }
    }

    #[test]
    fn range_and_method_override_options() {
        use serde_json::json;
        let gh = Policy::parse(GOOD).unwrap().tool("github").unwrap().clone();
        assert!(!gh.allow_range && !gh.allow_method_override, "both default to off");
        let j = with(&["tools", "github", "allow_range"], json!(true));
        let j = { let mut v: serde_json::Value = serde_json::from_str(&j).unwrap(); v["tools"]["github"]["allow_method_override"] = json!(true); v.to_string() };
        let p = Policy::parse(&j).unwrap();
        let gh = p.tool("github").unwrap();
        assert!(gh.allow_range && gh.allow_method_override);
        assert!(!p.tool("crm").unwrap().allow_range);
        // Even with the override allowed, the header is never forwarded:
        // headers are bound by neither proofs nor approvals.
        let j = { let mut v: serde_json::Value = serde_json::from_str(&j).unwrap(); v["tools"]["github"]["forward_headers"] = json!(["X-HTTP-Method-Override"]); v.to_string() };
        assert_eq!(Policy::parse(&j).unwrap_err().field, "tools.github.forward_headers[0]");
    }

    #[test]
    fn method_override_names() {
        for name in [
            "_method", "_METHOD", "_Method", "x-http-method-override", "X-HTTP-Method-Override", "x_http_method_override",
            "x-http-method", "X-Method-Override", "_HttpMethod", "_httpmethod", " _method", "  _method", ".method",
            "_method[]", "_method[x]", "_method[", "x-http-method-overr\u{131}de", "x-http-method-overr\u{130}de",
        ] {
            assert!(is_method_override_name(name.as_bytes()), "{name:?}");
        }
        for name in ["method", "methods", "_methods", "x-http-method-overrides", "x-method", "_method_", "[_method]", "", "q", "\u{ff3f}method", "_m\u{e9}thod", "http_method"] {
            assert!(!is_method_override_name(name.as_bytes()), "{name:?}");
        }
    }

    #[test]
    fn mcp_servers() {
        use serde_json::json;
        let j = with(&["tools", "crm", "mcp"], json!({"tools": {"search": "read", "delete": "admin"}, "resources": [{"prefix": "crm://accounts/", "level": "read"}], "prompts": {"brief": "read"}}));
        let j = { let mut v: serde_json::Value = serde_json::from_str(&j).unwrap(); v["tools"]["crm"].as_object_mut().unwrap().remove("rules"); v.to_string() };
        let p = Policy::parse(&j).unwrap();
        let m = p.tool("crm").unwrap().mcp.as_ref().unwrap();
        assert_eq!(m.tools.get("delete"), Some(&Level::Admin));
        assert_eq!(m.default_tool, None, "unnamed tools are denied by default");
        assert_eq!(m.resources, vec![("crm://accounts/".to_string(), Level::Read)]);
        let bad = with(&["tools", "crm", "mcp"], json!({"tools": {"search": "root"}}));
        assert_eq!(Policy::parse(&bad).unwrap_err().field, "tools.crm.mcp.tools.search");
        let bad = with(&["tools", "crm", "mcp"], json!({"resources": [{"prefix": "", "level": "read"}]}));
        assert_eq!(Policy::parse(&bad).unwrap_err().field, "tools.crm.mcp.resources[0].prefix");
        let bad = with(&["tools", "crm", "mcp"], json!({"tool": {}}));
        assert!(Policy::parse(&bad).unwrap_err().field.starts_with("tools.crm.mcp"));
    }

    #[test]
    fn egress_hosts() {
        use serde_json::json;
        let j = with(&["egress"], json!({"hosts": ["PyPI.org.", "*.pythonhosted.org", {"host": "mirror.example.com", "http": true, "ports": [8080]}]}));
        let p = Policy::parse(&j).unwrap();
        assert_eq!(p.egress.len(), 3);
        assert_eq!(p.egress[0].pattern, HostPattern::Exact("pypi.org".into()));
        assert_eq!(p.egress[1].pattern, HostPattern::Subdomain("pythonhosted.org".into()));
        assert!(p.egress[2].http && p.egress[2].ports == vec![8080]);
        assert!(Policy::parse(GOOD).unwrap().egress.is_empty(), "default is no egress");
    }

    #[test]
    fn query_and_basic_credentials() {
        use serde_json::json;
        let q = with(&["tools", "github", "credential"], json!({"secret": "K", "inject": "query", "param": "api_key"}));
        let p = Policy::parse(&q).unwrap();
        assert_eq!(p.tool("github").unwrap().credential.as_ref().unwrap().placement, Placement::Query { param: "api_key".into() });
        let b = with(&["tools", "github", "credential"], json!({"secret": "K", "inject": "basic", "username": "api"}));
        let p = Policy::parse(&b).unwrap();
        assert_eq!(p.tool("github").unwrap().credential.as_ref().unwrap().placement, Placement::Basic { username: Some("api".into()) });
        let missing = with(&["tools", "github", "credential"], json!({"secret": "K", "inject": "query"}));
        assert_eq!(Policy::parse(&missing).unwrap_err().field, "tools.github.credential.param");
    }

    #[test]
    fn http_origin_needs_opt_in_and_keeps_port_and_base_path() {
        use serde_json::json;
        let j = with(&["tools", "github", "origin"], json!("http://127.0.0.1:8788/api/v2/"));
        let j2: serde_json::Value = serde_json::from_str(&j).unwrap();
        let mut j2 = j2;
        j2["tools"]["github"]["allow_http"] = json!(true);
        let p = Policy::parse(&j2.to_string()).unwrap();
        let o = &p.tool("github").unwrap().origin;
        assert_eq!(o.base, "http://127.0.0.1:8788");
        assert_eq!(o.base_path, "/api/v2");
    }

    #[test]
    fn pattern_matching_table() {
        let table: &[(&str, &str, bool)] = &[
            ("/", "", true),
            ("/", "a", false),
            ("/**", "", true),
            ("/**", "a/b/c", true),
            ("/repos/*/*", "repos/o/r", true),
            ("/repos/*/*", "repos/o", false),
            ("/repos/*/*", "repos/o/r/x", false),
            ("/repos/*/*/**", "repos/o/r", true),
            ("/repos/*/*/**", "repos/o/r/issues/1", true),
            ("/repos/*/*/**", "repos/o", false),
            ("/repos/*/issues", "repos/o/issues", true),
            ("/repos/*/issues", "repos/o/pulls", false),
            ("/repos/*/issues", "Repos/o/issues", false),
            ("/items/*", "items/", false),
            ("/items/*", "items/a b", true),
        ];
        for (pattern, path, want) in table {
            let p = PathPattern::parse(pattern).unwrap();
            let segs: Vec<&str> = if path.is_empty() { vec![] } else { path.split('/').collect() };
            assert_eq!(p.matches(&segs), *want, "{pattern} vs {path}");
        }
    }

    #[test]
    fn rule_matches_method_and_path() {
        let r = Rule { methods: vec![Method::Get, Method::Head], path: PathPattern::parse("/a/*").unwrap(), level: Level::Read, approval: false };
        assert!(r.matches(Method::Get, &["a", "x"]));
        assert!(r.matches(Method::Head, &["a", "x"]));
        assert!(!r.matches(Method::Post, &["a", "x"]));
        assert!(!r.matches(Method::Get, &["b", "x"]));
    }

    #[test]
    fn levels_are_ordered() {
        assert!(Level::Read < Level::Write && Level::Write < Level::Admin);
        assert_eq!(serde_json::to_string(&Level::Admin).unwrap(), "\"admin\"");
        assert!(Method::parse("get").is_none() && Method::parse("CONNECT").is_none() && Method::parse("TRACE").is_none());
    }
}
