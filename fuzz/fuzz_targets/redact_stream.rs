//! `airlock::redact::Redactor` fed in chunks.
//!
//! Input layout: byte 0 picks 1-3 patterns; each pattern is one length
//! byte (1-24) followed by that many bytes; then one byte `k` and `k % 16`
//! chunk-size bytes (each 0-32, used cyclically; no sizes means one chunk);
//! the rest is the body.
//!
//! Properties (a panic is a finding):
//! - `push` per chunk then `finish` gives exactly `redact(body)` of a fresh
//!   redactor: chunking never changes the result;
//! - that result is the leftmost-longest replacement of every pattern
//!   occurrence by `[REDACTED]` (a naive reference model);
//! - no pattern occurs in the output, except where the occurrence overlaps
//!   an inserted `[REDACTED]` (a pattern such as `D]`, or `]x` after a
//!   replacement, can be spelled with the replacement's own bytes);
//! - a body containing no pattern comes out byte-identical, and
//!   `contains_any` agrees with the reference.
#![no_main]

use airlock::redact::{Redactor, REPLACEMENT};
use airlock::secret::Secret;
use libfuzzer_sys::fuzz_target;

struct Input<'a> {
    patterns: Vec<&'a [u8]>,
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
        patterns.push(p);
        rest = r;
    }
    let (&k, r) = rest.split_first()?;
    let k = k as usize % 16;
    if r.len() < k {
        return None;
    }
    let (sizes, body) = r.split_at(k);
    Some(Input { patterns, sizes, body })
}

fn redactor(patterns: &[&[u8]]) -> Redactor {
    Redactor::new(patterns.iter().map(|p| Secret::new(p.to_vec())).collect())
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

/// Leftmost-longest replacement; also returns the output ranges of the
/// inserted replacements.
fn reference(patterns: &[&[u8]], body: &[u8]) -> (Vec<u8>, Vec<(usize, usize)>) {
    let mut out = Vec::new();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < body.len() {
        let best = patterns.iter().filter(|p| body[i..].starts_with(p)).map(|p| p.len()).max();
        match best {
            Some(len) => {
                spans.push((out.len(), out.len() + REPLACEMENT.len()));
                out.extend_from_slice(REPLACEMENT);
                i += len;
            }
            None => {
                out.push(body[i]);
                i += 1;
            }
        }
    }
    (out, spans)
}

fn occurrences<'a>(hay: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    hay.windows(needle.len()).enumerate().filter(move |(_, w)| *w == needle).map(|(i, _)| i)
}

fuzz_target!(|data: &[u8]| {
    let Some(Input { patterns, sizes, body }) = split(data) else { return };

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
    assert_eq!(once, want, "redact differs from leftmost-longest replacement");

    for p in &patterns {
        for at in occurrences(&once, p) {
            let end = at + p.len();
            let overlaps_replacement = spans.iter().any(|&(s, e)| at < e && s < end);
            assert!(overlaps_replacement, "pattern {p:?} survives at {at} in {once:?}");
        }
    }

    let has_pattern = patterns.iter().any(|p| occurrences(body, p).next().is_some());
    assert_eq!(fresh.contains_any(body), has_pattern, "contains_any disagrees");
    if !has_pattern {
        assert_eq!(once, body, "a body without patterns was changed");
    }
});
