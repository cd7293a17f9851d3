//! Session tokens: mint and verify.
//!
//! Format (compact, URL-safe): `al1.<kid>.<claims>.<mac>` where `claims` is
//! the base64url (no padding) JSON of [`Claims`] and `mac` the base64url
//! HMAC-SHA256, under the key named `kid`, of the bytes `al1.<kid>.<claims>`.
//!
//! Invariants:
//! - The MAC is checked over the raw token bytes, in constant time, before a
//!   single claim is parsed: an attacker's JSON never reaches the parser
//!   unless it was signed by us.
//! - Every failure is a [`TokenError`], and all of them map to the same 401
//!   body; the variant exists for the audit record only.
//! - Time comes in as an argument; nothing here reads a clock.

use std::collections::BTreeMap;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use hmac::{Hmac, KeyInit, Mac};
use serde::Serialize;

use crate::json::{self, Obj};
use sha2::Sha256;

use crate::level::Level;
use crate::secret::Secret;

pub const VERSION: &str = "al1";
/// Longer tokens are refused before any work is done on them.
pub const MAX_TOKEN_LEN: usize = 4096;
/// Tolerated clock difference between the minting and the verifying isolate.
pub const CLOCK_SKEW_SECS: u64 = 30;
const MAC_LEN: usize = 32;
const MIN_KEY_LEN: usize = 32;
const MAX_KID_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;

pub use crate::error::TokenError;

/// What a session token asserts. Field names are short: they travel on
/// every request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Claims {
    /// Session id: 128 random bits, hex.
    pub sid: String,
    /// Agent the session was minted for.
    pub agt: String,
    /// Human user the agent acts for.
    pub usr: String,
    /// Per-tool scope: tool name -> highest level granted.
    pub scp: BTreeMap<String, Level>,
    /// Issued at, unix seconds.
    pub iat: u64,
    /// Expires at, unix seconds.
    pub exp: u64,
    /// Audience: the policy's `audience`, so a token minted for one
    /// deployment is refused by another that shares a key by mistake.
    pub aud: String,
    /// Whether the session may use the credential-free egress route.
    /// Omitted when false, so tokens without egress keep their old shape.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub egr: bool,
    /// Repositories per tool the session was minted for (a GitHub App
    /// credential is narrowed to them). Omitted when none were named.
    /// A JSON map of tool names to lists of `owner/name` (the request path
    /// already carries a JSON map's code; a map of lists would add its own).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub rps: serde_json::Map<String, serde_json::Value>,
}

impl Claims {
    /// Reads the claims JSON field by field (unknown fields refused), as
    /// the derived `Serialize` writes it: the derived `Deserialize` would
    /// cost the request-path Wasm more than this reader.
    fn read(json: &[u8]) -> Option<Claims> {
        let value: serde_json::Value = serde_json::from_slice(json).ok()?;
        let mut o = Obj::of(&value, String::new()).ok()?;
        let mut text = |name| o.required_str(name).ok().map(str::to_string);
        let (sid, agt, usr, aud) = (text("sid")?, text("agt")?, text("usr")?, text("aud")?);
        let mut scp = BTreeMap::new();
        let scope = o.obj("scp").ok()??;
        for (tool, level) in scope.map {
            scp.insert(tool.clone(), json::level(level, String::new()).ok()?);
        }
        let iat = o.u64("iat").ok()??;
        let exp = o.u64("exp").ok()??;
        let egr = o.flag("egr").ok()?;
        let rps = match o.obj("rps").ok()? {
            Some(repos) if repos.map.values().all(|l| l.as_array().is_some_and(|l| l.iter().all(serde_json::Value::is_string))) => repos.map.clone(),
            Some(_) => return None,
            None => serde_json::Map::new(),
        };
        o.done().ok()?;
        Some(Claims { sid, agt, usr, scp, iat, exp, aud, egr, rps })
    }
}

/// A token whose MAC and claims checked out. Only [`verify`] builds one.
#[derive(Debug, Clone)]
pub struct VerifiedSession {
    claims: Claims,
    kid: String,
}

