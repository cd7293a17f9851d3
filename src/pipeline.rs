//! The pipeline's deciding phases, in order, as one pure function:
//! parse → authenticate → authorize → inject.
//!
//! Invariant: [`prepare`] returns an [`Outbound`] only when every phase
//! passed; on any refusal nothing is built, no secret is read, and the
//! audit record says which phase refused and why. The edge adds only I/O:
//! forward, filter response, write the audit line.

use crate::audit::AuditRecord;
use crate::authorize::authorize;
use crate::error::Error;
use crate::inject::{inject, Outbound};
use crate::path;
use crate::policy::Policy;
use crate::secret::Secret;
use crate::token::{self, bearer, KeyRing, TokenError};

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

fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}

/// Runs the deciding phases. `secret` reads a platform secret by name; it is
/// called only after authorization succeeded.
pub fn prepare(
    policy: &Policy,
    keys: &KeyRing,
    req: &ToolRequest<'_>,
    now: u64,
    audit: &mut AuditRecord,
    secret: impl FnOnce(&str) -> Option<Secret>,
) -> Result<Outbound, Error> {
    // parse
    audit.tool = Some(req.tool.chars().take(64).collect());
    let path = path::normalize(req.rest).map_err(Error::InvalidPath)?;
    audit.path = Some(path.encoded());

    // authenticate
    let presented = bearer(header(req.headers, "authorization")).ok_or(Error::InvalidSession(TokenError::Missing))?;
    let session = token::verify(presented, keys, &policy.audience, now).map_err(Error::InvalidSession)?;
    audit.session_id = Some(session.claims().sid.clone());
    audit.agent = Some(session.claims().agt.clone());
    audit.user = Some(session.claims().usr.clone());

    // authorize
    let permit = authorize(policy, session, req.tool, req.method, path)?;
    audit.rule = Some(permit.rule().path.as_str().to_string());
    let limit = policy.limits.max_request_body_bytes;
    let declared_length = match header(req.headers, "content-length") {
        Some(len) => {
            let declared = len.trim().parse::<u64>().map_err(|_| Error::InvalidRequest("invalid Content-Length".into()))?;
            if declared > limit {
                return Err(Error::BodyTooLarge { limit, declared: Some(declared) });
            }
            Some(declared)
        }
        None => None,
    };

    // inject
    let credential = match &permit.tool().credential {
        Some(c) => Some(secret(&c.secret).ok_or_else(|| Error::Misconfigured(format!("secret {} is not set", c.secret)))?),
        None => None,
    };
    let outbound = inject(permit, req.headers, req.query, credential.as_ref())?;
    Ok(Outbound { declared_length, body_limit: limit, ..outbound })
}
