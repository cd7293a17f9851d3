//! Inject for AWS tools (`"kind": "aws_sigv4"`): the sandbox's SigV4
//! signature is verified with keys derived from its session, then the
//! request Airlock forwards is signed with the real key.
//!
//! Invariants:
//! - The sandbox never holds the real key. At mint it gets an access key
//!   id and a secret access key derived from the session and the tool
//!   ([`session_keys`]); Airlock derives them again from the token's claims,
//!   so nothing is stored, and they work only through Airlock, for that
//!   session and tool.
//! - The sandbox's signature is verified in constant time, before
//!   admission, over exactly what the sandbox sent: its path and query
//!   (as its SDK signed them, under `/t/{tool}`), its signed headers and
//!   its body (the hash it signed is checked against the body). A
//!   presigned URL, an `aws-chunked` body, another session's or the real
//!   key id, another region, service or day, or a time more than 15
//!   minutes off is refused. Nothing is forwarded for a refused request.
//! - Airlock signs only its own rendering: the origin's host, the path
//!   and query it forwards (re-encoded canonically), the headers it
//!   forwards and the payload hash it verified. The sandbox's
//!   `Authorization`, `X-Amz-Security-Token` and `X-Amz-Date` never reach
//!   the origin.
//! - The real access key id, secret access key and session token are
//!   scrubbed from the answer.

use std::rc::Rc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use subtle::ConstantTimeEq;

use super::{forwardable_headers, header_value_ok, response_rules, Outbound, PreparedCredential, ACCEPT_ENCODING, RANGE_HEADERS};
use crate::admit::Admitted;
use crate::authorize::Authorized;
use crate::error::{Error, SigV4Error};
use crate::hex::hex;
use crate::policy::{is_token_header, AwsSigV4, Tool};
use crate::request::{header, ToolRequest};
use crate::secret::Secret;
use crate::sigv4;
use crate::token::KeyRing;

/// Derived access key ids start with this, so they are told apart from
/// real ones (`AKIA…`, `ASIA…`) at a glance.
pub const ACCESS_KEY_PREFIX: &str = "AIRL";
/// How far `X-Amz-Date` may be from Airlock's clock, either way (AWS's own window).
pub const MAX_SKEW_SECS: u64 = 15 * 60;

/// The AWS keys of a session for one tool, handed out at mint.
pub struct SessionKeys {
    pub access_key_id: String,
    pub secret_access_key: Secret,
}

/// Derives a session's AWS keys for `tool` with the signing key `kid`: a
/// 20-character access key id (`AIRL` and 16 hex digits) and a
/// 40-character secret, each a labelled MAC over the session id and the
/// tool name.
pub fn session_keys(keys: &KeyRing, kid: &str, sid: &str, tool: &str) -> Option<SessionKeys> {
    let parts: [&[u8]; 2] = [sid.as_bytes(), tool.as_bytes()];
    let id = keys.derive(kid, "airlock-aws-access-key-id-v1", &parts)?;
    let secret = keys.derive(kid, "airlock-aws-secret-access-key-v1", &parts)?;
    let mut access_key_id = ACCESS_KEY_PREFIX.to_string();
    access_key_id.push_str(&hex(id.get(..8)?).to_ascii_uppercase());
    Some(SessionKeys { access_key_id, secret_access_key: Secret::new(STANDARD.encode(secret.get(..30)?)) })
}

fn invalid(why: &'static str) -> Error {
    Error::SigV4(SigV4Error::Invalid(why))
}

/// What the sandbox signed as its payload hash.
enum Payload {
    /// `UNSIGNED-PAYLOAD`: the body streams, unhashed.
    Unsigned,
    /// A SHA-256 in `x-amz-content-sha256`, checked against the body.
    Declared(String),
    /// No `x-amz-content-sha256`: the signature covers the body's hash.
    Body,
}

/// An AWS tool's request whose signature headers checked out; the
/// signature itself is verified once the body is known ([`Presented::verify`]).
pub struct Presented {
    /// The canonical request up to (without) the payload hash, for each
    /// spelling of the path that verifies.
    canonical: Vec<String>,
    amz_date: String,
    scope: String,
    signing_key: [u8; 32],
    signature: [u8; 32],
    payload: Payload,
    /// Signed `x-amz-*` and `content-md5` headers of the sandbox's request,
    /// forwarded (and signed again) as part of the request it made.
    forward: Vec<(String, String)>,
}

