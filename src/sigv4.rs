//! AWS Signature Version 4: canonical requests, strings to sign, signing
//! keys and signatures, and the parts of a request that carry them.
//!
//! Airlock uses SigV4 twice on an AWS tool's request: it *verifies* the
//! sandbox's signature (made with a key derived from the session) and it
//! *signs* the request it forwards with the real key. Both go through the
//! same functions here, checked against AWS's published test suite
//! (`tests/sigv4_vectors.rs`).
//!
//! Invariants:
//! - Pure: no clock (times come in as arguments), no I/O, no secret kept.
//! - Signatures are compared in constant time ([`signature_matches`]).
//! - Parsers are strict: an `Authorization` value or a date that could be
//!   read two ways is refused (`None`), never repaired.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::hex::hex;

type HmacSha256 = Hmac<Sha256>;

/// The only algorithm Airlock accepts and signs with.
pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
/// `x-amz-content-sha256` of a request whose body is not part of the signature (S3).
pub const UNSIGNED_PAYLOAD: &str = "UNSIGNED-PAYLOAD";
/// The credential scope's terminator.
const TERMINATOR: &str = "aws4_request";

/// The lower-case hex SHA-256 of `bytes` (payload hashes).
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// SigV4's `UriEncode`: the unreserved characters `A-Z a-z 0-9 - . _ ~`
/// stay, every other byte becomes `%XX` (upper-case); `/` stays only when
/// `keep_slash` (a path, not a query component).
pub fn uri_encode(bytes: &[u8], keep_slash: bool, out: &mut String) {
    crate::path::percent_encode(bytes, |b| b.is_ascii_alphanumeric() || b"-._~".contains(&b) || (keep_slash && b == b'/'), out);
}

/// The canonical URI of a path as it is sent on the wire (still
/// percent-encoded). S3 signs the path itself, in SigV4's encoding (it is
/// decoded once and encoded again, so `%7e` and `~` sign alike); every
/// other service signs the wire path encoded once more.
pub fn canonical_uri(wire_path: &str, s3: bool) -> String {
    let mut out = String::with_capacity(wire_path.len() + 8);
    if s3 {
        uri_encode(&crate::path::percent_decode_lenient(wire_path.as_bytes()), true, &mut out);
    } else {
        uri_encode(wire_path.as_bytes(), true, &mut out);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// The canonical query string of a raw query (without `?`): each
/// parameter decoded once (`%XX` only; `+` is a literal plus in SigV4) and
/// encoded again, `name=` for a parameter without a value, sorted by name
/// and then value.
pub fn canonical_query(raw: &str) -> String {
    // Each pair as `name NUL value`, so that a plain byte sort orders by
    // name, then value (encoded names hold no NUL).
    let mut pairs: Vec<Vec<u8>> = Vec::new();
    for pair in raw.split('&') {
        if pair.is_empty() {
            continue;
        }
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let mut out = String::new();
        uri_encode(&crate::path::percent_decode_lenient(k.as_bytes()), false, &mut out);
        out.push('\0');
        uri_encode(&crate::path::percent_decode_lenient(v.as_bytes()), false, &mut out);
        pairs.push(out.into_bytes());
    }
    pairs.sort();
    let mut out = String::new();
    for pair in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        // Only ASCII was written.
        for b in pair {
            out.push(if b == 0 { '=' } else { char::from(b) });
        }
    }
    out
}

/// A header value as SigV4 signs it: trimmed, runs of spaces inside made one.
fn canonical_value(value: &str, out: &mut String) {
    let mut space = false;
    for c in value.trim_matches([' ', '\t']).chars() {
        if c == ' ' || c == '\t' {
            space = true;
            continue;
        }
        if space {
            out.push(' ');
            space = false;
        }
        out.push(c);
    }
}

/// The canonical request. `headers` are the request's headers (names in
/// any case; a name listed twice has its values joined with `,` in order);
/// `signed` the lower-case names that are signed, sorted. `None` if a
/// signed header is not in the request: a signature over a header the
/// request lacks proves nothing about the request.
pub fn canonical_request(method: &str, uri: &str, query: &str, headers: &[(String, String)], signed: &[&str], payload_hash: &str) -> Option<String> {
    let mut out = String::with_capacity(256);
    for part in [method, "\n", uri, "\n", query, "\n"] {
        out.push_str(part);
    }
    for name in signed {
        out.push_str(name);
        out.push(':');
        let mut found = false;
        for (_, value) in headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case(name)) {
            if found {
                out.push(',');
            }
            canonical_value(value, &mut out);
            found = true;
        }
        if !found {
            return None;
        }
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed.join(";"));
    out.push('\n');
    out.push_str(payload_hash);
    Some(out)
}

/// The credential scope: `<yyyymmdd>/<region>/<service>/aws4_request`.
pub fn scope(date: &str, region: &str, service: &str) -> String {
    format!("{date}/{region}/{service}/{TERMINATOR}")
}

