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
    let mut pairs: Vec<Vec<u8>> = raw
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            let mut out = String::new();
            uri_encode(&crate::path::percent_decode_lenient(k.as_bytes()), false, &mut out);
            out.push('\0');
            uri_encode(&crate::path::percent_decode_lenient(v.as_bytes()), false, &mut out);
            out.into_bytes()
        })
        .collect();
    pairs.sort();
    let mut out = String::new();
    for pair in pairs {
        if !out.is_empty() {
            out.push('&');
        }
        // Only ASCII was written.
        out.extend(pair.into_iter().map(|b| if b == 0 { '=' } else { char::from(b) }));
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

fn is_scope_part(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn is_header_name(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Parses `AWS4-HMAC-SHA256 Credential=<id>/<date>/<region>/<service>/aws4_request,
/// SignedHeaders=<a;b;c>, Signature=<64 hex>`: each part exactly once, in
/// any order, with or without a space after the commas. Anything else
/// (another algorithm, a repeated or unknown part, unsorted or upper-case
/// header names, a short signature) is `None`.
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
    let (access_key_id, date, region, service, terminator) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    let key_ok = !access_key_id.is_empty() && access_key_id.len() <= 128 && access_key_id.bytes().all(|b| b.is_ascii_alphanumeric());
    let date_ok = date.len() == 8 && date.bytes().all(|b| b.is_ascii_digit());
    if parts.next().is_some() || terminator != TERMINATOR || !key_ok || !date_ok || !is_scope_part(region) || !is_scope_part(service) {
        return None;
    }
    let signed_headers: Vec<&str> = signed?.split(';').collect();
    // Strictly ascending: sorted, without duplicates.
    if !signed_headers.iter().all(|h| is_header_name(h)) || !signed_headers.windows(2).all(|w| w[0] < w[1]) {
        return None;
    }
    let sig = sig?;
    if sig.len() != 64 || !sig.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    let mut signature = [0u8; 32];
    let nibble = |c: u8| if c.is_ascii_digit() { c - b'0' } else { c - b'a' + 10 };
    for (byte, pair) in signature.iter_mut().zip(sig.as_bytes().chunks(2)) {
        if let [hi, lo] = pair {
            *byte = nibble(*hi) << 4 | nibble(*lo);
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

/// Days since 1970-01-01 of a date in 1970 or later (Howard Hinnant's
/// `days_from_civil`, shifted so every term stays unsigned).
fn days_from_civil(y: u64, m: u64, d: u64) -> u64 {
    let y = if m <= 2 { y - 1 } else { y };
    let (era, yoe) = (y / 400, y % 400);
    let doy = (153 * ((m + 9) % 12) + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Parses an `X-Amz-Date` (`20150830T123600Z`) into unix seconds.
pub fn parse_amz_date(s: &str) -> Option<u64> {
    let b = s.as_bytes();
    // Every index below is within the 16 bytes checked here.
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' || !b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit) {
        return None;
    }
    let n = |from: usize, len: usize| b[from..from + len].iter().fold(0u64, |acc, d| acc * 10 + u64::from(d - b'0'));
    let (y, mo, d, h, mi, sec) = (n(0, 4), n(4, 2), n(6, 2), n(9, 2), n(11, 2), n(13, 2));
    let leap = (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let max_day = match mo {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        1..=12 => 31,
        _ => return None,
    };
    if y < 1970 || !(1..=max_day).contains(&d) || h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86_400 + h * 3_600 + mi * 60 + sec)
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
    fn dates_round_trip_and_refuse_what_is_not_a_date() {
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(1_440_938_160));
        assert_eq!(format_amz_date(1_440_938_160), "20150830T123600Z");
        for t in [0, 951_782_400, 1_709_164_799, 4_102_444_800] {
            assert_eq!(parse_amz_date(&format_amz_date(t)), Some(t), "{t}");
        }
        for bad in
            ["", "20150830T123600", "20150830 123600Z", "20150230T000000Z", "20150830T246000Z", "2015083OT123600Z", "+0150830T123600Z", "19691231T235959Z"]
        {
            assert_eq!(parse_amz_date(bad), None, "{bad}");
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
            good.replace("host;x-amz-date", "Host;x-amz-date"),
            good.replace("Signature=5f", "Signature=5F"),
            good.replace("Signature=5f", "Signature="),
            good.replace("/us-east-1/", "/us-east-1/extra/"),
            good.replace("AKIDEXAMPLE", "AKID/EXAMPLE"),
            good.replace("20150830", "2015083"),
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
