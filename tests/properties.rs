//! Properties over random inputs (proptest): redaction at any chunking,
//! path canonicalization, host normalization.

use airlock::egress::parse_authority;
use airlock::inject::encodings_of;
use airlock::path::normalize;
use airlock::redact::Redactor;
use airlock::secret::Secret;
use proptest::prelude::*;

/// Secrets drawn from an alphabet that shares no byte with the replacement
/// text `[REDACTED]`, so a replacement can never itself spell a secret.
fn secret() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(prop_oneof![b'a'..=b'z', b'0'..=b'9', Just(b'+'), Just(b'/'), Just(b'"'), Just(b'\\'), Just(b' '), Just(b'%')], 6..40)
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

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// For random bodies with secrets embedded anywhere, in any encoding,
    /// and random chunkings, no encoding of any secret survives.
    #[test]
    fn no_encoding_of_a_secret_survives(
        secrets in proptest::collection::vec(secret(), 1..3),
        filler in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..30), 1..8),
        picks in proptest::collection::vec((any::<usize>(), any::<usize>()), 1..8),
        cuts in proptest::collection::vec(any::<usize>(), 0..12),
    ) {
        let encodings: Vec<Vec<u8>> = secrets.iter().flat_map(|s| encodings_of(s)).collect();
        let mut body = Vec::new();
        for (i, f) in filler.iter().enumerate() {
            body.extend_from_slice(f);
            if let Some((s, e)) = picks.get(i) {
                body.extend_from_slice(&encodings[(s ^ e) % encodings.len()]);
            }
        }
        let out = stream(&encodings, &chunked(&body, &cuts));
        for e in &encodings {
            prop_assert!(!contains(&out, e), "an encoding survived");
        }
        // The chunking never changes the result.
        prop_assert_eq!(out, stream(&encodings, &[body]));
    }

    /// Text that contains no secret passes through byte-identical.
    #[test]
    fn clean_text_is_untouched(
        s in secret(),
        body in proptest::collection::vec(any::<u8>(), 0..2000),
        cuts in proptest::collection::vec(any::<usize>(), 0..20),
    ) {
        let encodings = encodings_of(&s);
        prop_assume!(encodings.iter().all(|e| !contains(&body, e)));
        prop_assert_eq!(stream(&encodings, &chunked(&body, &cuts)), body);
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
}