/// The string to sign over a canonical request.
pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!("{ALGORITHM}\n{amz_date}\n{scope}\n{}", sha256_hex(canonical_request.as_bytes()))
}

/// HMAC-SHA256. HMAC takes keys of any length, so `None` never happens;
/// it is passed on rather than unwrapped.
fn hmac(key: &[u8], data: &[u8]) -> Option<[u8; 32]> {
    let mut mac = <HmacSha256 as KeyInit>::new_from_slice(key).ok()?;
    mac.update(data);
    Some(mac.finalize().into_bytes().into())
}

/// The signing key of a secret access key for one day, region and service.
pub fn signing_key(secret_access_key: &[u8], date: &str, region: &str, service: &str) -> Option<[u8; 32]> {
    let mut k = Vec::with_capacity(secret_access_key.len() + 4);
    k.extend_from_slice(b"AWS4");
    k.extend_from_slice(secret_access_key);
    let k_date = hmac(&k, date.as_bytes());
    k.iter_mut().for_each(|b| *b = 0);
    let k_region = hmac(&k_date?, region.as_bytes())?;
    let k_service = hmac(&k_region, service.as_bytes())?;
    hmac(&k_service, TERMINATOR.as_bytes())
}

/// The signature of a string to sign.
pub fn signature(signing_key: &[u8; 32], string_to_sign: &str) -> Option<[u8; 32]> {
    hmac(signing_key, string_to_sign.as_bytes())
}

/// Whether `presented` is `expected`, in constant time.
pub fn signature_matches(expected: &[u8; 32], presented: &[u8; 32]) -> bool {
    bool::from(subtle::ConstantTimeEq::ct_eq(&expected[..], &presented[..]))
}

/// The `Authorization` value of a signed request.
pub fn authorization(access_key_id: &str, scope: &str, signed: &[&str], signature: &[u8; 32]) -> String {
    format!("{ALGORITHM} Credential={access_key_id}/{scope}, SignedHeaders={}, Signature={}", signed.join(";"), hex(signature))
}

/// A parsed SigV4 `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization<'a> {
    pub access_key_id: &'a str,
    pub date: &'a str,
    pub region: &'a str,
    pub service: &'a str,
    /// Lower-case, sorted, no duplicates.
    pub signed_headers: Vec<&'a str>,
    pub signature: [u8; 32],
}

impl Authorization<'_> {
    /// The credential scope the signature was made for.
    pub fn scope(&self) -> String {
        scope(self.date, self.region, self.service)
    }
}

/// Parses `AWS4-HMAC-SHA256 Credential=<id>/<date>/<region>/<service>/aws4_request,
/// SignedHeaders=<a;b;c>, Signature=<64 hex>`: each part exactly once, in
/// any order, with or without a space after the commas; the signed header
/// names strictly ascending (sorted, no duplicates). Anything else (another
/// algorithm, a repeated or unknown part, a short signature) is `None`.
/// The credential's parts are not checked here: the verifier compares each
/// with what it must be.
pub fn parse_authorization(value: &str) -> Option<Authorization<'_>> {
    let rest = value.strip_prefix(ALGORITHM)?.strip_prefix(' ')?;
    let (mut credential, mut signed, mut sig) = (None, None, None);
    for part in rest.split(',') {
        let part = part.strip_prefix(' ').unwrap_or(part);
        let (key, v) = part.split_once('=')?;
        let slot = match key {
            "Credential" => &mut credential,
            "SignedHeaders" => &mut signed,
            "Signature" => &mut sig,
            _ => return None,
        };
        if slot.replace(v).is_some() {
            return None;
        }
    }
    let mut parts = credential?.split('/');
    let (access_key_id, date, region, service) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    if parts.next() != Some(TERMINATOR) || parts.next().is_some() {
        return None;
    }
    let signed_headers: Vec<&str> = signed?.split(';').collect();
    if !signed_headers.windows(2).all(|w| w[0] < w[1]) {
        return None;
    }
    let sig = sig?.as_bytes();
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut signature = [0u8; 32];
    if sig.len() != 64 {
        return None;
    }
    for (byte, pair) in signature.iter_mut().zip(sig.chunks(2)) {
        if let [hi, lo] = pair {
            *byte = nibble(*hi)? << 4 | nibble(*lo)?;
        }
    }
    Some(Authorization { access_key_id, date, region, service, signed_headers, signature })
}

/// Whether a query carries a presigned URL's signature (`X-Amz-Signature`,
/// `X-Amz-Credential` or `X-Amz-Algorithm`, names in any case and spelling).
pub fn is_presigned(query: &str) -> bool {
    query.split(['&', ';']).any(|pair| {
        let key = crate::path::percent_decode_lenient(pair.split('=').next().unwrap_or_default().as_bytes());
        [&b"x-amz-signature"[..], b"x-amz-credential", b"x-amz-algorithm"].iter().any(|k| key.eq_ignore_ascii_case(k))
    })
}

