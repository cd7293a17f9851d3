//! The policy's AWS credential (`"kind": "aws_sigv4"`): the names of the
//! secrets that hold the real key, and the region and service it signs for.
//!
//! ```json
//! "credential": {"kind": "aws_sigv4", "access_key_id_secret": "AWS_ACCESS_KEY_ID",
//!   "secret_access_key_secret": "AWS_SECRET_ACCESS_KEY", "session_token_secret": "AWS_SESSION_TOKEN",
//!   "region": "us-east-1", "service": "s3"}
//! ```

use super::{err, is_binding_name, AwsSigV4, Credential, Placement, PolicyError, TokenSlots};
use crate::json::Obj;

/// Where the sandbox's AWS SDK puts its session token
/// (`aws_session_token`): the session token travels there.
pub const SESSION_TOKEN_HEADER: &str = "x-amz-security-token";

fn is_scope_part(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

/// Reads an `aws_sigv4` credential (its `kind` already read).
pub(super) fn read(mut c: Obj<'_>) -> Result<Credential, PolicyError> {
    let secret = |c: &mut Obj<'_>, key: &'static str, required: bool| -> Result<Option<String>, PolicyError> {
        match c.str(key)? {
            Some(name) if is_binding_name(name) => Ok(Some(name.to_string())),
            Some(_) => Err(err(c.field(key), "must be a secret binding name ([A-Za-z_][A-Za-z0-9_]*)")),
            None if required => Err(err(c.field(key), "is required")),
            None => Ok(None),
        }
    };
    let access_key_id_secret = secret(&mut c, "access_key_id_secret", true)?.unwrap_or_default();
    let secret_access_key = secret(&mut c, "secret_access_key_secret", true)?.unwrap_or_default();
    let session_token_secret = secret(&mut c, "session_token_secret", false)?;
    let mut scope = |key: &'static str| -> Result<String, PolicyError> {
        let value = c.required_str(key)?;
        if !is_scope_part(value) {
            return Err(err(c.field(key), "must be 1-64 of [a-z0-9-] (us-east-1, s3)"));
        }
        Ok(value.to_string())
    };
    let (region, service) = (scope("region")?, scope("service")?);
    c.done()?;
    Ok(Credential {
        secret: secret_access_key,
        placement: Placement::AwsSigV4(AwsSigV4 { access_key_id_secret, session_token_secret, region, service }),
        upstream: None,
    })
}

/// An AWS tool's SDK sends the session token as its session token. (An
/// `mcp` section next to an AWS credential fails closed at its first
/// request, `500 misconfigured`: MCP injection refuses a SigV4 placement.)
pub(super) fn check_tool(slots: &mut TokenSlots) {
    if !slots.headers.iter().any(|h| h == SESSION_TOKEN_HEADER) {
        slots.headers.push(SESSION_TOKEN_HEADER.to_string());
    }
}
