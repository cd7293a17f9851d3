//! Inject: build the request the origin receives.
//!
//! Invariants:
//! - Only a [`Permit`] can be turned into an [`Outbound`], so nothing is sent
//!   for a request that was not authorized.
//! - Request headers are an allowlist. The sandbox's `Authorization`,
//!   `Cookie`, `Proxy-*`, `Host`, `X-Forwarded-*`, `Forwarded`, `X-Real-IP`
//!   and Airlock's own headers are never forwarded, whatever the policy says.
//! - The credential is *set* by Airlock at the place the policy names, never
//!   substituted into something the sandbox wrote.
//! - The host is the tool's fixed origin; the sandbox supplies only the path
//!   (already normalized) and the query.
//! - Every value Airlock injects is returned as a redaction pattern, so the
//!   response filter can scrub it.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use std::cell::RefCell;
use std::rc::Rc;

use crate::admit::Admitted;
use crate::authorize::{Authorized, EgressAuthorized, McpAuthorized, Permit};
use crate::error::Error;
use crate::mcp::{self, Call, CanonicalBody, McpRules};
use crate::policy::{header_is_forbidden, is_token_header, Level, Method, Placement, Target};
pub use crate::policy::{FORWARDED_HEADERS, MCP_HEADERS};
use crate::redact::Redactor;
use crate::request::{header, EgressRequest, McpRequest, ToolRequest};
use crate::secret::Secret;
use crate::token::KeyRing;

pub mod aws;

/// What Airlock asks a credentialed (or MCP) origin for: only codings the
/// runtime decodes before the body reaches the redactor (see
/// [`crate::respond::check_encoding`]). The sandbox's own `Accept-Encoding`
/// is never forwarded.
pub const ACCEPT_ENCODING: &str = "gzip, br";

/// Request headers that ask for a slice of the body.
const RANGE_HEADERS: &[&str] = &["range", "if-range"];

/// The request Airlock sends to the origin, and what the response phase
/// needs to know about it. Only injection builds one (the fields are
/// private), from an authorization and an admission.
pub struct Outbound {
    method: Method,
    target: Target,
    url: String,
    headers: Vec<(String, String)>,
    /// Byte strings that must never reach the sandbox: every injected value
    /// and its spellings.
    redactions: Vec<Rc<Secret>>,
    /// The response filter over `redactions`.
    filter: Redactor,
    /// The request body's declared length, already checked against the
    /// policy; `None` when the sandbox sent no `Content-Length`, in which
    /// case the edge must count the body while streaming it.
    declared_length: Option<u64>,
    /// The policy's request body cap.
    body_limit: u64,
    /// The tool's upstream timeouts, when it sets its own.
    timeout_ms: Option<u64>,
    idle_timeout_ms: Option<u64>,
    response: ResponseRules,
}

impl Outbound {
    pub fn method(&self) -> Method {
        self.method
    }
    pub fn target(&self) -> &Target {
        &self.target
    }
    pub fn url(&self) -> &str {
        &self.url
    }
    pub fn headers(&self) -> &[(String, String)] {
        &self.headers
    }
    pub fn redactions(&self) -> &[Rc<Secret>] {
        &self.redactions
    }
    /// The response filter that scrubs every injected value, moved out once.
    pub fn take_filter(&mut self) -> Redactor {
        std::mem::replace(&mut self.filter, Redactor::new(Vec::new()))
    }
    pub fn declared_length(&self) -> Option<u64> {
        self.declared_length
    }
    pub fn body_limit(&self) -> u64 {
        self.body_limit
    }
    pub fn response(&self) -> &ResponseRules {
        &self.response
    }
    /// How long to wait for the origin's answer: the tool's own timeout,
    /// else `default` (the policy's).
    pub fn timeout_ms(&self, default: u64) -> u64 {
        self.timeout_ms.unwrap_or(default)
    }
    /// How long the origin's body may stay silent.
    pub fn idle_timeout_ms(&self, default: u64) -> u64 {
        self.idle_timeout_ms.unwrap_or(default)
    }
}

