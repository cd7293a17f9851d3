//! Authenticate: the session token, wherever the sandbox's client put it,
//! verified (MAC first, in constant time, then claims).
//!
//! Invariant: a [`VerifiedSession`] exists only for a token that passed
//! every check; every failure is the same `invalid_session` on the wire,
//! with the reason in the audit record.

use crate::audit::AuditRecord;
use crate::error::Error;
use crate::policy::Policy;
use crate::request::header;
use crate::token::{self, KeyRing, TokenError, VerifiedSession};

/// Verifies the session token of a request and names its session, agent
/// and user in the audit record.
pub fn authenticate(policy: &Policy, keys: &KeyRing, headers: &[(String, String)], now: u64, audit: &mut AuditRecord) -> Result<VerifiedSession, Error> {
    let presented = token::presented(header(headers, "authorization")).ok_or(Error::InvalidSession(TokenError::Missing))?;
    let session = token::verify(&presented, keys, &policy.audience, now).map_err(Error::InvalidSession)?;
    audit.session_id = Some(session.claims().sid.clone());
    audit.agent = Some(session.claims().agt.clone());
    audit.user = Some(session.claims().usr.clone());
    Ok(session)
}
