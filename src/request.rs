//! Parse: the platform request as plain data, checked for size once.
//!
//! Invariant: nothing here decides on a session or a policy rule; it only
//! turns what arrived into typed values (or refuses what is too large or
//! malformed to be read one way), so the later phases never see raw bytes
//! another parser could read differently.

use crate::error::Error;

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
    /// [`crate::mcp::MAX_MESSAGE`] bytes).
    pub body: Option<&'a [u8]>,
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
pub(crate) fn declared_length(headers: &[(String, String)], limit: u64) -> Result<Option<u64>, Error> {
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
pub fn header<'h>(headers: &'h [(String, String)], name: &str) -> Option<&'h str> {
    headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
}