/// Request headers of the sandbox's signature, replaced by Airlock's own.
const SIGNATURE_HEADERS: &[&str] = &["x-amz-date", "x-amz-security-token", "x-amz-content-sha256"];

/// The signature checks that need no body, for an AWS tool's request
/// (`None` for any other tool). `now` is unix seconds.
pub fn presented(authorized: &Authorized<'_>, req: &ToolRequest<'_>, keys: &KeyRing, now: u64) -> Result<Option<Presented>, Error> {
    let permit = &authorized.permit;
    let tool = permit.tool();
    let Some(aws) = tool.aws() else { return Ok(None) };
    // Presigned URLs were refused by `authorize::tool`.
    let query = req.query.unwrap_or_default();
    // Chunk signatures would go to the origin unverified, and chunk
    // framing is another body than the one Airlock hashed.
    let content_sha = header(req.headers, "x-amz-content-sha256");
    let chunked = header(req.headers, "content-encoding").is_some_and(|v| v.split(',').any(|c| c.trim().eq_ignore_ascii_case("aws-chunked")));
    if chunked || content_sha.is_some_and(|v| v.starts_with("STREAMING-")) || header(req.headers, "x-amz-decoded-content-length").is_some() {
        return Err(Error::SigV4(SigV4Error::Streaming));
    }
    let mut authorization = None;
    for (name, value) in req.headers {
        if name.eq_ignore_ascii_case("authorization") && authorization.replace(value).is_some() {
            return Err(invalid("Authorization repeated"));
        }
    }
    let auth = authorization.and_then(|v| sigv4::parse_authorization(v)).ok_or_else(|| invalid("Authorization missing or malformed"))?;
    let amz_date = header(req.headers, "x-amz-date").unwrap_or_default();
    // A captured request replays for at most this long, as at AWS.
    let window = sigv4::format_amz_date(now.saturating_sub(MAX_SKEW_SECS))..=sigv4::format_amz_date(now + MAX_SKEW_SECS);
    if !sigv4::is_amz_date(amz_date) || !window.contains(&amz_date.to_string()) {
        return Err(invalid("X-Amz-Date missing or 15+ minutes off"));
    }
    if auth.date != amz_date.get(..8).unwrap_or_default() || auth.region != aws.region || auth.service != aws.service {
        return Err(invalid("scope not the tool's"));
    }
    for required in ["host", "x-amz-date"] {
        if !auth.signed_headers.contains(&required) {
            return Err(invalid("host or x-amz-date unsigned"));
        }
    }
    let session = permit.session();
    let derived = session_keys(keys, session.kid(), &session.claims().sid, &tool.name).ok_or_else(|| Error::Internal("signing key missing".into()))?;
    // Another session's key id, or the real one, never matches.
    if !bool::from(auth.access_key_id.as_bytes().ct_eq(derived.access_key_id.as_bytes())) {
        return Err(invalid("key id not the session's"));
    }
    let payload = match content_sha {
        None => Payload::Body,
        Some(sigv4::UNSIGNED_PAYLOAD) => Payload::Unsigned,
        Some(h) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) => Payload::Declared(h.to_string()),
        Some(_) => return Err(invalid("malformed x-amz-content-sha256")),
    };
    // The path as the sandbox's SDK signed it: under Airlock's tool route.
    // The route reads `/t/{tool}` as `/t/{tool}/` (an SDK whose endpoint is
    // the tool URL sends the former for the service root), so both
    // spellings of the root verify; they are one request to the origin.
    let mut canonical = Vec::with_capacity(2);
    let root = format!("/t/{}", req.tool);
    let mut paths = vec![format!("{root}{}", req.rest)];
    if req.rest == "/" {
        paths.push(root);
    }
    for wire_path in &paths {
        let uri = sigv4::canonical_uri(wire_path, aws.is_s3());
        let c = sigv4::canonical_request(req.method, &uri, &sigv4::canonical_query(query), req.headers, &auth.signed_headers, "")
            .ok_or_else(|| invalid("signed header missing"))?;
        canonical.push(c);
    }
    let signing_key = sigv4::signing_key(derived.secret_access_key.expose(), auth.date, &aws.region, &aws.service)
        .ok_or_else(|| Error::Internal("HMAC refused a key".into()))?;
    let mut forward = Vec::new();
    for name in &auth.signed_headers {
        if (name.starts_with("x-amz-") && !SIGNATURE_HEADERS.contains(name)) || *name == "content-md5" {
            let mut value = String::new();
            for (n, v) in req.headers {
                if n.eq_ignore_ascii_case(name) {
                    if !value.is_empty() {
                        value.push(',');
                    }
                    value.push_str(v.trim());
                }
            }
            forward.push((name.to_string(), value));
        }
    }
    Ok(Some(Presented { canonical, amz_date: amz_date.to_string(), scope: auth.scope(), signing_key, signature: auth.signature, payload, forward }))
}