impl VerifiedSession {
    pub fn claims(&self) -> &Claims {
        &self.claims
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Whether this session may use the egress route.
    pub fn egress(&self) -> bool {
        self.claims.egr
    }

    /// The level this session holds for `tool`, if the tool is in scope.
    pub fn level_for(&self, tool: &str) -> Option<Level> {
        self.claims.scp.get(tool).copied()
    }

    /// The repositories the session was minted for on `tool` (empty: none named).
    pub fn repos_for(&self, tool: &str) -> Vec<String> {
        let list = self.claims.rps.get(tool).and_then(serde_json::Value::as_array);
        list.map(|l| l.iter().filter_map(|r| r.as_str().map(str::to_string)).collect()).unwrap_or_default()
    }
}

/// One HMAC key with its id. The keyed HMAC state (the inner and outer
/// padded key blocks) is computed once, when the ring is parsed; each
/// signature starts from a copy of it.
pub struct SigningKey {
    kid: String,
    keyed: HmacSha256,
}

impl SigningKey {
    pub fn kid(&self) -> &str {
        &self.kid
    }
}

/// The signing keys of a deployment: the first signs, all verify, so keys
/// rotate with overlap.
pub struct KeyRing {
    keys: Vec<SigningKey>,
}

/// Why a key ring secret was refused. Carries no key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyRingError {
    Empty,
    /// Entry number (0-based) is not `kid:base64key`.
    MalformedEntry(usize),
    BadKid(usize),
    BadBase64(usize),
    KeyTooShort(usize),
    DuplicateKid(String),
}

impl std::fmt::Display for KeyRingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            KeyRingError::Empty => write!(f, "no signing key"),
            KeyRingError::MalformedEntry(i) => write!(f, "entry {i} is not kid:base64key"),
            KeyRingError::BadKid(i) => {
                write!(f, "entry {i}: key id must be 1-{MAX_KID_LEN} of [A-Za-z0-9_-]")
            }
            KeyRingError::BadBase64(i) => write!(f, "entry {i}: key is not standard base64"),
            KeyRingError::KeyTooShort(i) => {
                write!(f, "entry {i}: key shorter than {MIN_KEY_LEN} bytes")
            }
            KeyRingError::DuplicateKid(k) => write!(f, "key id {k:?} listed twice"),
        }
    }
}