/// What the response phase applies to the origin's answer, decided with the
/// request so the edge never looks the tool up again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseRules {
    /// `Set-Cookie` is dropped (a credentialed origin's, or egress).
    pub drop_cookies: bool,
    /// Only answers Airlock can fully inspect pass: decoded codings, and no
    /// slices from a credentialed origin.
    pub inspect: bool,
    pub credentialed: bool,
    pub allow_range: bool,
    pub relocate: Relocate,
    /// An origin `5xx` keeps its status and scrubbed body.
    pub pass_server_errors: bool,
}

/// What becomes of a redirect's `Location`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Relocate {
    /// A location on the tool's origin (under its base path) is rewritten
    /// onto `/t/{name}/…`; any other is passed, scrubbed.
    Tool { base: String, base_path: String, name: String },
    /// Rewritten onto the egress route if the host is allowed, else removed.
    Egress,
    /// Removed.
    Drop,
}

fn header_value_ok(v: &[u8]) -> bool {
    v.iter().all(|&b| b == b'\t' || (b >= 0x20 && b != 0x7f))
}

fn percent_encode_component(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    crate::path::percent_encode(bytes, |b| b.is_ascii_alphanumeric() || b"-._~".contains(&b), &mut out);
    out
}

/// The patterns that scrub `secret` from responses: the value itself, which
/// the redactor also matches in every JSON, percent and form spelling (it
/// decodes while scanning), and its base64 spellings at every alignment in
/// both alphabets ([`crate::redact::base64_spellings`]), which it matches
/// through the same escapes.
pub fn encodings_of(secret: &[u8]) -> Vec<Vec<u8>> {
    if secret.is_empty() {
        return Vec::new();
    }
    let mut out = vec![secret.to_vec()];
    out.extend(crate::redact::base64_spellings(secret));
    out.sort();
    out.dedup();
    out
}

/// The sandbox's request headers that may be forwarded: the built-in
/// allowlist plus `extra`, minus anything forbidden and minus every header
/// the sandbox named in `Connection` (hop-by-hop by its own declaration).
pub fn forwardable_headers(headers: &[(String, String)], extra: &[String]) -> Vec<(String, String)> {
    let hop_by_hop: Vec<String> =
        headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("connection")).flat_map(|(_, v)| v.split(',').map(|t| t.trim().to_ascii_lowercase())).collect();
    let mut out = Vec::new();
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        // The allowlist decides; the forbidden check is a second wall in
        // case a future allowlist entry overlaps a dangerous header.
        let allowed = FORWARDED_HEADERS.contains(&lower.as_str()) || extra.contains(&lower);
        if allowed && !header_is_forbidden(&lower) && !hop_by_hop.contains(&lower) {
            out.push((lower, value.clone()));
        }
    }
    out
}

/// Inject for egress: the credential-free request of an allowed,
/// admitted egress call.
pub fn egress(authorized: EgressAuthorized, _admitted: &Admitted, req: &EgressRequest<'_>) -> Outbound {
    let mut url = format!("{}{}", authorized.permit.target().base, authorized.path.encoded());
    if let Some(q) = req.query.filter(|q| !q.is_empty()) {
        url.push('?');
        url.push_str(q);
    }
    Outbound {
        method: authorized.method,
        target: Target::Public,
        url,
        headers: forwardable_headers(req.headers, &[]),
        redactions: Vec::new(),
        filter: Redactor::new(Vec::new()),
        declared_length: authorized.declared_length,
        body_limit: authorized.body_limit,
        response: ResponseRules {
            drop_cookies: true,
            inspect: false,
            credentialed: false,
            allow_range: true,
            relocate: Relocate::Egress,
            pass_server_errors: false,
        },
        timeout_ms: None,
        idle_timeout_ms: None,
    }
}

