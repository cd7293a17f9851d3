//! Properties over random inputs (proptest): redaction at any chunking,
//! path canonicalization, host normalization, SigV4 parsing.

use airlock::egress::parse_authority;
use airlock::inject::encodings_of;
use airlock::path::normalize;
use airlock::redact::Redactor;
use airlock::secret::Secret;
use proptest::prelude::*;

/// Secrets drawn from an alphabet that shares no byte with the replacement
/// text `[REDACTED]`, so a replacement can never itself spell a secret; it
/// holds every character an encoder escapes, and non-ASCII ones.
fn secret() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![
            proptest::char::range('a', 'z'),
            proptest::char::range('0', '9'),
            Just('+'),
            Just('/'),
            Just('='),
            Just('"'),
            Just('\\'),
            Just(' '),
            Just('%'),
            Just('é'),
            Just('🔑')
        ],
        6..30,
    )
    .prop_map(|v| v.into_iter().collect())
}

/// Splits `body` at the given cut points (mod its length).
fn chunked(body: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| if body.is_empty() { 0 } else { c % body.len() }).collect();
    points.push(0);
    points.push(body.len());
    points.sort_unstable();
    points.dedup();
    points.windows(2).map(|w| body[w[0]..w[1]].to_vec()).collect()
}

fn stream(patterns: &[Vec<u8>], chunks: &[Vec<u8>]) -> Vec<u8> {
    let mut r = Redactor::new(patterns.iter().map(|p| Secret::new(p.clone())).collect());
    let mut out = Vec::new();
    for c in chunks {
        out.extend(r.push(c));
    }
    out.extend(r.finish());
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

/// One spelling of `s`: each character as a mainstream encoder may write it
/// (`choice` picks: literal, `%XX` upper or lower, `\uXXXX` upper or lower
/// with surrogate pairs, JSON short escape, form `+`).
fn spell(s: &str, choices: &[u8]) -> Vec<u8> {
    let mut out = String::new();
    for (k, c) in s.chars().enumerate() {
        let mut utf8 = [0u8; 4];
        let bytes = c.encode_utf8(&mut utf8).as_bytes().to_vec();
        let mut units = [0u16; 2];
        let units = c.encode_utf16(&mut units).to_vec();
        let short = match c {
            '"' => Some("\\\""),
            '\\' => Some("\\\\"),
            '/' => Some("\\/"),
            _ => None,
        };
        match choices.get(k % choices.len().max(1)).copied().unwrap_or(0) % 7 {
            1 => bytes.iter().for_each(|b| out.push_str(&format!("%{b:02X}"))),
            2 => bytes.iter().for_each(|b| out.push_str(&format!("%{b:02x}"))),
            3 => units.iter().for_each(|u| out.push_str(&format!("\\u{u:04X}"))),
            4 => units.iter().for_each(|u| out.push_str(&format!("\\u{u:04x}"))),
            5 if short.is_some() => out.push_str(short.unwrap_or_default()),
            6 if c == ' ' => out.push('+'),
            _ => out.push(c),
        }
    }
    out.into_bytes()
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Lenient decoders, each the way one client reads a response.
fn percent_decode(s: &[u8], plus: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        match (s[i], s.get(i + 1).copied().and_then(hex), s.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push(h << 4 | l);
                i += 3;
            }
            (b'+', _, _) if plus => {
                out.push(b' ');
                i += 1;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

fn json_unescape(s: &[u8]) -> Vec<u8> {
    let unit = |at: usize| -> Option<u32> {
        let h = s.get(at..at + 4)?;
        h.iter().try_fold(0u32, |a, &b| Some(a << 4 | u32::from(hex(b)?)))
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' {
            let short = match s.get(i + 1) {
                Some(b'"') => Some(b'"'),
                Some(b'\\') => Some(b'\\'),
                Some(b'/') => Some(b'/'),
                Some(b'n') => Some(b'\n'),
                Some(b't') => Some(b'\t'),
                Some(b'r') => Some(b'\r'),
                Some(b'b') => Some(8),
                Some(b'f') => Some(12),
                _ => None,
            };
            if let Some(b) = short {
                out.push(b);
                i += 2;
                continue;
            }
            if s.get(i + 1) == Some(&b'u') {
                if let Some(u) = unit(i + 2) {
                    let pair = (0xD800..0xDC00).contains(&u) && s.get(i + 6..i + 8) == Some(b"\\u");
                    let low = if pair { unit(i + 8).filter(|l| (0xDC00..0xE000).contains(l)) } else { None };
                    let (cp, width) = match low {
                        Some(l) => (0x10000 + ((u - 0xD800) << 10) + (l - 0xDC00), 12),
                        None => (u, 6),
                    };
                    if let Some(c) = char::from_u32(cp) {
                        out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes());
                        i += width;
                        continue;
                    }
                }
            }
        }
        out.push(s[i]);
        i += 1;
    }
    out
}

fn readings(out: &[u8]) -> [Vec<u8>; 4] {
    [out.to_vec(), json_unescape(out), percent_decode(out, false), percent_decode(out, true)]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// For random bodies with secrets embedded anywhere, in any mix of
    /// spellings or as base64 inside a longer run at any alignment, and
    /// random chunkings: the chunking never changes the result, no pattern
    /// survives as is, and no client's decoding of the output spells a
    /// secret.
    #[test]
    fn no_spelling_of_a_secret_survives(
        secrets in proptest::collection::vec(secret(), 1..3),
        filler in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..30), 1..8),
        picks in proptest::collection::vec((any::<usize>(), proptest::collection::vec(any::<u8>(), 1..8), 0usize..6), 1..8),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        use base64::Engine;
        let patterns: Vec<Vec<u8>> = secrets.iter().flat_map(|s| encodings_of(s.as_bytes())).collect();
        let mut body = Vec::new();
        for (i, f) in filler.iter().enumerate() {
            body.extend_from_slice(f);
            if let Some((which, choices, offset)) = picks.get(i) {
                let s = &secrets[which % secrets.len()];
                if choices[0] % 4 == 0 {
                    // Base64 of the secret inside a longer run of other bytes.
                    let lead: Vec<u8> = choices.iter().copied().cycle().take(offset % 3).collect();
                    let data = [&lead[..], s.as_bytes(), &choices[..]].concat();
                    let engine = if choices[0] % 8 == 0 { &base64::engine::general_purpose::URL_SAFE } else { &base64::engine::general_purpose::STANDARD };
                    body.extend_from_slice(engine.encode(data).as_bytes());
                } else {
                    body.extend_from_slice(&spell(s, choices));
                }
            }
        }
        let out = stream(&patterns, &chunked(&body, &cuts));
        prop_assert_eq!(&out, &stream(&patterns, &[body.clone()]), "chunking changed the result");
        for p in &patterns {
            prop_assert!(!contains(&out, p), "a pattern survived");
        }
        for reading in readings(&out) {
            for s in &secrets {
                prop_assert!(!contains(&reading, s.as_bytes()), "a decoding of the output spells a secret");
            }
        }
    }

    /// Text in which no reading spells a secret passes through byte-identical.
    #[test]
    fn clean_text_is_untouched(
        s in secret(),
        body in proptest::collection::vec(any::<u8>(), 0..2000),
        cuts in proptest::collection::vec(any::<usize>(), 0..20),
    ) {
        let patterns = encodings_of(s.as_bytes());
        prop_assume!(readings(&body).iter().all(|r| patterns.iter().all(|p| !contains(r, p))));
        prop_assert_eq!(stream(&patterns, &chunked(&body, &cuts)), body);
    }

    /// A normalized path is a fixed point, and never holds a separator, dot
    /// segment, escape or control byte.
    #[test]
    fn normalized_paths_are_canonical(raw in "(/([a-zA-Z0-9._~;:@!$&'()*+,=-]|%[0-9a-fA-F]{2}){0,12}){0,6}/?") {
        if let Ok(p) = normalize(&raw) {
            prop_assert_eq!(normalize(&p.encoded()), Ok(p.clone()));
            for seg in p.segments() {
                prop_assert!(seg != "." && seg != "..");
                prop_assert!(!seg.contains(['/', '\\', '%']) && !seg.chars().any(char::is_control));
            }
        }
    }

    /// Host normalization is idempotent and never yields an IP-like host.
    #[test]
    fn hosts_normalize_idempotently(raw in "[a-zA-Z0-9.:x-]{1,40}") {
        if let Ok(d) = parse_authority(&raw) {
            prop_assert_eq!(parse_authority(&d.host).map(|x| x.host), Ok(d.host.clone()));
            prop_assert!(!d.host.ends_with('.') && d.host == d.host.to_ascii_lowercase());
            // A URL parser reads a last label of digits, or of `0x` and hex
            // digits only, as an IPv4 number; `0xg` is an ordinary name.
            let last = d.host.rsplit('.').next().unwrap_or_default();
            let hex_number = last.strip_prefix("0x").is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
            prop_assert!(!last.bytes().all(|b| b.is_ascii_digit()) && !hex_number);
        }
    }

    /// SigV4's parsers take any input without panicking; a header Airlock
    /// writes parses back to what it wrote; a canonical query is a fixed
    /// point.
    #[test]
    fn sigv4_parsers_are_total_and_round_trip(
        junk in ".{0,200}",
        key_id in "[A-Z0-9]{1,30}",
        names in proptest::collection::btree_set("[a-z0-9-]{1,12}", 1..6),
        sig in proptest::array::uniform32(any::<u8>()),
        query in "([a-zA-Z0-9%~+=&._-]|%[0-9a-fA-F]{2}){0,40}",
    ) {
        let _ = airlock::sigv4::parse_authorization(&junk);
        let _ = airlock::sigv4::is_presigned(&junk);
        let _ = airlock::sigv4::is_amz_date(&junk);
        let scope = airlock::sigv4::scope("20260101", "us-east-1", "s3");
        let signed: Vec<&str> = names.iter().map(String::as_str).collect();
        let header = airlock::sigv4::authorization(&key_id, &scope, &signed, &sig);
        let parsed = airlock::sigv4::parse_authorization(&header).unwrap();
        prop_assert_eq!((parsed.access_key_id, parsed.scope(), parsed.signed_headers, parsed.signature), (key_id.as_str(), scope.clone(), signed, sig));
        let canonical = airlock::sigv4::canonical_query(&query);
        prop_assert_eq!(airlock::sigv4::canonical_query(&canonical), canonical);
    }
}
