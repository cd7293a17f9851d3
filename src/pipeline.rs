//! The pipeline's deciding phases, in order, as one pure function:
//! parse → authenticate → authorize → inject.
//!
//! Invariant: [`prepare`] returns an [`Outbound`] only when every phase
//! passed; on any refusal nothing is built, no secret is read, and the
//! audit record says which phase refused and why. The edge adds only I/O:
//! forward, filter response, write the audit line.

use crate::audit::AuditRecord;
use crate::authorize::authorize_request;
use crate::error::Error;
use crate::authorize::authorize_mcp;
use crate::egress;
use crate::mcp;
use std::rc::Rc;

use crate::inject::{self, inject, Outbound, PreparedCredential};
use crate::path::{self, PathError};
use crate::policy::{Level, Method, Policy, Tool};
use crate::state::bucket::Rate;
use sha2::Digest;
use crate::token::{self, KeyRing, TokenError, VerifiedSession};

/// What the session state must check before a request is sent, taken from
/// the verified token and the policy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gate {
    pub session_id: String,
    /// The token's expiry, for the audit record of an expired session.
    pub exp: u64,
    /// Key id of the token, from which the proof key is derived.
    pub kid: String,
    pub tool: Option<String>,
    pub proof_required: bool,
    pub session_rate: Option<Rate>,
    pub tool_rate: Option<Rate>,
    /// Level of the matched HTTP rule: idempotency keys apply at `write`
    /// and above.
    pub level: Option<Level>,
    pub approval: bool,
    /// The normalized path, as forwarded (request digests use it).
    pub path: String,
}

impl Gate {
    fn new(policy: &Policy, session: &VerifiedSession, tool: Option<&Tool>, path: String) -> Gate {
        Gate {
            session_id: session.claims().sid.clone(),
            exp: session.claims().exp,
            kid: session.kid().to_string(),
            tool: tool.map(|t| t.name.clone()),
            proof_required: policy.require_proof || tool.is_some_and(|t| t.require_proof),
            session_rate: policy.limits.session_rate,
            tool_rate: tool.and_then(|t| t.rate),
            level: None,
            approval: false,
            path,
        }
    }

    /// Whether the body must be read whole before forwarding: it is
    /// hashed for a proof, an idempotency record or an approval.
    pub fn needs_body(&self, proof_presented: bool, idempotency_key: bool) -> bool {
        self.proof_required || proof_presented || self.approval || (idempotency_key && self.idempotent())
    }

    /// Whether an `Idempotency-Key` applies to this request.
    pub fn idempotent(&self) -> bool {
        self.level.is_some_and(|l| l >= Level::Write)
    }

    /// The digest binding an approval or an idempotency key to exactly
    /// this request of this session.
    pub fn request_digest(&self, method: &str, query: &str, body_sha256: &str) -> String {
        let tool = self.tool.as_deref().unwrap_or("");
        let canonical = format!("airlock-request-v1\n{}\n{tool}\n{method}\n{}\n{query}\n{body_sha256}", self.session_id, self.path);
        crate::hex::hex(&sha2::Sha256::digest(canonical.as_bytes()))
    }
}

/// The `Idempotency-Key` of a request: 1-255 visible ASCII characters.
pub fn idempotency_key(headers: &[(String, String)]) -> Result<Option<&str>, Error> {
    match header(headers, "idempotency-key") {
        None => Ok(None),
        Some(k) if !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()) => Ok(Some(k)),
        Some(_) => Err(Error::InvalidRequest("Idempotency-Key must be 1-255 visible ASCII characters".into())),
    }
}

/// Longest request URL accepted.
pub const MAX_URL_LEN: usize = 8192;
/// Largest total size of request header names and values accepted.
pub const MAX_HEADER_BYTES: usize = 32 * 1024;

/// Refuses oversized requests before any other work is done on them.
pub fn check_sizes(url: &str, headers: &[(String, String)]) -> Result<(), Error> {
    if url.len() > MAX_URL_LEN {
        return Err(Error::UrlTooLong { len: url.len() });
    }
    let size: usize = headers.iter().map(|(n, v)| n.len() + v.len()).sum();
    if size > MAX_HEADER_BYTES {
        return Err(Error::HeadersTooLarge { size });
    }
    Ok(())
}

/// An egress request as plain data.
pub struct EgressRequest<'a> {
    /// The raw `{host}` or `{host}:{port}` segment.
    pub authority: &'a str,
    /// Raw path after the authority, still percent-encoded.
    pub rest: &'a str,
    pub method: &'a str,
    pub query: Option<&'a str>,
    pub headers: &'a [(String, String)],
}