/// Inject for a tool: reads the tool's credential (through `secret`, only
/// now that the request was authorized and admitted) and builds the request.
pub fn tool(
    authorized: Authorized<'_>,
    _admitted: &Admitted,
    req: &ToolRequest<'_>,
    secret: impl FnOnce(&str) -> Option<Rc<PreparedCredential>>,
) -> Result<Outbound, Error> {
    let credential = read_credential(&authorized.permit, secret)?;
    // The query without the session token's own parameters (authorize
    // removed them), so they never reach the origin.
    let outbound = build(&authorized.permit, req.headers, Some(&authorized.gate.query), credential.as_deref())?;
    Ok(Outbound { declared_length: authorized.declared_length, body_limit: authorized.body_limit, ..outbound })
}

fn read_credential(permit: &Permit<'_>, secret: impl FnOnce(&str) -> Option<Rc<PreparedCredential>>) -> Result<Option<Rc<PreparedCredential>>, Error> {
    match &permit.tool().credential {
        Some(c) => Ok(Some(secret(&c.secret).ok_or_else(|| Error::Misconfigured(format!("secret {} is not set", c.secret)))?)),
        None => Ok(None),
    }
}

/// What an admitted MCP request becomes.
pub enum McpOutbound<'p> {
    /// A message the policy refused: answered by Airlock with this JSON-RPC
    /// error; nothing is sent and no credential is read.
    Refused {
        call: Call,
        response: Vec<u8>,
        reason: &'static str,
        status: u16,
    },
    Exchange(Box<McpExchange<'p>>),
}

/// An MCP request to send, with what the response phase needs.
pub struct McpExchange<'p> {
    pub outbound: Outbound,
    /// The canonical bytes of the authorized message (a POST), sent in
    /// place of what the sandbox sent.
    pub body: Option<CanonicalBody>,
    pub call: Option<Call>,
    pub rules: &'p McpRules,
    pub granted: Level,
    pub session_id: String,
}

/// Inject for an MCP server: a refused message becomes Airlock's answer;
/// otherwise the credential is read and the request built, with the
/// sandbox's `Mcp-Session-Id` unbound to the origin's.
pub fn mcp<'p>(
    authorized: McpAuthorized<'p>,
    _admitted: &Admitted,
    req: &McpRequest<'_>,
    keys: &KeyRing,
    secret: impl FnOnce(&str) -> Option<Rc<PreparedCredential>>,
) -> Result<McpOutbound<'p>, Error> {
    let (call, body) = match authorized.verdict {
        Some(mcp::Verdict::Refuse { call, response, reason, status }) => return Ok(McpOutbound::Refused { call, response, reason, status }),
        Some(mcp::Verdict::Forward { call, body }) => (Some(call), Some(body)),
        None => (None, None),
    };
    let Some(rules) = authorized.permit.tool().mcp.as_ref() else {
        return Err(Error::ToolNotAllowed { tool: authorized.permit.tool().name.clone() });
    };
    let session_id = authorized.permit.session().claims().sid.clone();
    // The canonical body goes out as plain UTF-8 JSON: the sandbox's own
    // Content-Type (and any encoding) described other bytes. The origin's
    // MCP session id passes only if it was bound to this session.
    // In 2026-07-28 there are no sessions and no resumption, and the
    // request metadata goes out as Airlock's own spelling of the body.
    let stateless = call.as_ref().is_some_and(|c| c.era == mcp::Era::Stateless);
    let replaced = |n: &str| {
        n.eq_ignore_ascii_case("mcp-session-id")
            || (stateless && MCP_HEADERS.iter().any(|h| n.eq_ignore_ascii_case(h)))
            || (body.is_some() && (n.eq_ignore_ascii_case("content-type") || n.eq_ignore_ascii_case("content-encoding")))
    };
    let mut headers: Vec<(String, String)> = req.headers.iter().filter(|(n, _)| !replaced(n)).cloned().collect();
    if body.is_some() {
        headers.push(("content-type".into(), mcp::CANONICAL_CONTENT_TYPE.into()));
    }
    let presented = header(req.headers, "mcp-session-id").filter(|_| !stateless);
    if let Some(presented) = presented {
        let origin_sid = mcp::unbind_session_id(presented, &session_id, keys).ok_or(Error::McpSessionInvalid)?;
        headers.push(("mcp-session-id".into(), origin_sid));
    }
    let credential = read_credential(&authorized.permit, secret)?;
    let mut outbound = build(&authorized.permit, &headers, None, credential.as_deref())?;
    // Added after the allowlist: `mcp-method`, `mcp-name`, `mcp-param-*`
    // are never the sandbox's, only these values checked against the body.
    outbound.headers.extend(call.iter().flat_map(|c| c.headers.iter().cloned()));
    Ok(McpOutbound::Exchange(Box::new(McpExchange { outbound, body, call, rules, granted: authorized.granted, session_id })))
}

