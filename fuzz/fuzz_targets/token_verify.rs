//! `airlock::token::verify` and `airlock::token::bearer` on arbitrary input.
//!
//! Properties (a panic is a finding):
//! - neither function panics;
//! - every `Ok` from `verify` carries claims with `aud == AUD`,
//!   `iat <= NOW + CLOCK_SKEW_SECS` and `NOW < exp + CLOCK_SKEW_SECS`, and
//!   the key id it was checked under;
//! - `bearer` only returns the non-empty, space- and comma-free rest of a
//!   `Bearer <token>` header (scheme case-insensitive).
//!
//! The input is used three ways:
//! 1. as the token string itself (shape, alphabet, key id and MAC checks);
//! 2. as an `Authorization` header value, through `bearer`, then `verify`;
//! 3. as the raw claims JSON of a token that this shim signs with the
//!    ring's key, so the fuzzer reaches the claims parser and the audience
//!    and time checks, which an unsigned mutation never gets past the MAC.
#![no_main]

use airlock::token::{self, KeyRing, CLOCK_SKEW_SECS};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use libfuzzer_sys::fuzz_target;
use sha2::Sha256;
use std::sync::OnceLock;

/// `k1` is base64 of `KEY`.
const RING: &str = "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const KEY: &[u8] = b"0123456789abcdef0123456789abcdef";
const AUD: &str = "aud";
/// Fixed clock; the seed tokens are valid at this instant.
const NOW: u64 = 1_700_000_100;

fn ring() -> &'static KeyRing {
    static RING_CELL: OnceLock<KeyRing> = OnceLock::new();
    RING_CELL.get_or_init(|| KeyRing::parse(RING).expect("fixed key ring parses"))
}

fn check(token: &str) {
    if let Ok(session) = token::verify(token, ring(), AUD, NOW) {
        let c = session.claims();
        assert_eq!(c.aud, AUD, "accepted a token for another audience: {token:?}");
        assert!(c.iat <= NOW + CLOCK_SKEW_SECS, "accepted a token issued in the future: iat={} {token:?}", c.iat);
        assert!(NOW < c.exp.saturating_add(CLOCK_SKEW_SECS), "accepted an expired token: exp={} {token:?}", c.exp);
        assert_eq!(session.kid(), "k1");
    }
}

/// Signs `claims_json` as-is under `k1`, the way `token::sign` would.
fn signed(claims_json: &[u8]) -> String {
    let mut token = format!("al1.k1.{}", URL_SAFE_NO_PAD.encode(claims_json));
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(KEY).expect("HMAC takes any key length");
    mac.update(token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()));
    token
}

fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        // 1. The input as a token.
        check(s);

        // 2. The input as an Authorization header.
        if let Some(t) = token::bearer(Some(s)) {
            let b = s.as_bytes();
            assert!(!t.is_empty() && !t.contains([' ', ',']), "bearer returned {t:?} for {s:?}");
            assert!(
                b.len() == 7 + t.len() && b[..6].eq_ignore_ascii_case(b"bearer") && b[6] == b' ' && s.ends_with(t),
                "bearer returned {t:?} for {s:?}"
            );
            check(t);
        }
    }
    // 3. The input as the claims of a correctly signed token.
    check(&signed(data));
});