/// A sandbox's SigV4 request that verified.
pub struct Verified {
    /// The payload hash Airlock signs: the verified SHA-256, or `UNSIGNED-PAYLOAD`.
    payload_hash: String,
    /// Whether the sandbox sent `x-amz-content-sha256` (then so does Airlock).
    declared: bool,
    forward: Vec<(String, String)>,
}

impl Presented {
    /// Whether the body must be read (and hashed) before [`Presented::verify`].
    pub fn needs_body(&self) -> bool {
        !matches!(self.payload, Payload::Unsigned)
    }

    /// Verifies the signature; `body` is the whole body when
    /// [`Presented::needs_body`].
    pub fn verify(self, body: Option<&[u8]>) -> Result<Verified, Error> {
        let unread = || Error::Internal("body not read".into());
        let (payload_hash, declared) = match self.payload {
            Payload::Unsigned => (sigv4::UNSIGNED_PAYLOAD.to_string(), true),
            Payload::Declared(declared) => {
                let actual = sigv4::sha256_hex(body.ok_or_else(unread)?);
                if !bool::from(actual.as_bytes().ct_eq(declared.as_bytes())) {
                    return Err(Error::SigV4(SigV4Error::PayloadMismatch));
                }
                (actual, true)
            }
            Payload::Body => (sigv4::sha256_hex(body.ok_or_else(unread)?), false),
        };
        let verifies = |mut canonical: String| {
            canonical.push_str(&payload_hash);
            let expected = sigv4::signature(&self.signing_key, &sigv4::string_to_sign(&self.amz_date, &self.scope, &canonical));
            expected.is_some_and(|e| sigv4::signature_matches(&e, &self.signature))
        };
        if !self.canonical.into_iter().any(verifies) {
            return Err(invalid("signature does not verify"));
        }
        Ok(Verified { payload_hash, declared, forward: self.forward })
    }
}

/// The real key of an AWS tool, read from the platform secrets (with the
/// spellings the response filter scrubs).
pub struct RealKey {
    pub access_key_id: Rc<PreparedCredential>,
    pub secret_access_key: Rc<PreparedCredential>,
    pub session_token: Option<Rc<PreparedCredential>>,
}

/// Reads the real key of `aws` (secret access key in `secret_name`)
/// through `secret`, only now that the request was verified and admitted.
fn read_key(aws: &AwsSigV4, secret_name: &str, secret: impl Fn(&str) -> Option<Rc<PreparedCredential>>) -> Result<RealKey, Error> {
    let read = |name: &str| -> Result<Rc<PreparedCredential>, Error> {
        match secret(name) {
            Some(value) if !value.value().is_empty() && header_value_ok(value.value().expose()) => Ok(value),
            _ => Err(Error::Misconfigured(format!("secret {name} is not set, empty or not a header value"))),
        }
    };
    Ok(RealKey {
        access_key_id: read(&aws.access_key_id_secret)?,
        secret_access_key: read(secret_name)?,
        session_token: aws.session_token_secret.as_deref().map(read).transpose()?,
    })
}

fn text(value: &Secret) -> String {
    String::from_utf8_lossy(value.expose()).into_owned()
}