/// A credential value together with the encodings the response filter must
/// scrub. Computing the encodings costs more than the rest of injection, so
/// the edge builds this once per value and reuses it across requests.
pub struct PreparedCredential {
    value: Secret,
    encodings: Vec<Rc<Secret>>,
    /// Base64 spellings of the values injected around this one (`Bearer …`,
    /// a Basic pair), computed on first use: the placement is only known at
    /// injection, and a credential is injected the same way every time.
    /// Bounded to a few entries; a borrow conflict just skips the memo.
    wrapped: RefCell<Vec<(Secret, Vec<Rc<Secret>>)>>,
    /// The response filter for the last injected value, built once: its
    /// tables cost more than a copy, and the value is the same every time.
    filter: RefCell<Option<(Secret, Redactor)>>,
}

/// Distinct wrapped values memoized per credential (a credential serves one
/// placement, so one or two are used).
const WRAPPED_MEMO: usize = 4;

impl PreparedCredential {
    pub fn new(value: Secret) -> PreparedCredential {
        let encodings = encodings_of(value.expose()).into_iter().map(|e| Rc::new(Secret::new(e))).collect();
        PreparedCredential { value, encodings, wrapped: RefCell::new(Vec::new()), filter: RefCell::new(None) }
    }

    pub fn value(&self) -> &Secret {
        &self.value
    }

    /// The response filter for `patterns`, the spellings of `injected` (the
    /// value set on the request) and of this credential: a copy of the one
    /// built for the same value before.
    fn filter(&self, injected: &[u8], patterns: &[Rc<Secret>]) -> Redactor {
        let Ok(mut memo) = self.filter.try_borrow_mut() else {
            return Redactor::shared(patterns.to_vec());
        };
        if let Some((seen, filter)) = memo.as_ref() {
            if seen.expose() == injected {
                return filter.fresh();
            }
        }
        let filter = Redactor::shared(patterns.to_vec());
        *memo = Some((Secret::new(injected.to_vec()), filter.fresh()));
        filter
    }

    /// Base64 spellings of a value injected with this credential inside it
    /// (the whole header value, or the Basic pair), at every alignment: an
    /// origin that base64-encodes what it received (a debug echo, a JWT-like
    /// blob) spells the credential's neighbours too, and scrubbing only the
    /// credential's own characters would leave its boundary bits.
    fn wrapped_spellings(&self, wrapped: &[u8]) -> Vec<Rc<Secret>> {
        let Ok(mut memo) = self.wrapped.try_borrow_mut() else {
            return crate::redact::base64_spellings(wrapped).into_iter().map(|e| Rc::new(Secret::new(e))).collect();
        };
        if let Some((_, spellings)) = memo.iter().find(|(v, _)| v.expose() == wrapped) {
            return spellings.clone();
        }
        let spellings: Vec<Rc<Secret>> = crate::redact::base64_spellings(wrapped).into_iter().map(|e| Rc::new(Secret::new(e))).collect();
        if memo.len() >= WRAPPED_MEMO {
            memo.clear();
        }
        memo.push((Secret::new(wrapped.to_vec()), spellings.clone()));
        spellings
    }
}

