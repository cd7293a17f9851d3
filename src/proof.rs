//! Request proofs: proof of possession of the per-session proof key.
//!
//! A proof binds one request — method, raw path and query, body digest —
//! to a timestamp and a random nonce under an HMAC with the session's proof
//! key, which Airlock derives from its signing key and never stores.
//!
//! Invariants:
//! - The MAC is compared in constant time before the timestamp is trusted.
//! - A proof that verifies says nothing about replay: the nonce must still
//!   be accepted once by the session's state ([`crate::state`]).
//! - Errors carry no key material and no part of the presented MAC.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

/// The request header carrying a proof.
pub const HEADER: &str = "x-airlock-proof";
/// Most seconds a policy may allow between a proof's timestamp and now.
pub const MAX_WINDOW_SECS: u64 = crate::state::nonces::WINDOW_SECS;

pub use crate::error::ProofError;

/// A proof whose MAC checked out and whose timestamp is within the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub ts: u64,
    /// SHA-256 of the nonce: all that is ever stored of it.
    pub nonce_digest: [u8; 32],
}

/// What a proof covers, as Airlock received it.
pub struct Signed<'a> {
    pub session_id: &'a str,
    pub method: &'a str,
    /// The raw request path, still percent-encoded.
    pub path: &'a str,
    /// The raw query, without `?`; empty when there is none.
    pub query: &'a str,
    /// Lower-case hex SHA-256 of the request body.
    pub body_sha256: &'a str,
}

/// The exact string a proof's MAC covers.
pub fn signed_string(req: &Signed<'_>, ts: u64, nonce: &str) -> String {
    format!("airlock-proof-v1\n{}\n{}\n{}\n{}\n{}\n{ts}\n{nonce}", req.session_id, req.method, req.path, req.query, req.body_sha256)
}

/// Lower-case hex SHA-256 of `body`.
pub fn body_sha256(body: &[u8]) -> String {
    crate::hex::hex(&Sha256::digest(body))
}