/// An MCP request as plain data.
pub struct McpRequest<'a> {
    pub server: &'a str,
    pub method: &'a str,
    pub headers: &'a [(String, String)],
    /// The JSON-RPC message of a POST (already read, at most
    /// [`mcp::MAX_MESSAGE`] bytes).
    pub body: Option<&'a [u8]>,
}

/// What the edge needs to run an MCP exchange.
pub struct McpPrepared<'p> {
    pub outbound: Outbound,
    /// The decision on the POSTed message (`None` for GET and DELETE). A
    /// `Forward` carries the canonical body the edge must send in place of
    /// the bytes received (`outbound.headers` already say
    /// `content-type: application/json`).
    pub verdict: Option<mcp::Verdict>,
    pub rules: &'p mcp::McpRules,
    pub granted: crate::policy::Level,
    pub session_id: String,
}

/// The deciding phases of an MCP request: authenticate, authorize the
/// server, inspect the message, then inject. A refused message yields a
/// verdict and no secret is read.
pub fn prepare_mcp<'p>(
    policy: &'p Policy,
    keys: &KeyRing,
    req: &McpRequest<'_>,
    now: u64,
    audit: &mut AuditRecord,
    secret: impl FnOnce(&str) -> Option<Rc<PreparedCredential>>,
) -> Result<McpPrepared<'p>, Error> {
    // parse
    audit.tool = Some(req.server.chars().take(64).collect());

    // authenticate
    let session = authenticate(policy, keys, req.headers, now, audit)?;
    let session_id = session.claims().sid.clone();

    // authorize: the server, then the message
    let (permit, granted) = authorize_mcp(policy, session, req.server, req.method)?;
    let gate = Gate::new(policy, permit.session(), Some(permit.tool()), permit.path().encoded());
    let Some(rules) = permit.tool().mcp.as_ref() else {
        return Err(Error::ToolNotAllowed { tool: req.server.to_string() });
    };
    let verdict = match req.body {
        Some(body) => {
            // A charset the origin would honour and serde would not
            // (utf-7, latin1) means the sandbox meant other text.
            mcp::check_content_type(header(req.headers, "content-type")).map_err(Error::McpInvalid)?;
            let verdict = mcp::inspect(body, rules, granted).map_err(Error::McpInvalid)?;
            let call = verdict.call();
            audit.mcp_method = call.method.clone();
            audit.mcp_target = call.target.clone();
            audit.mcp_args = (!call.arg_names.is_empty()).then(|| call.arg_names.clone());
            if matches!(verdict, mcp::Verdict::Refuse { .. }) {
                // Nothing is built for a refused message.
                return Ok(McpPrepared { outbound: Outbound { gate, ..Outbound::none() }, verdict: Some(verdict), rules, granted, session_id });
            }
            Some(verdict)
        }
        None => None,
    };

    // The origin's MCP session id, only if it was bound to this session.
    // The canonical body goes out as plain UTF-8 JSON: the sandbox's own
    // Content-Type (and any encoding) described other bytes.
    let replaced = |n: &str| {
        n.eq_ignore_ascii_case("mcp-session-id") || (req.body.is_some() && (n.eq_ignore_ascii_case("content-type") || n.eq_ignore_ascii_case("content-encoding")))
    };
    let mut headers: Vec<(String, String)> = req.headers.iter().filter(|(n, _)| !replaced(n)).cloned().collect();
    if req.body.is_some() {
        headers.push(("content-type".into(), mcp::CANONICAL_CONTENT_TYPE.into()));
    }
    if let Some(presented) = header(req.headers, "mcp-session-id") {
        let origin_sid = mcp::unbind_session_id(presented, &session_id, keys).ok_or(Error::McpSessionInvalid)?;
        headers.push(("mcp-session-id".into(), origin_sid));
    }

    // inject
    let credential = match &permit.tool().credential {
        Some(c) => Some(secret(&c.secret).ok_or_else(|| Error::Misconfigured(format!("secret {} is not set", c.secret)))?),
        None => None,
    };
    let outbound = inject(permit, &headers, None, credential.as_deref())?;
    Ok(McpPrepared { outbound: Outbound { gate, ..outbound }, verdict, rules, granted, session_id })
}

/// A tool request as plain data.
pub struct ToolRequest<'a> {
    pub tool: &'a str,
    /// Raw path after `/t/{tool}`, still percent-encoded.
    pub rest: &'a str,
    pub method: &'a str,
    /// Raw query string, without `?`.
    pub query: Option<&'a str>,
    pub headers: &'a [(String, String)],
}

/// Parses a `Content-Length` value: digits only (Rust's parser would also
/// take a sign), no list of lengths.
pub fn parse_content_length(value: &str) -> Result<u64, Error> {
    let len = value.trim();
    let invalid = || Error::InvalidRequest("invalid Content-Length".into());
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
        return Err(invalid());
    }
    len.parse::<u64>().map_err(|_| invalid())
}