/// Builds the outbound request for a permitted call.
///
/// `headers` are the sandbox's request headers (any case); `query` the raw
/// query string without `?`; `credential` the value of the tool's secret,
/// required when the tool declares a credential.
fn build(permit: &Permit<'_>, headers: &[(String, String)], query: Option<&str>, credential: Option<&PreparedCredential>) -> Result<Outbound, Error> {
    let tool = permit.tool();
    let mut extra = tool.forward_headers.clone();
    if tool.mcp.is_some() {
        extra.extend(MCP_HEADERS.iter().map(|h| h.to_string()));
    }
    let mut out_headers = forwardable_headers(headers, &extra);
    // The places of the session token are never forwarded (the policy
    // cannot list them; this is the second wall).
    out_headers.retain(|(n, _)| !is_token_header(n, Some(&tool.session_token)));
    if tool.credential.is_some() || tool.mcp.is_some() {
        // Slices of an echoed body, each shorter than the credential, would
        // pass the redactor and reassemble it: no ranges unless opted in.
        if tool.credential.is_some() && !tool.allow_range {
            out_headers.retain(|(n, _)| !RANGE_HEADERS.contains(&n.as_str()));
        }
        // Only codings the runtime decodes before the body is scanned.
        out_headers.retain(|(n, _)| n != "accept-encoding");
        out_headers.push(("accept-encoding".into(), ACCEPT_ENCODING.into()));
    }

    let mut query_parts: Vec<String> =
        query.filter(|q| !q.is_empty()).map(|q| q.split('&').filter(|p| !p.is_empty()).map(str::to_string).collect()).unwrap_or_default();

    let mut redactions = Vec::new();
    let mut filter = None;
    match (&tool.credential, credential) {
        (None, _) => {}
        (Some(c), None) => {
            return Err(Error::Misconfigured(format!("secret {} is not set", c.secret)));
        }
        (Some(c), Some(prepared)) => {
            let value = prepared.value.expose();
            if value.is_empty() {
                return Err(Error::Misconfigured(format!("secret {} is empty", c.secret)));
            }
            let (header, injected): (Option<String>, Vec<u8>) = match &c.placement {
                Placement::Bearer => {
                    let mut v = b"Bearer ".to_vec();
                    v.extend_from_slice(value);
                    (Some("authorization".into()), v)
                }
                Placement::Header { name, prefix, suffix } => {
                    let mut v = prefix.as_bytes().to_vec();
                    v.extend_from_slice(value);
                    v.extend_from_slice(suffix.as_bytes());
                    (Some(name.clone()), v)
                }
                Placement::Basic { username } => {
                    let mut pair = match username {
                        Some(u) => format!("{u}:").into_bytes(),
                        None => Vec::new(),
                    };
                    pair.extend_from_slice(value);
                    if username.is_none() {
                        pair.push(b':');
                    }
                    let b64 = STANDARD.encode(&pair);
                    redactions.extend(encodings_of(b64.as_bytes()).into_iter().map(|e| Rc::new(Secret::new(e))));
                    redactions.extend(prepared.wrapped_spellings(&pair));
                    (Some("authorization".into()), format!("Basic {b64}").into_bytes())
                }
                // Signed by `aws::sign`, never injected as a value.
                Placement::AwsSigV4(_) => return Err(Error::Misconfigured("an aws_sigv4 credential only signs HTTP tool requests".into())),
                Placement::Query { param } => {
                    // A parameter of the same name from the sandbox is dropped,
                    // so an origin that takes the first value never sees one
                    // the sandbox chose.
                    query_parts.retain(|part| {
                        let key = part.split('=').next().unwrap_or_default();
                        key != param && crate::path::form_decode(key) != param.as_bytes()
                    });
                    let encoded = percent_encode_component(value);
                    query_parts.push(format!("{param}={encoded}"));
                    (None, encoded.into_bytes())
                }
            };
            if let Some(name) = header {
                if !header_value_ok(&injected) {
                    return Err(Error::Misconfigured(format!("secret {} holds characters not allowed in a header", c.secret)));
                }
                // An injected header replaces anything of that name.
                out_headers.retain(|(n, _)| *n != name);
                let text = String::from_utf8(injected.clone()).map_err(|_| Error::Misconfigured(format!("secret {} is not valid UTF-8", c.secret)))?;
                out_headers.push((name, text));
            }
            // The injected value's own characters are caught through the
            // credential's patterns (any match of its secret part scrubs
            // it); only its base64 spellings differ from the credential's.
            // Keeping it as a pattern of its own would make `+` (a space
            // in form encoding) an escape to decode in every body, for no
            // byte of the credential more.
            redactions.extend(prepared.wrapped_spellings(&injected));
            redactions.extend(prepared.encodings.iter().cloned());
            filter = Some(prepared.filter(&injected, &redactions));
        }
    }

    // An MCP server's endpoint is the origin URL exactly as configured.
    let path = match (&tool.mcp, tool.origin.base_path.is_empty()) {
        (Some(_), false) => String::new(),
        _ => permit.path().encoded(),
    };
    let mut url = format!("{}{}{}", tool.origin.base, tool.origin.base_path, path);
    if !query_parts.is_empty() {
        url.push('?');
        url.push_str(&query_parts.join("&"));
    }
    Ok(Outbound {
        method: permit.method(),
        target: tool.origin.target.clone(),
        url,
        headers: out_headers,
        redactions,
        filter: filter.unwrap_or_else(|| Redactor::new(Vec::new())),
        declared_length: None,
        body_limit: u64::MAX,
        timeout_ms: tool.timeout_ms,
        idle_timeout_ms: tool.idle_timeout_ms,
        response: response_rules(tool),
    })
}