/// Inject for an AWS tool: the verified request, rendered by Airlock for
/// the tool's origin and signed with the real key at `now` (unix seconds).
pub fn tool(
    authorized: Authorized<'_>,
    _admitted: &Admitted,
    req: &ToolRequest<'_>,
    verified: Verified,
    secret: impl Fn(&str) -> Option<Rc<PreparedCredential>>,
    now: u64,
) -> Result<Outbound, Error> {
    let permit = &authorized.permit;
    let tool: &Tool = permit.tool();
    let (Some(aws), Some(credential)) = (tool.aws(), tool.credential.as_ref()) else {
        return Err(Error::Internal("no AWS credential".into()));
    };
    let key = read_key(aws, &credential.secret, secret)?;

    // Path and query in SigV4's own encoding, so that what is sent is
    // exactly what is signed, whatever parser the origin has.
    let mut path = tool.origin.base_path.clone();
    for segment in permit.path().segments() {
        path.push('/');
        sigv4::uri_encode(segment.as_bytes(), false, &mut path);
    }
    if permit.path().encoded().ends_with('/') {
        path.push('/');
    }
    let query = sigv4::canonical_query(&authorized.gate.query);
    let mut url = format!("{}{path}", tool.origin.base);
    if !query.is_empty() {
        url.push('?');
        url.push_str(&query);
    }

    let mut headers = Vec::new();
    for (n, v) in forwardable_headers(req.headers, &tool.forward_headers) {
        if !is_token_header(&n, Some(&tool.session_token)) && n != "accept-encoding" && (tool.allow_range || !RANGE_HEADERS.contains(&n.as_str())) {
            headers.push((n, v));
        }
    }
    headers.push(("accept-encoding".into(), ACCEPT_ENCODING.into()));
    for header in verified.forward {
        headers.push(header);
    }
    let amz_date = sigv4::format_amz_date(now);
    headers.push(("x-amz-date".into(), amz_date.clone()));
    if aws.is_s3() || verified.declared {
        headers.push(("x-amz-content-sha256".into(), verified.payload_hash.clone()));
    }
    if let Some(token) = &key.session_token {
        headers.push(("x-amz-security-token".into(), text(token.value())));
    }
    // Signed: the host, every x-amz-* header and the content headers the
    // runtime leaves as they are.
    let host = tool.origin.base.split_once("://").map_or(tool.origin.base.as_str(), |(_, h)| h).to_string();
    headers.push(("host".into(), host));
    let mut names: Vec<Vec<u8>> = Vec::new();
    for (n, _) in &headers {
        if n.starts_with("x-amz-") || n == "host" || n == "content-type" || n == "content-md5" {
            names.push(n.as_bytes().to_vec());
        }
    }
    // Sorted and without duplicates, as SigV4 lists them.
    names.sort();
    names.dedup();
    let mut signed: Vec<&str> = Vec::new();
    for n in &names {
        signed.push(std::str::from_utf8(n).unwrap_or_default());
    }
    let canonical =
        sigv4::canonical_request(permit.method().as_str(), &sigv4::canonical_uri(&path, aws.is_s3()), &query, &headers, &signed, &verified.payload_hash)
            .ok_or_else(|| Error::Internal("signed header missing".into()))?;
    let date = amz_date.get(..8).unwrap_or_default();
    let scope = sigv4::scope(date, &aws.region, &aws.service);
    let signature = sigv4::signing_key(key.secret_access_key.value().expose(), date, &aws.region, &aws.service)
        .and_then(|k| sigv4::signature(&k, &sigv4::string_to_sign(&amz_date, &scope, &canonical)))
        .ok_or_else(|| Error::Internal("HMAC refused a key".into()))?;
    // Signed, but not sent as a header: the runtime sets Host from the URL.
    headers.pop();
    let access_key_id = text(key.access_key_id.value());
    headers.push(("authorization".into(), sigv4::authorization(&access_key_id, &scope, &signed, &signature)));

    // The real key's parts in every spelling. The signature is not among
    // them: replaying this request at AWS needs the key id and session
    // token, which are. The filter is built once per key (memoized on the
    // secret key's credential, keyed by the other two parts, so a rotation
    // of either builds a new one).
    let mut redactions: Vec<Rc<Secret>> = Vec::new();
    let mut memo_key = key.access_key_id.value().expose().to_vec();
    for part in [Some(&key.access_key_id), Some(&key.secret_access_key), key.session_token.as_ref()].into_iter().flatten() {
        for encoding in &part.encodings {
            redactions.push(encoding.clone());
        }
    }
    if let Some(token) = &key.session_token {
        memo_key.push(b'\n');
        memo_key.extend_from_slice(token.value().expose());
    }
    let filter = key.secret_access_key.filter(&memo_key, &redactions);
    Ok(Outbound {
        method: permit.method(),
        target: tool.origin.target.clone(),
        url,
        headers,
        redactions,
        filter,
        declared_length: authorized.declared_length,
        body_limit: authorized.body_limit,
        timeout_ms: tool.timeout_ms,
        idle_timeout_ms: tool.idle_timeout_ms,
        response: response_rules(tool),
    })
}