fn nonce_ok(nonce: &str) -> bool {
    (16..=64).contains(&nonce.len()) && nonce.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Parses `v1;ts=<unix s>;nonce=<nonce>;sig=<base64url>`.
fn parse(header: &str) -> Option<(u64, &str, [u8; 32])> {
    let mut parts = header.split(';');
    if parts.next()? != "v1" {
        return None;
    }
    let ts = parts.next()?.strip_prefix("ts=")?;
    let nonce = parts.next()?.strip_prefix("nonce=")?;
    let sig = parts.next()?.strip_prefix("sig=")?;
    if parts.next().is_some() || ts.is_empty() || ts.len() > 12 || !ts.bytes().all(|b| b.is_ascii_digit()) || !nonce_ok(nonce) {
        return None;
    }
    let mut mac = [0u8; 32];
    if sig.len() != 43 || URL_SAFE_NO_PAD.decode_slice(sig, &mut mac).ok()? != 32 {
        return None;
    }
    Some((ts.parse().ok()?, nonce, mac))
}

/// Checks a presented proof against the request, the session's proof key
/// and the clock. `window` is the policy's allowed distance from `now`.
pub fn verify(header: Option<&str>, req: &Signed<'_>, key: &[u8; 32], now: u64, window: u64) -> Result<Verified, ProofError> {
    let header = header.ok_or(ProofError::Missing)?;
    let (ts, nonce, presented) = parse(header).ok_or(ProofError::Invalid)?;
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else {
        return Err(ProofError::Invalid);
    };
    mac.update(signed_string(req, ts, nonce).as_bytes());
    // verify_slice compares in constant time.
    mac.verify_slice(&presented).map_err(|_| ProofError::Invalid)?;
    if ts.abs_diff(now) > window.min(MAX_WINDOW_SECS) {
        return Err(ProofError::Stale);
    }
    Ok(Verified { ts, nonce_digest: Sha256::digest(nonce.as_bytes()).into() })
}

/// Builds a proof header (for tests and the CLI's examples).
pub fn sign(req: &Signed<'_>, key: &[u8; 32], ts: u64, nonce: &str) -> String {
    let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(key) else {
        return String::new();
    };
    mac.update(signed_string(req, ts, nonce).as_bytes());
    format!("v1;ts={ts};nonce={nonce};sig={}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 32] = [7u8; 32];

    fn req(body: &str) -> (String, Signed<'static>) {
        let hash = body_sha256(body.as_bytes());
        let hash: &'static str = Box::leak(hash.into_boxed_str());
        (hash.to_string(), Signed { session_id: "s1", method: "POST", path: "/t/echo/items/1", query: "a=1", body_sha256: hash })
    }

    #[test]
    fn a_signed_request_verifies_within_the_window() {
        let (_, r) = req("{}");
        let h = sign(&r, &KEY, 1_000, "nonce-0123456789ab");
        let v = verify(Some(&h), &r, &KEY, 1_030, 60).expect("valid");
        assert_eq!(v.ts, 1_000);
        assert_eq!(v.nonce_digest, <[u8; 32]>::from(Sha256::digest(b"nonce-0123456789ab")));
    }

    #[test]
    fn every_bound_field_matters() {
        let (_, r) = req("{}");
        let h = sign(&r, &KEY, 1_000, "nonce-0123456789ab");
        let other_body = body_sha256(b"{\"amount\":1}");
        let variants = [
            Signed { session_id: "s2", ..r },
            Signed { method: "PUT", ..r },
            Signed { path: "/t/echo/items/2", ..r },
            Signed { query: "a=2", ..r },
            Signed { query: "", ..r },
            Signed { body_sha256: &other_body, ..r },
        ];
        for v in &variants {
            assert_eq!(verify(Some(&h), v, &KEY, 1_000, 60), Err(ProofError::Invalid));
        }
        assert_eq!(verify(Some(&h), &r, &[8u8; 32], 1_000, 60), Err(ProofError::Invalid), "another session's key");
    }

    #[test]
    fn malformed_headers_are_invalid_and_time_is_checked_after_the_mac() {
        let (_, r) = req("");
        let good = sign(&r, &KEY, 1_000, "nonce-0123456789ab");
        let table: &[(&str, ProofError)] = &[
            ("", ProofError::Invalid),
            ("v2;ts=1000;nonce=nonce-0123456789ab;sig=x", ProofError::Invalid),
            ("v1;ts=-1;nonce=nonce-0123456789ab;sig=x", ProofError::Invalid),
            ("v1;ts=1000;nonce=short;sig=x", ProofError::Invalid),
            ("v1;ts=1000;nonce=bad nonce with spaces!;sig=x", ProofError::Invalid),
            ("v1;nonce=nonce-0123456789ab;ts=1000;sig=x", ProofError::Invalid),
        ];
        for (h, want) in table {
            assert_eq!(verify(Some(h), &r, &KEY, 1_000, 60), Err(*want), "{h}");
        }
        assert_eq!(verify(None, &r, &KEY, 1_000, 60), Err(ProofError::Missing));
        assert_eq!(verify(Some(&format!("{good};x=1")), &r, &KEY, 1_000, 60), Err(ProofError::Invalid));
        assert_eq!(verify(Some(&good), &r, &KEY, 1_061, 60), Err(ProofError::Stale));
        assert_eq!(verify(Some(&good), &r, &KEY, 939, 60), Err(ProofError::Stale));
        assert!(verify(Some(&good), &r, &KEY, 1_060, 60).is_ok());
        // A forged proof with a fresh timestamp is invalid, not stale.
        let forged = good.replace("ts=1000", "ts=5000");
        assert_eq!(verify(Some(&forged), &r, &KEY, 5_000, 60), Err(ProofError::Invalid));
    }
}
