//! The deploy-time policy: tools, their origins, credentials and rules.
//!
//! Invariants:
//! - Parse, don't validate: JSON becomes a [`Policy`] only if every field is
//!   valid; otherwise the error names the field (`tools.github.rules[0].level`).
//!   There is no partially valid policy, so there is no half-working broker.
//! - Default deny: a request is only ever allowed by a rule listed here.
//! - Holds secret *names*, never secret values.

use std::collections::BTreeMap;

use crate::egress::EgressRule;

mod aws;
mod preset;
mod raw;
#[cfg(test)]
mod tests;
mod upstream;
use crate::mcp::McpRules;
use crate::state::bucket::Rate;

pub use crate::level::Level;

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
                            return Err(format!("segment {lit:?}: write literals decoded, without '%', '\\' or control characters"));
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
    /// Query parameters the request must carry, each exactly once and with
    /// exactly this (form-decoded) value: `service=git-upload-pack`.
    pub query: Vec<(String, String)>,
    pub level: Level,
    /// A human must approve each matching request before it is forwarded.
    pub approval: bool,
    /// How long a held request waits open for the decision (0: answered
    /// `approval_required` at once).
    pub approval_wait_s: u64,
}

impl Rule {
    /// `query` is the request's query as decoded pairs
    /// ([`query_pairs`]); only read when the rule names parameters.
    pub fn matches<S: AsRef<str>>(&self, method: Method, path: &[S], query: &[(Vec<u8>, Vec<u8>)]) -> bool {
        self.methods.contains(&method)
            && self.path.matches(path)
            && self.query.iter().all(|(name, value)| {
                let mut found = query.iter().filter(|(k, _)| k == name.as_bytes());
                matches!((found.next(), found.next()), (Some((_, v)), None) if v == value.as_bytes())
            })
    }
}

/// A raw query (without `?`) as a form decoder reads it: pairs split on
/// `&` and on `;` (which older Rack and Python parsers also split on, so a
/// parameter hidden behind a `;` still counts), `+` as a space, then
/// `%XX`.
pub fn query_pairs(query: Option<&str>) -> Vec<(Vec<u8>, Vec<u8>)> {
    let form_decode = crate::path::form_decode;
    query
        .unwrap_or_default()
        .split(['&', ';'])
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (form_decode(key), form_decode(value))
        })
        .collect()
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
    /// An AWS Signature Version 4 over the forwarded request, made with the
    /// secret access key in [`Credential::secret`] (`"kind": "aws_sigv4"`).
    AwsSigV4(AwsSigV4),
}

/// How an AWS tool's requests are signed, besides the secret access key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AwsSigV4 {
    /// Name of the platform secret holding the access key id.
    pub access_key_id_secret: String,
    /// Name of the platform secret holding a session token (temporary
    /// credentials), sent as `X-Amz-Security-Token`.
    pub session_token_secret: Option<String>,
    pub region: String,
    pub service: String,
}

impl AwsSigV4 {
    /// S3 signs its path once-encoded and accepts `UNSIGNED-PAYLOAD`.
    pub fn is_s3(&self) -> bool {
        self.service == "s3"
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// Name of the platform secret holding the value (for a minted kind:
    /// the root it is minted from).
    pub secret: String,
    pub placement: Placement,
    /// A credential Airlock mints (`kind`); `None`: the secret is set as it is.
    pub upstream: Option<crate::upstream::Upstream>,
}

impl Credential {
    /// The platform secrets the request path reads for this credential: its
    /// own, and an AWS key's id and session token; none for a minted kind
    /// (its root is read where it is minted).
    pub fn secret_names(&self) -> Vec<&str> {
        if self.upstream.is_some() {
            return Vec::new();
        }
        let mut names = vec![self.secret.as_str()];
        if let Placement::AwsSigV4(aws) = &self.placement {
            names.push(&aws.access_key_id_secret);
            names.extend(aws.session_token_secret.as_deref());
        }
        names
    }
}

/// Places beyond [`TOKEN_HEADERS`] where a tool
/// accepts the session token (lower-case header names, query parameter
/// names). None of them is ever forwarded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenSlots {
    pub headers: Vec<String>,
    pub query: Vec<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Tool {
    pub name: String,
    /// The vendor preset the tool was filled in from, if any.
    pub preset: Option<&'static str>,
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
    pub session_token: TokenSlots,
    /// Upstream timeouts of this tool; the policy's limits when unset.
    pub timeout_ms: Option<u64>,
    pub idle_timeout_ms: Option<u64>,
    /// An origin `5xx` keeps its status and its (scrubbed) body, for public
    /// APIs whose SDKs read error bodies to decide retries.
    pub pass_server_errors: bool,
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
    /// Where held requests are announced (`approvals`).
    pub approvals: Approvals,
}

/// The policy's `approvals` object: how a held request reaches a human.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Approvals {
    pub webhook: Option<WebhookDest>,
    /// The name of the platform secret that keys the webhook signatures.
    pub webhook_secret: String,
    /// The worker's public base URL, for the links in events (else the
    /// request's own origin).
    pub page_url: Option<String>,
}