/// What the response phase applies to a tool's answers.
fn response_rules(tool: &crate::policy::Tool) -> ResponseRules {
    ResponseRules {
        drop_cookies: tool.credential.is_some(),
        inspect: tool.credential.is_some() || tool.mcp.is_some(),
        credentialed: tool.credential.is_some(),
        allow_range: tool.allow_range,
        pass_server_errors: tool.pass_server_errors,
        relocate: match tool.mcp {
            Some(_) => Relocate::Drop,
            None => Relocate::Tool { base: tool.origin.base.clone(), base_path: tool.origin.base_path.clone(), name: tool.name.clone() },
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authorize::authorize;
    use crate::path::normalize;
    use crate::policy::{Level, Policy};
    use crate::token::{sign, verify, Claims, KeyRing};

    fn policy(credential: &str) -> Policy {
        Policy::parse(&format!(
            r#"{{ "version": 1, "audience": "t", "tools": {{ "api": {{
                "origin": "https://api.example.com/base",
                "credential": {credential},
                "forward_headers": ["x-extra", "x-hop"],
                "rules": [ {{ "methods": ["GET","HEAD","POST","PUT","PATCH","DELETE","OPTIONS"], "path": "/**", "level": "read" }} ]
            }} }} }}"#
        ))
        .unwrap()
    }

    fn permit<'p>(p: &'p Policy, method: &str, path: &str) -> Permit<'p> {
        let ring = KeyRing::parse("k:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap();
        let claims = Claims {
            sid: "s".into(),
            agt: "a".into(),
            usr: "u".into(),
            scp: [("api".to_string(), Level::Read)].into_iter().collect(),
            iat: 10,
            exp: 100,
            aud: "t".into(),
            egr: false,
            rps: Default::default(),
        };
        let session = verify(&sign(&claims, &ring), &ring, "t", 50).unwrap();
        authorize(p, session, "api", method, normalize(path).unwrap()).unwrap()
    }

    fn hostile_headers() -> Vec<(String, String)> {
        [
            ("Authorization", "Bearer al1.session-token"),
            ("Cookie", "sid=1"),
            ("Proxy-Authorization", "Basic x"),
            ("Host", "evil.example"),
            ("X-Forwarded-For", "10.0.0.1"),
            ("X-Forwarded-Host", "evil.example"),
            ("Forwarded", "for=1.2.3.4"),
            ("X-Real-IP", "1.2.3.4"),
            ("X-Airlock-Request-Id", "spoof"),
            ("CF-Connecting-IP", "1.2.3.4"),
            ("Connection", "close"),
            ("Transfer-Encoding", "chunked"),
            ("X-Api-Key", "sandbox-chosen"),
            ("Accept", "application/json"),
            ("Content-Type", "text/plain"),
            ("X-Extra", "kept"),
            ("X-Hop", "listed in Connection"),
            ("Connection", "x-hop, keep-alive"),
            ("X-Unlisted", "dropped"),
        ]
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_string()))
        .collect()
    }

    fn names(o: &Outbound) -> Vec<&str> {
        o.headers.iter().map(|(n, _)| n.as_str()).collect()
    }

    fn get<'a>(o: &'a Outbound, name: &str) -> Vec<&'a str> {
        o.headers.iter().filter(|(n, _)| n == name).map(|(_, v)| v.as_str()).collect()
    }

    #[test]
    fn each_method_gets_the_credential_and_only_allowlisted_headers() {
        let p = policy(r#"{ "secret": "K", "inject": "bearer" }"#);
        for method in ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"] {
            let secret = PreparedCredential::new(Secret::new(b"s3cr3t-value".to_vec()));
            let o = build(&permit(&p, method, "/v1/items/"), &hostile_headers(), Some("a=1&b=2"), Some(&secret)).unwrap();
            assert_eq!(o.method.as_str(), method);
            assert_eq!(o.url, "https://api.example.com/base/v1/items/?a=1&b=2");
            assert_eq!(get(&o, "authorization"), vec!["Bearer s3cr3t-value"], "{method}");
            let mut n = names(&o);
            n.sort();
            assert_eq!(n, vec!["accept", "accept-encoding", "authorization", "content-type", "x-extra"], "{method}");
            assert_eq!(get(&o, "accept-encoding"), vec![ACCEPT_ENCODING], "{method}");
            assert!(o.redactions.iter().any(|r| r.expose() == b"s3cr3t-value"));
            // The whole injected value, in any spelling, loses its secret.
            for echoed in [&b"Bearer s3cr3t-value"[..], b"Bearer+s3cr3t%2Dvalue", b"Bearer s3cr3t\\u002dvalue"] {
                let scrubbed = o.filter.redact(echoed);
                assert!(!String::from_utf8_lossy(&scrubbed).contains("s3cr3t"), "{method}: {}", String::from_utf8_lossy(&scrubbed));
            }
        }
    }

    #[test]
    fn ranges_reach_a_credentialed_origin_only_when_the_tool_opts_in() {
        let secret = PreparedCredential::new(Secret::new(b"s3cr3t-value".to_vec()));
        let mut h = hostile_headers();
        h.push(("Range".into(), "bytes=0-3".into()));
        h.push(("If-Range".into(), "\"e1\"".into()));
        h.push(("Accept-Encoding".into(), "zstd, deflate".into()));
        let p = policy(r#"{ "secret": "K", "inject": "bearer" }"#);
        let o = build(&permit(&p, "GET", "/"), &h, None, Some(&secret)).unwrap();
        assert!(get(&o, "range").is_empty() && get(&o, "if-range").is_empty());
        assert_eq!(get(&o, "accept-encoding"), vec![ACCEPT_ENCODING]);

        let opted = Policy::parse(
            r#"{ "version": 1, "audience": "t", "tools": { "api": {
                "origin": "https://api.example.com/base", "allow_range": true,
                "credential": { "secret": "K", "inject": "bearer" },
                "rules": [ { "methods": ["GET"], "path": "/**", "level": "read" } ] } } }"#,
        )
        .unwrap();
        let o = build(&permit(&opted, "GET", "/"), &h, None, Some(&secret)).unwrap();
        assert_eq!(get(&o, "range"), vec!["bytes=0-3"]);
        assert_eq!(get(&o, "if-range"), vec!["\"e1\""]);
    }

    #[test]
    fn named_header_with_format_replaces_a_sandbox_copy() {
        let p = policy(r#"{ "secret": "K", "inject": "header", "header": "X-Api-Key", "format": "Key {secret}!" }"#);
        let secret = PreparedCredential::new(Secret::new(b"abc123".to_vec()));
        let mut h = hostile_headers();
        h.push(("x-api-key".into(), "second".into()));
        let o = build(&permit(&p, "GET", "/"), &h, None, Some(&secret)).unwrap();
        assert_eq!(get(&o, "x-api-key"), vec!["Key abc123!"]);
        assert!(get(&o, "authorization").is_empty(), "sandbox Authorization must not pass");
        assert_eq!(o.url, "https://api.example.com/base/");
    }

    #[test]
    fn basic_auth_with_and_without_username() {
        let p = policy(r#"{ "secret": "K", "inject": "basic", "username": "api" }"#);
        let secret = PreparedCredential::new(Secret::new(b"pw".to_vec()));
        let o = build(&permit(&p, "GET", "/"), &[], None, Some(&secret)).unwrap();
        assert_eq!(get(&o, "authorization"), vec![format!("Basic {}", STANDARD.encode("api:pw")).as_str()]);
        assert!(o.redactions.iter().any(|r| r.expose() == STANDARD.encode("api:pw").as_bytes()));

        let p = policy(r#"{ "secret": "K", "inject": "basic" }"#);
        let secret = PreparedCredential::new(Secret::new(b"sk_live_1".to_vec()));
        let o = build(&permit(&p, "GET", "/"), &[], None, Some(&secret)).unwrap();
        assert_eq!(get(&o, "authorization"), vec![format!("Basic {}", STANDARD.encode("sk_live_1:")).as_str()]);
    }

    #[test]
    fn query_credential_drops_the_sandbox_copy() {
        let p = policy(r#"{ "secret": "K", "inject": "query", "param": "key" }"#);
        let secret = PreparedCredential::new(Secret::new(b"a b&c".to_vec()));
        let q = "key=mine&x=1&%6Bey=also-mine&keyx=2&key";
        let o = build(&permit(&p, "GET", "/maps"), &hostile_headers(), Some(q), Some(&secret)).unwrap();
        assert_eq!(o.url, "https://api.example.com/base/maps?x=1&keyx=2&key=a%20b%26c");
        assert!(get(&o, "authorization").is_empty());
        // The injected (percent-encoded) value is caught by decoding.
        assert_eq!(o.filter.redact(b"key=a%20b%26c&x=1"), b"key=[REDACTED]&x=1");
    }

    #[test]
    fn missing_or_unsafe_secret_fails_closed() {
        let p = policy(r#"{ "secret": "K", "inject": "bearer" }"#);
        let e = build(&permit(&p, "GET", "/"), &[], None, None).err().unwrap();
        assert_eq!(e.code(), "misconfigured");
        let e = build(&permit(&p, "GET", "/"), &[], None, Some(&PreparedCredential::new(Secret::new(Vec::new())))).err().unwrap();
        assert_eq!(e.code(), "misconfigured");
        let crlf = PreparedCredential::new(Secret::new(b"x\r\nX-Evil: 1".to_vec()));
        let e = build(&permit(&p, "GET", "/"), &[], None, Some(&crlf)).err().unwrap();
        assert_eq!(e.code(), "misconfigured");
        // The error names the secret, never its value.
        assert!(!e.detail().contains("X-Evil"));
    }

    #[test]
    fn encodings_cover_common_forms() {
        // The patterns are decoded values plus base64 spellings; the
        // redactor matches them through percent and JSON escapes.
        let secret = b"a/b+c\"d";
        let enc = encodings_of(secret);
        for want in [&secret[..], b"YS9iK2MiZA==", b"YS9iK2MiZA", b"YS9iK2MiZA"] {
            assert!(enc.iter().any(|e| e == want), "{}", String::from_utf8_lossy(want));
        }
        let red = crate::redact::Redactor::new(enc.into_iter().map(Secret::new).collect());
        for spelled in [&b"a%2Fb%2Bc%22d"[..], b"a/b+c\\\"d", b"a\\/b+c\\u0022d", b"YS9iK2MiZA%3D%3D"] {
            assert_eq!(red.redact(spelled), crate::redact::REPLACEMENT, "{}", String::from_utf8_lossy(spelled));
        }
    }
}