fn valid_kid(kid: &str) -> bool {
    !kid.is_empty() && kid.len() <= MAX_KID_LEN && kid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl KeyRing {
    /// Parses `kid:base64key[,kid:base64key…]` (whitespace around entries is
    /// ignored). Keys are standard base64 and at least 32 bytes.
    pub fn parse(spec: &str) -> Result<KeyRing, KeyRingError> {
        let mut keys: Vec<SigningKey> = Vec::new();
        for (i, entry) in spec.split(',').map(str::trim).filter(|e| !e.is_empty()).enumerate() {
            let (kid, b64) = entry.split_once(':').ok_or(KeyRingError::MalformedEntry(i))?;
            let (kid, b64) = (kid.trim(), b64.trim());
            if !valid_kid(kid) {
                return Err(KeyRingError::BadKid(i));
            }
            let key = STANDARD.decode(b64).or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(b64)).map_err(|_| KeyRingError::BadBase64(i))?;
            if key.len() < MIN_KEY_LEN {
                return Err(KeyRingError::KeyTooShort(i));
            }
            if keys.iter().any(|k| k.kid == kid) {
                return Err(KeyRingError::DuplicateKid(kid.to_string()));
            }
            let key = Secret::new(key);
            let keyed = <HmacSha256 as KeyInit>::new_from_slice(key.expose()).map_err(|_| KeyRingError::KeyTooShort(i))?;
            keys.push(SigningKey { kid: kid.to_string(), keyed });
        }
        if keys.is_empty() {
            return Err(KeyRingError::Empty);
        }
        Ok(KeyRing { keys })
    }

    /// The key that signs new tokens: the first listed.
    pub fn signer(&self) -> &SigningKey {
        // `parse` refuses an empty ring, so index 0 exists.
        &self.keys[0]
    }

    pub fn kids(&self) -> impl Iterator<Item = &str> {
        self.keys.iter().map(|k| k.kid.as_str())
    }

    /// A MAC over `data` with the signing key, for values Airlock hands out
    /// and must recognize later (bound MCP session ids).
    pub fn tag(&self, data: &[u8]) -> [u8; 32] {
        mac_for(self.signer(), data).finalize().into_bytes().into()
    }

    /// Whether `tag` (a prefix of a MAC, at least 16 bytes) was made by any
    /// key of the ring over `data`. Compared in constant time.
    pub fn check_tag(&self, data: &[u8], tag: &[u8]) -> bool {
        tag.len() >= 16
            && self.keys.iter().any(|k| {
                let full = mac_for(k, data).finalize().into_bytes();
                full.get(..tag.len()).is_some_and(|prefix| bool::from(subtle::ConstantTimeEq::ct_eq(prefix, tag)))
            })
    }

    /// The per-session request-proof key: a MAC over the session id with the
    /// key `kid`, so Airlock can derive it again and never stores it.
    pub fn proof_key(&self, kid: &str, sid: &str) -> Option<[u8; 32]> {
        self.derive(kid, "airlock-proof-key-v1", &[sid.as_bytes()])
    }

    /// A per-session value (a key handed to the sandbox at mint): a MAC
    /// with the key `kid` over `label`, then `parts` each after a newline.
    /// Airlock derives it again from the token's claims and never stores it;
    /// the label keeps each use's values apart.
    pub fn derive(&self, kid: &str, label: &str, parts: &[&[u8]]) -> Option<[u8; 32]> {
        let mut mac = mac_for(self.find(kid)?, label.as_bytes());
        for part in parts {
            mac.update(b"\n");
            mac.update(part);
        }
        Some(mac.finalize().into_bytes().into())
    }

    fn find(&self, kid: &str) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }
}

fn mac_for(key: &SigningKey, signed: &[u8]) -> HmacSha256 {
    let mut mac = key.keyed.clone();
    mac.update(signed);
    mac
}

/// Signs `claims` with the ring's first key.
pub fn sign(claims: &Claims, ring: &KeyRing) -> String {
    let key = ring.signer();
    // Claims hold only strings, integers and a map of enums: serializing
    // them cannot fail.
    let json = serde_json::to_vec(claims).unwrap_or_default();
    let mut token = format!("{VERSION}.{}.{}", key.kid, URL_SAFE_NO_PAD.encode(json));
    let tag = mac_for(key, token.as_bytes()).finalize().into_bytes();
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(tag));
    token
}

/// Verifies a token: shape, key id, MAC (constant time), then claims,
/// audience and time window with [`CLOCK_SKEW_SECS`] of tolerance.
///
/// Valid while `iat <= now + skew` and `now < exp + skew`.
pub fn verify(token: &str, ring: &KeyRing, audience: &str, now: u64) -> Result<VerifiedSession, TokenError> {
    if token.is_empty() {
        return Err(TokenError::Missing);
    }
    // Size and alphabet first: nothing below ever sees an oversized or
    // non-ASCII token (algorithm-confusion headers, smuggled whitespace).
    if token.len() > MAX_TOKEN_LEN || !token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_')) {
        return Err(TokenError::Malformed);
    }
    let mut parts = token.split('.');
    let (Some(version), Some(kid), Some(body), Some(tag), None) = (parts.next(), parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(TokenError::Malformed);
    };
    if version != VERSION || body.is_empty() {
        return Err(TokenError::Malformed);
    }
    let key = ring.find(kid).ok_or(TokenError::UnknownKey)?;
    // The strict engine refuses padding and non-canonical trailing bits, so
    // one token has exactly one spelling.
    let tag = URL_SAFE_NO_PAD.decode(tag).map_err(|_| TokenError::Malformed)?;
    if tag.len() != MAC_LEN {
        return Err(TokenError::Malformed);
    }
    let signed_len = version.len() + 1 + kid.len() + 1 + body.len();
    let signed = token.as_bytes().get(..signed_len).ok_or(TokenError::Malformed)?;
    // `verify_slice` compares in constant time.
    mac_for(key, signed).verify_slice(&tag).map_err(|_| TokenError::BadMac)?;

    let json = URL_SAFE_NO_PAD.decode(body).map_err(|_| TokenError::BadClaims)?;
    let claims = Claims::read(&json).ok_or(TokenError::BadClaims)?;
    if claims.aud != audience {
        return Err(TokenError::WrongAudience);
    }
    if claims.iat > now.saturating_add(CLOCK_SKEW_SECS) {
        return Err(TokenError::NotYetValid { iat: claims.iat, now });
    }
    if now >= claims.exp.saturating_add(CLOCK_SKEW_SECS) {
        return Err(TokenError::Expired { exp: claims.exp, now });
    }
    Ok(VerifiedSession { claims, kid: kid.to_string() })
}