pub use crate::webhook::WebhookDest;

/// The longest a rule may hold a request open.
pub const MAX_APPROVAL_WAIT_S: u64 = 300;
/// Longest `dedupe_seconds` of an MCP tool (one day).
pub const MAX_DEDUPE_S: u64 = 86_400;

impl Tool {
    /// The SigV4 signing of an AWS tool (`"kind": "aws_sigv4"`).
    pub fn aws(&self) -> Option<&AwsSigV4> {
        match &self.credential {
            Some(Credential { placement: Placement::AwsSigV4(aws), .. }) => Some(aws),
            _ => None,
        }
    }
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
        raw::parse(json)
    }
}

/// A minted credential from its policy JSON ([`crate::upstream::Upstream::raw`],
/// already validated by the worker's policy): its root secret's name and
/// what to mint.
pub fn minted_credential(json: &str) -> Option<(String, crate::upstream::Upstream)> {
    let value: serde_json::Value = serde_json::from_str(json).ok()?;
    let credential = raw::read_credential(crate::json::Obj::of(&value, "credential".into()).ok()?, true).ok()?;
    Some((credential.secret, credential.upstream?))
}

/// A secret or binding name: `[A-Za-z_][A-Za-z0-9_]*`, at most 128.
pub(crate) fn is_binding_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 128 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') && !s.as_bytes()[0].is_ascii_digit()
}

/// A policy error: the field path and what is wrong with it.
pub type PolicyError = crate::json::FieldError;

pub(crate) use crate::json::err;

/// Request headers the policy may never name: they carry the sandbox's own
/// authority, routing, or framing, and forwarding or overwriting them would
/// reopen what Airlock closes.
pub const FORBIDDEN_HEADERS: &[&str] = &[
    "host",
    "authorization",
    "proxy-authorization",
    "cookie",
    "set-cookie",
    "connection",
    "keep-alive",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "content-length",
    "forwarded",
    "x-real-ip",
    "expect",
    "proxy-connection",
];
pub const FORBIDDEN_HEADER_PREFIXES: &[&str] = &["x-forwarded-", "proxy-", "cf-", "x-airlock-"];

pub fn header_is_forbidden(name: &str) -> bool {
    FORBIDDEN_HEADERS.contains(&name) || FORBIDDEN_HEADER_PREFIXES.iter().any(|p| name.starts_with(p))
}

/// Request headers forwarded from the sandbox to any origin.
pub const FORWARDED_HEADERS: &[&str] = &[
    "accept",
    "accept-language",
    "cache-control",
    "content-encoding",
    "content-language",
    "content-type",
    "idempotency-key",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "range",
    "user-agent",
];

/// Request headers of the MCP Streamable HTTP transport, forwarded to MCP
/// servers only (`mcp-session-id` after it was unbound by the pipeline).
pub const MCP_HEADERS: &[&str] = &["mcp-session-id", "mcp-protocol-version", "last-event-id"];

/// Headers in which clients put their API key, where a session token is
/// accepted with no policy change: `Authorization` (`Bearer`, `token` as
/// GitHub clients send it, or `Basic` with the token as the password),
/// `x-api-key` (Anthropic), `x-goog-api-key` (Google), `api-key` (Azure
/// OpenAI).
pub const TOKEN_HEADERS: &[&str] = &["authorization", "x-api-key", "x-goog-api-key", "api-key"];

/// Whether `name` (a header, any case) is a place for the session token.
pub fn is_token_header(name: &str, slots: Option<&TokenSlots>) -> bool {
    TOKEN_HEADERS.iter().any(|h| name.eq_ignore_ascii_case(h)) || slots.is_some_and(|s| s.headers.iter().any(|h| name.eq_ignore_ascii_case(h)))
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
