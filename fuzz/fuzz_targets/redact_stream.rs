//! `airlock::redact::Redactor` fed in chunks, with spellings decoded while
//! scanning.
//!
//! Input layout: byte 0 picks 1-3 patterns (`n % 3`) and, with bit 0x10,
//! adds every pattern's base64 spellings (`redact::base64_spellings`); each
//! pattern is one length byte (1-24) followed by that many bytes; then one
//! byte `k` and `k % 16` chunk-size bytes (each 0-32, used cyclically; no
//! sizes means one chunk); the rest is the body (at most 2 KiB is used, so
//! the reference model stays fast).
//!
//! Properties (a panic is a finding):
//! - `push` per chunk then `finish` gives exactly `redact(body)` of a fresh
//!   redactor: chunking never changes the result;
//! - that result is the leftmost-longest replacement, by `[REDACTED]`, of
//!   every spelling of every pattern, as a naive model computes it: the
//!   model *generates* each pattern character's spellings (literal, `%XX`
//!   in any hex case, `+` for a space, JSON short escapes, `\uXXXX` in any
//!   case with surrogate pairs) instead of decoding the input;
//! - no pattern occurs in the output, except where the occurrence overlaps
//!   an inserted `[REDACTED]`; and when no pattern holds a byte of
//!   `[REDACTED]`, no JSON, percent or form decoding of the output holds a
//!   pattern (for the JSON reading: a pattern that is valid UTF-8, since an
//!   escape stands for whole characters);
//! - a body without any spelling comes out byte-identical, and
//!   `contains_any` agrees with the model.
#![no_main]

use std::collections::HashMap;

use airlock::redact::{base64_spellings, Redactor, REPLACEMENT};
use airlock::secret::Secret;
use libfuzzer_sys::fuzz_target;

struct Input<'a> {
    patterns: Vec<Vec<u8>>,
    sizes: &'a [u8],
    body: &'a [u8],
}

fn split(data: &[u8]) -> Option<Input<'_>> {
    let (&n, mut rest) = data.split_first()?;
    let mut patterns = Vec::new();
    for _ in 0..1 + n % 3 {
        let (&len, r) = rest.split_first()?;
        let len = 1 + len as usize % 24;
        if r.len() < len {
            return None;
        }
        let (p, r) = r.split_at(len);
        patterns.push(p.to_vec());
        rest = r;
    }
    if n & 0x10 != 0 {
        let extra: Vec<Vec<u8>> = patterns.iter().flat_map(|p| base64_spellings(p)).collect();
        patterns.extend(extra);
    }
    let (&k, r) = rest.split_first()?;
    let k = k as usize % 16;
    if r.len() < k {
        return None;
    }
    let (sizes, body) = r.split_at(k);
    Some(Input {
        patterns,
        sizes,
        body: &body[..body.len().min(2048)],
    })
}

fn redactor(patterns: &[Vec<u8>]) -> Redactor {
    Redactor::new(patterns.iter().map(|p| Secret::new(p.clone())).collect())
}

fn chunks<'a>(body: &'a [u8], sizes: &[u8]) -> Vec<&'a [u8]> {
    if sizes.is_empty() {
        return vec![body];
    }
    let mut out = Vec::new();
    let mut rest = body;
    'outer: while !rest.is_empty() {
        let before = rest.len();
        for &s in sizes {
            let (a, b) = rest.split_at((s as usize % 33).min(rest.len()));
            out.push(a);
            rest = b;
            if rest.is_empty() {
                break 'outer;
            }
        }
        if rest.len() == before {
            // All sizes zero: finish in one chunk.
            out.push(rest);
            break;
        }
    }
    out
}

/// Whether `body[j..]` starts with `spelling`, where `?` stands for a hex
/// digit of the given value in either case.
fn spelled(body: &[u8], j: usize, spelling: &[u8]) -> bool {
    body.get(j..j + spelling.len())
        .is_some_and(|got| got.eq_ignore_ascii_case(spelling))
        && spelling
            .iter()
            .zip(&body[j..])
            .all(|(s, g)| s == g || s.is_ascii_hexdigit())
}

/// Every (pattern bytes consumed, input bytes consumed) one pattern
/// character at `pi` can be spelled with at `body[j..]`.
fn steps(p: &[u8], pi: usize, body: &[u8], j: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let b = p[pi];
    if body.get(j) == Some(&b) {
        out.push((1, 1));
    }
    if spelled(body, j, format!("%{b:02X}").as_bytes()) {
        out.push((1, 3));
    }
    if b == b' ' && body.get(j) == Some(&b'+') {
        out.push((1, 1));
    }
    let short: &[u8] = match b {
        b'"' => b"\\\"",
        b'\\' => b"\\\\",
        b'/' => b"\\/",
        8 => b"\\b",
        12 => b"\\f",
        b'\n' => b"\\n",
        b'\r' => b"\\r",
        b'\t' => b"\\t",
        _ => b"",
    };
    if !short.is_empty() && body.get(j..j + 2) == Some(short) {
        out.push((1, 2));
    }
    // The character starting at `pi`, if the pattern holds a valid one there.
    for len in 1..=4 {
        if let Some(c) = p
            .get(pi..pi + len)
            .and_then(|s| std::str::from_utf8(s).ok())
            .and_then(|s| s.chars().next())
        {
            let mut units = [0u16; 2];
            let escape: String = c
                .encode_utf16(&mut units)
                .iter()
                .map(|u| format!("\\u{u:04X}"))
                .collect();
            // `\u` itself is case-sensitive; only the hex digits are not.
            if spelled(body, j, escape.as_bytes())
                && escape
                    .bytes()
                    .zip(&body[j..])
                    .filter(|(s, _)| *s == b'u')
                    .all(|(_, g)| *g == b'u')
            {
                out.push((len, escape.len()));
            }
            break;
        }
    }
    out
}