/// Whether `s` is shaped like an `X-Amz-Date` (`20150830T123600Z`). Such
/// strings sort as the times they name, so a window is two comparisons
/// with [`format_amz_date`] of its ends.
pub fn is_amz_date(s: &str) -> bool {
    s.len() == 16
        && s.bytes().enumerate().all(|(i, b)| match i {
            8 => b == b'T',
            15 => b == b'Z',
            _ => b.is_ascii_digit(),
        })
}

/// Formats unix seconds as an `X-Amz-Date`.
pub fn format_amz_date(unix: u64) -> String {
    // civil_from_days (Howard Hinnant's algorithm), unsigned from 1970 on.
    let z = unix / 86_400 + 719_468;
    let (era, doe) = (z / 146_097, z % 146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    let secs = unix % 86_400;
    let mut out = String::with_capacity(16);
    for (value, width) in [(y, 4), (m, 2), (d, 2), (u64::MAX, 0), (secs / 3_600, 2), (secs % 3_600 / 60, 2), (secs % 60, 2)] {
        if width == 0 {
            out.push('T');
            continue;
        }
        for i in (0..width).rev() {
            out.push(char::from(b'0' + (value / 10u64.pow(i) % 10) as u8));
        }
    }
    out.push('Z');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_format_and_sort_as_times() {
        assert_eq!(format_amz_date(1_440_938_160), "20150830T123600Z");
        assert_eq!(format_amz_date(0), "19700101T000000Z");
        assert_eq!(format_amz_date(951_782_400), "20000229T000000Z");
        assert_eq!(format_amz_date(4_102_444_799), "20991231T235959Z");
        let mut last = String::new();
        for t in (0..4_102_444_800u64).step_by(7_777_777) {
            let d = format_amz_date(t);
            assert!(is_amz_date(&d) && d > last, "{d}");
            last = d;
        }
        for bad in ["", "20150830T123600", "20150830 123600Z", "2015083OT123600Z", "+0150830T123600Z", "20150830T1236000Z"] {
            assert!(!is_amz_date(bad), "{bad}");
        }
    }

    #[test]
    fn authorization_parses_strictly() {
        let good = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";
        let a = parse_authorization(good).unwrap();
        assert_eq!((a.access_key_id, a.date, a.region, a.service), ("AKIDEXAMPLE", "20150830", "us-east-1", "service"));
        assert_eq!(a.signed_headers, ["host", "x-amz-date"]);
        assert_eq!(hex(&a.signature), "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
        assert_eq!(parse_authorization(&good.replace(", ", ",")), Some(a));
        let bad = [
            good.replace("AWS4-HMAC-SHA256", "AWS4-HMAC-SHA512"),
            good.replace("aws4_request", "aws4_requests"),
            good.replace("host;x-amz-date", "x-amz-date;host"),
            good.replace("host;x-amz-date", "host;host;x-amz-date"),
            good.replace("Signature=5f", "Signature=5F"),
            good.replace("Signature=5f", "Signature="),
            good.replace("Signature=5f", "Signature=5g"),
            good.replace("/us-east-1/", "/us-east-1/extra/"),
            good.replace("AKIDEXAMPLE", "AKID/EXAMPLE"),
            format!("{good}, Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
            format!("{good}, Extra=1"),
            "Bearer al1.k1.x.y".to_string(),
        ];
        for b in bad {
            assert_eq!(parse_authorization(&b), None, "{b}");
        }
    }

    #[test]
    fn presigned_queries_are_recognized_in_any_spelling() {
        for q in ["X-Amz-Signature=ab", "a=1&x-amz-credential=x", "X-Amz-Algorithm", "X%2DAmz%2DSignature=1", "a=1;X-AMZ-SIGNATURE=2"] {
            assert!(is_presigned(q), "{q}");
        }
        for q in ["", "list-type=2&prefix=x", "X-Amz-Signatures=1", "x=X-Amz-Signature"] {
            assert!(!is_presigned(q), "{q}");
        }
    }

    #[test]
    fn uris_and_queries_are_canonical() {
        assert_eq!(canonical_uri("/t/s3/bucket/a%20b~c", true), "/t/s3/bucket/a%20b~c");
        assert_eq!(canonical_uri("/t/s3/bucket/a%7Eb%2a", true), "/t/s3/bucket/a~b%2A");
        assert_eq!(canonical_uri("/a%20b", false), "/a%2520b");
        assert_eq!(canonical_uri("", false), "/");
        assert_eq!(canonical_query("b=2&a=%2f+&a=1&c"), "a=%2F%2B&a=1&b=2&c=");
    }
}