/// Extracts the credential of an `Authorization: Bearer <token>` header.
/// Anything else (another scheme, two values joined by the platform, empty)
/// yields `None`.
pub fn bearer(header: Option<&str>) -> Option<&str> {
    let value = header?;
    let (scheme, rest) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") || rest.is_empty() || joined(rest) {
        return None;
    }
    Some(rest)
}

/// A space or comma: two values joined by the platform. Scanned as bytes
/// (both are ASCII); a `[char]` pattern would decode the whole token as
/// UTF-8, which was a seventh of the per-request core.
pub(crate) fn joined(value: &str) -> bool {
    value.bytes().any(|b| b == b' ' || b == b',')
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) const KEY_A: &str = "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="; // "0123456789abcdef0123456789abcdef"
    const KEY_B: &str = "k2:ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA="; // "fedcba9876543210fedcba9876543210"

    fn claims() -> Claims {
        Claims {
            sid: "0123456789abcdef0123456789abcdef".into(),
            agt: "agent-1".into(),
            usr: "alice@example.com".into(),
            scp: [("github".to_string(), Level::Write)].into_iter().collect(),
            iat: 1_700_000_000,
            exp: 1_700_000_600,
            aud: "airlock-test".into(),
            egr: false,
            rps: Default::default(),
        }
    }

    fn ring(spec: &str) -> KeyRing {
        KeyRing::parse(spec).unwrap()
    }

    /// The committed vector (MAC cross-checked with Python's `hmac`): this
    /// exact token must keep verifying, so a
    /// change of format or MAC input is caught.
    const VECTOR: &str = "al1.k1.eyJzaWQiOiIwMTIzNDU2Nzg5YWJjZGVmMDEyMzQ1Njc4OWFiY2RlZiIsImFndCI6ImFnZW50LTEiLCJ1c3IiOiJhbGljZUBleGFtcGxlLmNvbSIsInNjcCI6eyJnaXRodWIiOiJ3cml0ZSJ9LCJpYXQiOjE3MDAwMDAwMDAsImV4cCI6MTcwMDAwMDYwMCwiYXVkIjoiYWlybG9jay10ZXN0In0.gaMIbgrSJHYFgu9sR-fqWcIYSXR7cVDQxiN5gjn4AsM";

    #[test]
    fn signing_is_deterministic_and_matches_the_vector() {
        assert_eq!(sign(&claims(), &ring(KEY_A)), VECTOR);
    }

    #[test]
    fn good_vector_verifies() {
        let s = verify(VECTOR, &ring(KEY_A), "airlock-test", 1_700_000_100).unwrap();
        assert_eq!(s.claims(), &claims());
        assert_eq!(s.kid(), "k1");
        assert_eq!(s.level_for("github"), Some(Level::Write));
        assert_eq!(s.level_for("stripe"), None);
    }

    fn flip(token: &str, at: usize) -> String {
        let mut b = token.as_bytes().to_vec();
        // Swap to another base64url character so only the MAC can object.
        b[at] = if b[at] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn vectors_that_must_fail() {
        let now = 1_700_000_100;
        let exp = 1_700_000_600;
        let mac_start = VECTOR.rfind('.').unwrap() + 1;
        let wrong_aud = sign(&Claims { aud: "other".into(), ..claims() }, &ring(KEY_A));
        let future_iat = sign(&Claims { iat: now + CLOCK_SKEW_SECS + 1, ..claims() }, &ring(KEY_A));
        let table: Vec<(&str, String, u64, TokenError)> = vec![
            ("flipped bit in claims", flip(VECTOR, 20), now, TokenError::BadMac),
            ("flipped bit in mac", flip(VECTOR, mac_start + 3), now, TokenError::BadMac),
            ("flipped kid", VECTOR.replacen("al1.k1.", "al1.k2.", 1), now, TokenError::UnknownKey),
            ("truncated mac", VECTOR[..VECTOR.len() - 4].to_string(), now, TokenError::Malformed),
            ("mac removed", VECTOR[..mac_start - 1].to_string(), now, TokenError::Malformed),
            ("empty mac", VECTOR[..mac_start].to_string(), now, TokenError::Malformed),
            ("padded mac", format!("{VECTOR}="), now, TokenError::Malformed),
            ("wrong version", VECTOR.replacen("al1.", "al2.", 1), now, TokenError::Malformed),
            ("extra part", format!("{VECTOR}.x"), now, TokenError::Malformed),
            ("empty", String::new(), now, TokenError::Missing),
            ("whitespace", format!(" {VECTOR}"), now, TokenError::Malformed),
            ("non-ascii", format!("{VECTOR}é"), now, TokenError::Malformed),
            ("oversized", "a".repeat(MAX_TOKEN_LEN + 1), now, TokenError::Malformed),
            ("jwt none alg", "eyJhbGciOiJub25lIn0.eyJzaWQiOiJ4In0.".into(), now, TokenError::Malformed),
            ("expired at exp+skew", VECTOR.into(), exp + CLOCK_SKEW_SECS, TokenError::Expired { exp, now: exp + CLOCK_SKEW_SECS }),
            ("expired long ago", VECTOR.into(), exp + 86_400, TokenError::Expired { exp, now: exp + 86_400 }),
            ("future iat past skew", future_iat, now, TokenError::NotYetValid { iat: now + CLOCK_SKEW_SECS + 1, now }),
            ("wrong audience", wrong_aud, now, TokenError::WrongAudience),
        ];
        for (what, token, at, want) in table {
            assert_eq!(verify(&token, &ring(KEY_A), "airlock-test", at).unwrap_err(), want, "{what}");
        }
    }

    #[test]
    fn expiry_boundaries() {
        let exp = 1_700_000_600;
        // At exp and just before exp+skew the token is still accepted.
        assert!(verify(VECTOR, &ring(KEY_A), "airlock-test", exp).is_ok());
        assert!(verify(VECTOR, &ring(KEY_A), "airlock-test", exp + CLOCK_SKEW_SECS - 1).is_ok());
        assert!(verify(VECTOR, &ring(KEY_A), "airlock-test", exp + CLOCK_SKEW_SECS).is_err());
        // An iat inside the skew is accepted.
        let iat_in_skew = sign(&Claims { iat: 1_700_000_100 + CLOCK_SKEW_SECS, ..claims() }, &ring(KEY_A));
        assert!(verify(&iat_in_skew, &ring(KEY_A), "airlock-test", 1_700_000_100).is_ok());
    }

    #[test]
    fn claims_with_unknown_fields_are_refused_even_when_signed() {
        // A signed token whose JSON has an extra field is BadClaims, not
        // silently accepted with the field ignored.
        let ring = ring(KEY_A);
        let json = br#"{"sid":"x","agt":"a","usr":"u","scp":{},"iat":1,"exp":2,"aud":"a","adm":true}"#;
        let mut token = format!("al1.k1.{}", URL_SAFE_NO_PAD.encode(json));
        let tag = mac_for(ring.signer(), token.as_bytes()).finalize().into_bytes();
        token = format!("{token}.{}", URL_SAFE_NO_PAD.encode(tag));
        assert_eq!(verify(&token, &ring, "a", 1).unwrap_err(), TokenError::BadClaims);
    }

    #[test]
    fn repositories_travel_in_the_claims_and_only_as_lists_of_strings() {
        let ring = ring(KEY_A);
        let mut rps = serde_json::Map::new();
        rps.insert("github".into(), serde_json::json!(["acme/app"]));
        let token = sign(&Claims { rps, ..claims() }, &ring);
        let s = verify(&token, &ring, "airlock-test", 1_700_000_001).unwrap();
        assert_eq!(s.repos_for("github"), vec!["acme/app".to_string()]);
        for bad in [r#"{"github":"acme/app"}"#, r#"{"github":[1]}"#, r#"[]"#] {
            let json = format!(r#"{{"sid":"x","agt":"a","usr":"u","scp":{{}},"iat":1,"exp":2,"aud":"a","rps":{bad}}}"#);
            let mut token = format!("al1.k1.{}", URL_SAFE_NO_PAD.encode(json));
            let tag = mac_for(ring.signer(), token.as_bytes()).finalize().into_bytes();
            token = format!("{token}.{}", URL_SAFE_NO_PAD.encode(tag));
            assert_eq!(verify(&token, &ring, "a", 1).unwrap_err(), TokenError::BadClaims, "{bad}");
        }
    }

    #[test]
    fn rotation_first_signs_all_verify() {
        let old = sign(&claims(), &ring(KEY_A));
        let both = ring(&format!("{KEY_B},{KEY_A}"));
        assert_eq!(both.signer().kid(), "k2");
        let new = sign(&claims(), &both);
        assert!(new.starts_with("al1.k2."));
        let now = 1_700_000_100;
        assert!(verify(&old, &both, "airlock-test", now).is_ok());
        assert!(verify(&new, &both, "airlock-test", now).is_ok());
        // Once k1 is removed, tokens it signed are refused.
        let only_b = ring(KEY_B);
        assert_eq!(verify(&old, &only_b, "airlock-test", now).unwrap_err(), TokenError::UnknownKey);
        assert!(verify(&new, &only_b, "airlock-test", now).is_ok());
    }

    #[test]
    fn same_kid_different_key_fails_the_mac() {
        let other = "k1:ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";
        assert_eq!(verify(VECTOR, &ring(other), "airlock-test", 1_700_000_100).unwrap_err(), TokenError::BadMac);
    }

    #[test]
    fn key_ring_parsing() {
        let short = "k1:c2hvcnQ=";
        let table: Vec<(&str, KeyRingError)> = vec![
            ("", KeyRingError::Empty),
            (" , ", KeyRingError::Empty),
            ("no-colon", KeyRingError::MalformedEntry(0)),
            ("bad kid!:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=", KeyRingError::BadKid(0)),
            ("k1:not base64!", KeyRingError::BadBase64(0)),
            (short, KeyRingError::KeyTooShort(0)),
        ];
        for (spec, want) in table {
            assert_eq!(KeyRing::parse(spec).err(), Some(want), "{spec:?}");
        }
        let dup = format!("{KEY_A},{KEY_A}");
        assert_eq!(KeyRing::parse(&dup).err(), Some(KeyRingError::DuplicateKid("k1".into())));
        let r = ring(&format!(" {KEY_A} , {KEY_B} "));
        assert_eq!(r.kids().collect::<Vec<_>>(), vec!["k1", "k2"]);
        // Errors never carry key material.
        let msg = KeyRing::parse(short).err().unwrap().to_string();
        assert!(!msg.contains("c2hvcnQ"));
    }

    #[test]
    fn bearer_extraction() {
        assert_eq!(bearer(Some("Bearer abc")), Some("abc"));
        assert_eq!(bearer(Some("bearer abc")), Some("abc"));
        for bad in ["Basic abc", "Bearer", "Bearer ", "Bearer a b", "Bearer a, Bearer b", "abc"] {
            assert_eq!(bearer(Some(bad)), None, "{bad}");
        }
        assert_eq!(bearer(None), None);
    }
}