/// The longest spelling of `p` at `body[j..]` (memoized: overlapping
/// readings make the number of paths exponential, not the number of states).
fn longest(
    p: &[u8],
    pi: usize,
    body: &[u8],
    j: usize,
    memo: &mut HashMap<(usize, usize), Option<usize>>,
) -> Option<usize> {
    if pi == p.len() {
        return Some(j);
    }
    if let Some(&known) = memo.get(&(pi, j)) {
        return known;
    }
    let best = steps(p, pi, body, j)
        .into_iter()
        .filter_map(|(dp, dj)| longest(p, pi + dp, body, j + dj, memo))
        .max();
    memo.insert((pi, j), best);
    best
}

/// Leftmost-longest replacement of every spelling; also returns the output
/// ranges of the inserted replacements.
fn reference(patterns: &[Vec<u8>], body: &[u8]) -> (Vec<u8>, Vec<(usize, usize)>) {
    let mut out = Vec::new();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let best = patterns
            .iter()
            .filter_map(|p| longest(p, 0, body, i, &mut HashMap::new()))
            .max();
        match best {
            Some(end) => {
                spans.push((out.len(), out.len() + REPLACEMENT.len()));
                out.extend_from_slice(REPLACEMENT);
                i = end;
            }
            None => {
                out.push(body[i]);
                i += 1;
            }
        }
    }
    (out, spans)
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Percent (and, with `plus`, form) decoding, lenient.
fn percent_decode(s: &[u8], plus: bool) -> Vec<u8> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        match (
            s[i],
            s.get(i + 1).copied().and_then(hex),
            s.get(i + 2).copied().and_then(hex),
        ) {
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

/// JSON string unescaping, lenient (a bad escape stays as it is).
fn json_unescape(s: &[u8]) -> Vec<u8> {
    let unit = |at: usize| -> Option<u32> {
        s.get(at..at + 4)?
            .iter()
            .try_fold(0u32, |a, &b| Some(a << 4 | u32::from(hex(b)?)))
    };
    let mut out = Vec::new();
    let mut i = 0;
    while i < s.len() {
        if s[i] == b'\\' {
            let short = match s.get(i + 1) {
                Some(b'"') => Some(b'"'),
                Some(b'\\') => Some(b'\\'),
                Some(b'/') => Some(b'/'),
                Some(b'b') => Some(8),
                Some(b'f') => Some(12),
                Some(b'n') => Some(b'\n'),
                Some(b'r') => Some(b'\r'),
                Some(b't') => Some(b'\t'),
                _ => None,
            };
            if let Some(b) = short {
                out.push(b);
                i += 2;
                continue;
            }
            if s.get(i + 1) == Some(&b'u') {
                if let Some(u) = unit(i + 2) {
                    let low =
                        if (0xD800..0xDC00).contains(&u) && s.get(i + 6..i + 8) == Some(b"\\u") {
                            unit(i + 8).filter(|l| (0xDC00..0xE000).contains(l))
                        } else {
                            None
                        };
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

fn occurrences<'a>(hay: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    hay.windows(needle.len())
        .enumerate()
        .filter(move |(_, w)| *w == needle)
        .map(|(i, _)| i)
}

fuzz_target!(|data: &[u8]| {
    let Some(Input {
        patterns,
        sizes,
        body,
    }) = split(data)
    else {
        return;
    };

    let mut streaming = redactor(&patterns);
    let mut streamed = Vec::new();
    for c in chunks(body, sizes) {
        streamed.extend(streaming.push(c));
    }
    streamed.extend(streaming.finish());

    let fresh = redactor(&patterns);
    let once = fresh.redact(body);
    assert_eq!(streamed, once, "chunking changed the result");

    let (want, spans) = reference(&patterns, body);
    assert_eq!(
        once, want,
        "redact differs from the leftmost-longest spelling model"
    );

    for p in &patterns {
        for at in occurrences(&once, p) {
            let end = at + p.len();
            let overlaps_replacement = spans.iter().any(|&(s, e)| at < e && s < end);
            assert!(
                overlaps_replacement,
                "pattern {p:?} survives at {at} in {once:?}"
            );
        }
    }
    if patterns
        .iter()
        .all(|p| p.iter().all(|b| !REPLACEMENT.contains(b)))
    {
        for (json, decoded) in [
            (true, json_unescape(&once)),
            (false, percent_decode(&once, false)),
            (false, percent_decode(&once, true)),
        ] {
            // A `\uXXXX` escape stands for a whole character: a pattern that
            // is not valid UTF-8 (a fragment of a character's encoding) is
            // only matched against whole characters, by design.
            for p in patterns
                .iter()
                .filter(|p| !json || std::str::from_utf8(p).is_ok())
            {
                assert!(
                    occurrences(&decoded, p).next().is_none(),
                    "a decoding of the output spells {p:?}: {once:?}"
                );
            }
        }
    }

    let has_spelling = !spans.is_empty();
    assert_eq!(
        fresh.contains_any(body),
        has_spelling,
        "contains_any disagrees"
    );
    if !has_spelling {
        assert_eq!(once, body, "a body without spellings was changed");
    }
});