/// The declared body length, refused above `limit`.
fn declared_length(headers: &[(String, String)], limit: u64) -> Result<Option<u64>, Error> {
    let Some(len) = header(headers, "content-length") else {
        return Ok(None);
    };
    let declared = parse_content_length(len)?;
    if declared > limit {
        return Err(Error::BodyTooLarge { limit, declared: Some(declared) });
    }
    Ok(Some(declared))
}

/// A request header's value by case-insensitive name.
pub(crate) fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Runs the deciding phases. `secret` reads a platform secret by name (and
/// may serve it from a cache); it is called only after authorization
/// succeeded.
pub fn prepare(
    policy: &Policy,
    keys: &KeyRing,
    req: &ToolRequest<'_>,
    now: u64,
    audit: &mut AuditRecord,
    secret: impl FnOnce(&str) -> Option<Rc<PreparedCredential>>,
) -> Result<Outbound, Error> {
    // parse
    audit.tool = Some(req.tool.chars().take(64).collect());
    let path = path::normalize(req.rest).map_err(Error::InvalidPath)?;
    audit.path = Some(path.encoded());

    // authenticate
    let session = authenticate(policy, keys, req.headers, now, audit)?;

    // authorize (the method-override parameters of the query included)
    let permit = authorize_request(policy, session, req.tool, req.method, path, req.query)?;
    audit.rule = permit.rule().map(|r| r.path.as_str().to_string());
    if permit.path().has_params() && !permit.tool().allow_path_params {
        return Err(Error::InvalidPath(PathError::PathParameter));
    }
    let limit = policy.limits.max_request_body_bytes;
    let declared_length = declared_length(req.headers, limit)?;

    // inject
    let credential = match &permit.tool().credential {
        Some(c) => Some(secret(&c.secret).ok_or_else(|| Error::Misconfigured(format!("secret {} is not set", c.secret)))?),
        None => None,
    };
    let mut gate = Gate::new(policy, permit.session(), Some(permit.tool()), permit.path().encoded());
    gate.level = permit.rule().map(|r| r.level);
    gate.approval = permit.approval();
    let outbound = inject(permit, req.headers, req.query, credential.as_deref())?;
    Ok(Outbound { declared_length, body_limit: limit, gate, ..outbound })
}

/// The deciding phases of an egress request. `own_host` is the worker's own
/// hostname, which is never a destination.
pub fn prepare_egress(
    policy: &Policy,
    keys: &KeyRing,
    req: &EgressRequest<'_>,
    now: u64,
    audit: &mut AuditRecord,
    own_host: Option<&str>,
) -> Result<Outbound, Error> {
    // parse: malformed hosts are refused here; a well-formed host in a
    // never-reachable class (an IP literal) is refused after authentication,
    // so the denial is attributed to its session in the audit record.
    let parsed = egress::parse_authority(req.authority);
    if let Err(e) = &parsed {
        if !e.is_forbidden_class() {
            return Err(e.clone().into_error(req.authority));
        }
    }
    let path = path::normalize(req.rest).map_err(Error::InvalidPath)?;
    if path.has_params() {
        return Err(Error::InvalidPath(PathError::PathParameter));
    }
    audit.path = Some(path.encoded());

    // authenticate
    let session = authenticate(policy, keys, req.headers, now, audit)?;
    let dest = parsed.map_err(|e| e.into_error(req.authority))?;
    audit.host = Some(dest.host.clone());

    // authorize
    let method = Method::parse(req.method).ok_or_else(|| Error::RouteNotAllowed { tool: "egress".into(), method: req.method.to_string() })?;
    let gate = Gate::new(policy, &session, None, path.encoded());
    let permit = egress::authorize(&policy.egress, session, &dest, own_host)?;
    let limit = policy.limits.max_request_body_bytes;
    let declared_length = declared_length(req.headers, limit)?;

    // inject (nothing: egress is credential-free)
    let outbound = inject::egress_outbound(permit, method, &path, req.headers, req.query);
    Ok(Outbound { declared_length, body_limit: limit, gate, ..outbound })
}

fn authenticate(policy: &Policy, keys: &KeyRing, headers: &[(String, String)], now: u64, audit: &mut AuditRecord) -> Result<VerifiedSession, Error> {
    let presented = token::presented(header(headers, "authorization")).ok_or(Error::InvalidSession(TokenError::Missing))?;
    let session = token::verify(&presented, keys, &policy.audience, now).map_err(Error::InvalidSession)?;
    audit.session_id = Some(session.claims().sid.clone());
    audit.agent = Some(session.claims().agt.clone());
    audit.user = Some(session.claims().usr.clone());
    Ok(session)
}
