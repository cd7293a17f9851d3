//! Filter response: scrub every injected value from headers and streamed bodies.
//!
//! Redaction sees through encodings. A hostile sandbox can get an origin to
//! echo the credential back in another spelling and read it out, so a
//! pattern is matched in every spelling a mainstream JSON, URL or form
//! encoder produces, decoded while scanning: each pattern byte may appear in
//! the input as
//! - the literal byte;
//! - `%XX`, hex digits in either case (any choice of encoded characters:
//!   .NET, Python `quote`, `encodeURIComponent`, `URLSearchParams`);
//! - `+` for a space (form encoding);
//! - a JSON escape: `\uXXXX` in either case for any character (the UTF-8
//!   bytes of the character are compared, a surrogate pair for characters
//!   beyond the BMP), or `\/ \\ \" \b \f \n \r \t`.
//!   A `\u` escape stands for a whole character, so a pattern that is not
//!   valid UTF-8 (a fragment of a character) is never found inside one.
//!
//! A match replaces the *original* span, whatever mix of spellings it used.
//! Base64 cannot be decoded at a byte position (its meaning depends on the
//! alignment of the whole run), so it is covered by patterns instead:
//! [`base64_spellings`] gives, per alphabet and per alignment of the value
//! inside a longer encoded run, the characters fully determined by the value
//! (plus the padded ending when the value ends the run). The one or two
//! boundary characters that mix the value's bits with its neighbours' remain
//! (at most 4 bits of the value at each end). Those patterns are matched
//! through the same escapes (`\/`, `%2F`, `%2B`, `\u003d`, `%3D`).
//!
//! Invariants:
//! - Leftmost-longest and deterministic: at each position, the longest match
//!   of any pattern in any mix of spellings wins; scanning resumes after it.
//! - Output is identical for every chunking: a match spans at most
//!   [`MAX_SPELLING`] input bytes per pattern byte, every decision at a
//!   position reads only that window, and the tail of each chunk that could
//!   still start an undecided match (window − 1 bytes) is carried over.
//! - Memory is bounded by one chunk plus that carry; bodies are never
//!   buffered. Backtracking (only where a pattern byte is itself `%` or `\`,
//!   so a literal and an escaped reading both fit) visits each state once.
//! - Text without any spelling of a pattern passes through byte-identical.
//! - Never panics on any input: every read of input goes through `get`.
//! - `Set-Cookie` from credentialed origins and hop-by-hop headers are
//!   dropped; a header whose *name* spells a pattern (any ASCII case) is
//!   dropped.

use std::collections::BTreeSet;
use std::rc::Rc;

use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use base64::Engine;

use crate::secret::Secret;

/// What a scrubbed value is replaced with.
pub const REPLACEMENT: &[u8] = b"[REDACTED]";

/// The most input bytes one pattern byte can be spelled with: `\u002f` for
/// `/` (a surrogate pair is 12 bytes for 4 pattern bytes, `%XX` 3 for 1).
pub const MAX_SPELLING: usize = 6;

/// Base64 spellings shorter than this are not patterns: a handful of base64
/// characters occurs in ordinary text by chance, so scrubbing them would
/// mangle responses (a value of 5 bytes or less is caught raw and escaped,
/// not inside base64).
pub const MIN_BASE64_SPELLING: usize = 7;

/// The base64 characters determined by `value` wherever it sits in a longer
/// encoded byte string: for the standard and URL-safe alphabets and each
/// start offset of the value modulo 3, the run of characters whose six bits
/// all come from the value; and, for a value that ends the string, that run
/// completed with its last (zero-filled) character, with and without `=`
/// padding. Leftmost-longest matching prefers the completed forms.
pub fn base64_spellings(value: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    if value.is_empty() {
        return out;
    }
    for engine in [&STANDARD, &URL_SAFE] {
        for offset in 0..3usize {
            let mut data = vec![0u8; offset];
            data.extend_from_slice(value);
            let encoded = engine.encode(&data).into_bytes();
            // Character k holds bits 6k..6k+6 of `data`; the value holds bits
            // 8·offset..8·len.
            let first = (8 * offset).div_ceil(6);
            let determined = 8 * data.len() / 6;
            let unpadded = encoded.iter().rposition(|&c| c != b'=').map_or(0, |k| k + 1);
            for end in [determined, unpadded, encoded.len()] {
                if let Some(s) = encoded.get(first..end).filter(|s| s.len() >= MIN_BASE64_SPELLING) {
                    out.push(s.to_vec());
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Emits `buf[copied..at]` and the replacement for a match at `at`.
#[inline(always)]
fn replace(out: &mut Vec<u8>, buf: &[u8], copied: usize, at: usize) {
    out.extend_from_slice(buf.get(copied..at).unwrap_or_default());
    out.extend_from_slice(REPLACEMENT);
}

/// A streaming multi-pattern replacer that decodes while it scans.
pub struct Redactor {
    /// Non-empty, distinct; ordered by first byte, stably.
    patterns: Vec<Rc<Secret>>,
    /// `ranges[group_of[b] - 1]` are the indices of the patterns that begin
    /// with byte `b` (0: none): a candidate position only tries those its
    /// first reading fits.
    group_of: [u16; 256],
    ranges: Vec<(usize, usize)>,
    /// How many leading bytes each pattern shares with the one before it.
    shared_prev: Vec<usize>,
    /// Input bytes a match can begin with: the patterns' first bytes, and
    /// the bytes that begin an escape (`%`, `\`, `+`). Any other byte is
    /// skipped without a closer look.
    start: [bool; 256],
    /// Bytes that can begin an escape that may spell a pattern byte: `%`
    /// and `\`, and `+` when some pattern holds a space. Every other input
    /// byte has exactly one reading, itself, so between these bytes only
    /// literal matches can begin.
    introducer: [bool; 256],
    /// The length of the literal window the skips look at: the shortest
    /// pattern's length, at most 64 (the bits of `offsets`), at least 1.
    min_len: usize,
    /// Set-Horspool over the first `min_len` bytes of every pattern: when
    /// the window `i..i + min_len` holds no introducer, no match begins in
    /// `i..i + shift[buf[i + min_len - 1]]`.
    shift: [u8; 256],
    /// Bit `k` of `offsets[b]`: some pattern has byte `b` at offset `k`
    /// (`k < min_len`); a literal run before an introducer can only start
    /// a match where every byte sits at an offset its pattern allows.
    offsets: Box<[u64; 256]>,
    /// Input bytes a match can cover at most; every decision at a position
    /// reads only this many bytes from it.
    window: usize,
    carry: Vec<u8>,
}

/// One reading of the input at a position: the bytes it stands for and the
/// input bytes it takes.
#[derive(Clone, Copy)]
struct Unit {
    bytes: [u8; 4],
    len: usize,
    width: usize,
}

impl Unit {
    fn byte(b: u8, width: usize) -> Unit {
        Unit { bytes: [b, 0, 0, 0], len: 1, width }
    }

    fn decoded(&self) -> &[u8] {
        self.bytes.get(..self.len).unwrap_or_default()
    }
}

/// The value of each hex digit; 0xFF for any other byte.
const HEX: [u8; 256] = {
    let mut t = [0xFFu8; 256];
    let mut d = 0;
    while d < 10 {
        t[b'0' as usize + d] = d as u8;
        d += 1;
    }
    let mut d = 0;
    while d < 6 {
        t[b'a' as usize + d] = 10 + d as u8;
        t[b'A' as usize + d] = 10 + d as u8;
        d += 1;
    }
    t
};

#[inline(always)]
fn hex(b: u8) -> Option<u8> {
    let v = HEX[usize::from(b)];
    if v < 16 {
        Some(v)
    } else {
        None
    }
}

#[inline(always)]
fn hex4(w: &[u8], at: usize) -> Option<u32> {
    let a = u32::from(hex(*w.get(at)?)?);
    let b = u32::from(hex(*w.get(at + 1)?)?);
    let c = u32::from(hex(*w.get(at + 2)?)?);
    let d = u32::from(hex(*w.get(at + 3)?)?);
    Some(a << 12 | b << 8 | c << 4 | d)
}

/// The escaped reading of `w` at `j`, when an escape starts there. Only
/// bytes inside `w` are read, so a decision never depends on bytes past the
/// window (what makes streaming and whole-body results identical).
#[inline(always)]
fn escape_at(w: &[u8], j: usize) -> Option<Unit> {
    match *w.get(j)? {
        b'%' => {
            let hi = hex(*w.get(j + 1)?)?;
            let lo = hex(*w.get(j + 2)?)?;
            Some(Unit::byte(hi << 4 | lo, 3))
        }
        b'+' => Some(Unit::byte(b' ', 1)),
        b'\\' => {
            let short = match *w.get(j + 1)? {
                b'"' => b'"',
                b'\\' => b'\\',
                b'/' => b'/',
                b'b' => 0x08,
                b'f' => 0x0c,
                b'n' => b'\n',
                b'r' => b'\r',
                b't' => b'\t',
                b'u' => return unicode_escape_at(w, j),
                _ => return None,
            };
            Some(Unit::byte(short, 2))
        }
        _ => None,
    }
}

/// The first byte of what an escape at `j` stands for, without building
/// the whole reading: for every escape [`escape_at`] reads, the same byte
/// (so it can rule positions out, never in). A `\u` escape's UTF-8
/// leading byte follows from its first code unit alone.
#[inline(always)]
fn first_escaped_byte(w: &[u8], j: usize) -> Option<u8> {
    match *w.get(j)? {
        b'%' => Some(hex(*w.get(j + 1)?)? << 4 | hex(*w.get(j + 2)?)?),
        b'+' => Some(b' '),
        b'\\' => match *w.get(j + 1)? {
            b'u' => {
                let u = hex4(w, j + 2)?;
                // The casts keep the bits that the UTF-8 leading byte holds.
                Some(match u {
                    0..0x80 => u as u8,
                    0x80..0x800 => 0xC0 | (u >> 6) as u8,
                    // A pair: the code point's top bits come from the high
                    // surrogate (the low one adds only the lowest ten).
                    0xD800..0xDC00 => 0xF0 | ((0x10000 + ((u - 0xD800) << 10)) >> 18) as u8,
                    // A lone low surrogate stands for nothing.
                    0xDC00..0xE000 => return None,
                    _ => 0xE0 | (u >> 12) as u8,
                })
            }
            b'"' => Some(b'"'),
            b'\\' => Some(b'\\'),
            b'/' => Some(b'/'),
            b'b' => Some(0x08),
            b'f' => Some(0x0c),
            b'n' => Some(b'\n'),
            b'r' => Some(b'\r'),
            b't' => Some(b'\t'),
            _ => None,
        },
        _ => None,
    }
}

/// The reading of a `\uXXXX` escape (or surrogate pair) at `j`.
#[inline(always)]
fn unicode_escape_at(w: &[u8], j: usize) -> Option<Unit> {
    let u = hex4(w, j + 2)?;
    let (cp, width) = if (0xD800..0xDC00).contains(&u) {
        // A character beyond the BMP is a surrogate pair; a lone high
        // surrogate stands for no bytes at all.
        if w.get(j + 6..j + 8)? != b"\\u" {
            return None;
        }
        let low = hex4(w, j + 8)?;
        if !(0xDC00..0xE000).contains(&low) {
            return None;
        }
        (0x10000 + ((u - 0xD800) << 10) + (low - 0xDC00), 12)
    } else {
        (u, 6)
    };
    // `from_u32` refuses a lone low surrogate.
    let c = char::from_u32(cp)?;
    let mut bytes = [0u8; 4];
    let len = c.encode_utf8(&mut bytes).len();
    Some(Unit { bytes, len, width })
}

/// Byte equality, ASCII letters in any case with `fold`.
#[inline(always)]
fn eq(x: u8, y: u8, fold: bool) -> bool {
    x == y || (fold && x.eq_ignore_ascii_case(&y))
}

/// Whether `p` continues at `pi` with `bytes` (ASCII letters in any case
/// with `fold`); a loop of at most four bytes, cheaper than a `memcmp` call.
#[inline(always)]
fn continues(p: &[u8], pi: usize, bytes: &[u8], fold: bool) -> bool {
    let Some(want) = p.get(pi..pi + bytes.len()) else {
        return false;
    };
    let mut k = 0;
    while let (Some(&x), Some(&y)) = (want.get(k), bytes.get(k)) {
        if !eq(x, y, fold) {
            return false;
        }
        k += 1;
    }
    true
}

/// [`longest_spelling`] without fold, taking the one reading that fits at
/// each step; only where a literal `%` or `\` of the pattern meets an
/// introducer (two readings may fit) does it hand over to the full search.
/// Same answers, without the search's bookkeeping on the common path.
#[inline(never)]
fn spelling(p: &[u8], w: &[u8]) -> (Option<usize>, usize) {
    let (mut pi, mut j) = (0usize, 0usize);
    loop {
        let Some(&want) = p.get(pi) else {
            return (Some(j), 0);
        };
        let Some(&got) = w.get(j) else {
            return (None, pi + 4);
        };
        if !ESCAPE_START[usize::from(got)] {
            if want != got {
                return (None, pi + 4);
            }
            pi += 1;
            j += 1;
            continue;
        }
        if want == got {
            if got != b'+' {
                // `%` or `\` read literally may also begin an escape of
                // the same pattern byte.
                return longest_spelling(p, w, false);
            }
            // A literal `+`: its other reading, a space, is not `+`.
            pi += 1;
            j += 1;
            continue;
        }
        match escape_at(w, j) {
            Some(u) if continues(p, pi, u.decoded(), false) => {
                pi += u.len;
                j += u.width;
            }
            _ => return (None, pi + 4),
        }
    }
}

/// States (pattern bytes matched, input bytes read) still to explore, and
/// every state ever queued.
type Branches = (Vec<(usize, usize)>, BTreeSet<(usize, usize)>);

/// The end (in `w`) of the longest spelling of `p` at the start of `w`;
/// and, when there is none, a bound on how many leading bytes of `p` the
/// search looked at (a pattern sharing that many leading bytes fails too).
///
/// A state is (pattern bytes matched, input bytes read). Readings are
/// exclusive except a literal `%` or `\` that is also the start of an
/// escape spelling the same pattern byte (`%25`, `\\`, `\u005c`); there
/// both are explored, each state at most once, so a pattern full of
/// backslashes against input full of backslashes costs states, not paths.
#[inline(never)]
fn longest_spelling(p: &[u8], w: &[u8], fold: bool) -> (Option<usize>, usize) {
    let mut best: Option<usize> = None;
    // A state looks at most at the four pattern bytes from where it stops
    // (a `\u` escape stands for up to four).
    let mut reach = 0;
    // Only built when two readings fit: most calls never branch.
    let mut branches: Option<Branches> = None;
    let (mut pi, mut j) = (0usize, 0usize);
    loop {
        // Fast path: literal bytes that start no escape.
        while let (Some(&want), Some(&got)) = (p.get(pi), w.get(j)) {
            if !eq(want, got, fold) || ESCAPE_START[usize::from(got)] {
                break;
            }
            pi += 1;
            j += 1;
        }
        let mut dead = false;
        match (p.get(pi), w.get(j)) {
            (None, _) => {
                if best.is_none_or(|b| b < j) {
                    best = Some(j);
                }
                dead = true;
            }
            // Input ends, or a literal mismatch with no escape to read
            // instead.
            (Some(_), None) => dead = true,
            (Some(_), Some(&got)) if !ESCAPE_START[usize::from(got)] => dead = true,
            (Some(&want), Some(&got)) => {
                let literal = eq(want, got, fold);
                let escaped = match escape_at(w, j) {
                    Some(u) if continues(p, pi, u.decoded(), fold) => Some(u),
                    _ => None,
                };
                match (literal, escaped) {
                    (true, None) => (pi, j) = (pi + 1, j + 1),
                    (false, Some(u)) => (pi, j) = (pi + u.len, j + u.width),
                    (false, None) => dead = true,
                    (true, Some(u)) => {
                        let other = (pi + u.len, j + u.width);
                        let (pending, seen) = branches.get_or_insert_with(Default::default);
                        if seen.insert(other) {
                            pending.push(other);
                        }
                        if seen.insert((pi + 1, j + 1)) {
                            (pi, j) = (pi + 1, j + 1);
                        } else {
                            dead = true;
                        }
                    }
                }
            }
        }
        if dead {
            reach = reach.max(pi + 4);
            // Resume a queued reading, if any.
            match branches.as_mut().and_then(|(pending, _)| pending.pop()) {
                Some(state) => (pi, j) = state,
                None => break,
            }
        }
    }
    (best, reach)
}

/// How many leading bytes `a` and `b` share, eight at a time.
#[inline(always)]
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    let mut n = 0;
    while let (Some(x), Some(y)) = (a.get(n..n + 8), b.get(n..n + 8)) {
        let x = u64::from_le_bytes(<[u8; 8]>::try_from(x).unwrap_or_default());
        let y = u64::from_le_bytes(<[u8; 8]>::try_from(y).unwrap_or_default());
        if x != y {
            return n + ((x ^ y).trailing_zeros() / 8) as usize;
        }
        n += 8;
    }
    while let (Some(x), Some(y)) = (a.get(n), b.get(n)) {
        if x != y {
            break;
        }
        n += 1;
    }
    n
}

/// Bytes that may begin an escape (`%XX`, `\…`, `+` for a space).
const ESCAPE_START: [bool; 256] = {
    let mut t = [false; 256];
    t[b'%' as usize] = true;
    t[b'\\' as usize] = true;
    t[b'+' as usize] = true;
    t
};

impl Redactor {
    pub fn new(patterns: Vec<Secret>) -> Redactor {
        Redactor::shared(patterns.into_iter().map(Rc::new).collect())
    }

    /// Builds a redactor over shared patterns: a prepared credential's
    /// spellings are reused across requests, not copied.
    pub fn shared(patterns: Vec<Rc<Secret>>) -> Redactor {
        let mut patterns: Vec<Rc<Secret>> = patterns.into_iter().filter(|p| !p.is_empty()).collect();
        // By first byte, which is what the groups need; stable, so the
        // spellings of one value (each list sorted) stay neighbours within a
        // group, sharing prefixes. A duplicate can only sit in its own
        // (small) group.
        patterns.sort_by_key(|p| p.expose().first().copied());
        let mut distinct: Vec<Rc<Secret>> = Vec::with_capacity(patterns.len());
        for p in patterns {
            let first = p.expose().first();
            let seen = distinct.iter().rev().take_while(|q| q.expose().first() == first).any(|q| q.expose() == p.expose());
            if !seen {
                distinct.push(p);
            }
        }
        let mut patterns = distinct;
        // Group indices are u16; a redactor of more patterns than that is no
        // use anyway (each credential contributes a few dozen).
        patterns.truncate(usize::from(u16::MAX));
        let window = patterns.iter().map(|p| p.len()).max().map_or(0, |n| n.saturating_mul(MAX_SPELLING));
        let mut shared_prev = Vec::with_capacity(patterns.len());
        let mut prev: &[u8] = &[];
        for p in &patterns {
            shared_prev.push(common_prefix(prev, p.expose()));
            prev = p.expose();
        }
        // Patterns are sorted by first byte: each first byte is one range.
        let mut group_of = [0u16; 256];
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        for (k, p) in patterns.iter().enumerate() {
            let Some(&f) = p.expose().first() else {
                continue;
            };
            match ranges.last_mut() {
                Some(last) if group_of[usize::from(f)] != 0 => last.1 = k + 1,
                _ => {
                    ranges.push((k, k + 1));
                    group_of[usize::from(f)] = u16::try_from(ranges.len()).unwrap_or(0);
                }
            }
        }
        let mut start = [false; 256];
        let mut introducer = [false; 256];
        let min_len = patterns.iter().map(|p| p.len()).min().unwrap_or(1).clamp(1, 64);
        // Zeroed on allocation (a boxed array literal would be built on the
        // stack and copied); the conversion cannot fail, the length is fixed.
        let mut offsets: Box<[u64; 256]> = vec![0u64; 256].into_boxed_slice().try_into().unwrap_or_else(|_| Box::new([0u64; 256]));
        for (p, &shared) in patterns.iter().zip(&shared_prev) {
            let bytes = p.expose();
            let Some(&first) = bytes.first() else {
                continue;
            };
            start[usize::from(first)] = true;
            // Built per request: a plain loop (iterator adapters stay out
            // of line at opt-level "z"), and the bytes a pattern shares
            // with its predecessor are already recorded at these offsets.
            let prefix = bytes.get(..min_len).unwrap_or(bytes);
            let mut k = shared;
            while let Some(&b) = prefix.get(k) {
                offsets[usize::from(b)] |= 1u64 << k;
                k += 1;
            }
            if bytes.contains(&b' ') {
                introducer[usize::from(b'+')] = true;
            }
        }
        // The skip for a byte: from its last offset inside the window (the
        // only offsets recorded). `min_len` ≤ 64, so every shift fits a byte.
        let mut shift = [min_len as u8; 256];
        let mut b = 0;
        while b < 256 {
            let o = offsets[b];
            if o != 0 {
                shift[b] = (min_len - 1 - (63 - o.leading_zeros() as usize)) as u8;
            }
            b += 1;
        }
        if !patterns.is_empty() {
            // Any byte can be percent-encoded and any character JSON-escaped;
            // `+` is harmless to look at (a space, or a literal `+`).
            start[usize::from(b'%')] = true;
            start[usize::from(b'\\')] = true;
            start[usize::from(b'+')] = true;
            introducer[usize::from(b'%')] = true;
            introducer[usize::from(b'\\')] = true;
        }
        Redactor { patterns, group_of, ranges, shared_prev, start, introducer, min_len, shift, offsets, window, carry: Vec::new() }
    }

    /// A copy of this filter's tables with no stream in progress.
    pub fn fresh(&self) -> Redactor {
        Redactor {
            patterns: self.patterns.clone(),
            group_of: self.group_of,
            ranges: self.ranges.clone(),
            shared_prev: self.shared_prev.clone(),
            start: self.start,
            introducer: self.introducer,
            min_len: self.min_len,
            shift: self.shift,
            offsets: self.offsets.clone(),
            window: self.window,
            carry: Vec::new(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// The indices of the patterns that begin with byte `b`.
    #[inline(always)]
    fn group_range(&self, b: u8) -> (usize, usize) {
        match usize::from(self.group_of[usize::from(b)]).checked_sub(1) {
            Some(k) => self.ranges.get(k).copied().unwrap_or((0, 0)),
            None => (0, 0),
        }
    }

    /// The patterns that begin with byte `b`.
    #[inline(always)]
    fn group(&self, b: u8) -> &[Rc<Secret>] {
        let (lo, hi) = self.group_range(b);
        self.patterns.get(lo..hi).unwrap_or_default()
    }

    /// The end of the longest match starting at `i`, reading only the
    /// window from `i`.
    #[inline(always)]
    fn match_at(&self, buf: &[u8], i: usize, fold: bool) -> Option<usize> {
        let w = buf.get(i..)?;
        let w = w.get(..self.window.min(w.len()))?;
        let &b0 = w.first()?;
        let mut best = None;
        if fold {
            // Header names: the patterns whose first byte is the first
            // reading's, in either case.
            let decoded = ESCAPE_START[usize::from(b0)].then(|| escape_at(w, 0)).flatten().map(|u| u.bytes[0]);
            let mut firsts = [Some(b0), decoded].into_iter().flatten().flat_map(|f| [f.to_ascii_lowercase(), f.to_ascii_uppercase()]).collect::<Vec<u8>>();
            firsts.sort_unstable();
            firsts.dedup();
            for f in firsts {
                for p in self.group(f) {
                    best = best.max(longest_spelling(p.expose(), w, true).0);
                }
            }
            return best.map(|end| i + end);
        }
        // Patterns are sorted: one that shares with its predecessor every
        // byte the predecessor's failed search looked at fails the same way.
        let mut failed_at = usize::MAX;
        let (lo, hi) = self.group_range(b0);
        for k in lo..hi {
            let (Some(p), Some(&shared_prev)) = (self.patterns.get(k), self.shared_prev.get(k)) else {
                break;
            };
            if shared_prev >= failed_at {
                continue;
            }
            let p = p.expose();
            // Most candidates fail on literal bytes: follow those without
            // setting up the full search, which is only needed once an
            // escape could be read.
            let shared = common_prefix(p, w);
            // An input byte equal to a pattern byte that begins an escape
            // may have a second reading: the literal run stops there.
            let mut run = 0;
            while run < shared && p.get(run).is_some_and(|&b| !ESCAPE_START[usize::from(b)]) {
                run += 1;
            }
            let (end, reach) = if run == p.len() {
                // Every byte read had exactly one reading.
                (Some(run), 0)
            } else {
                match w.get(run) {
                    Some(&b) if ESCAPE_START[usize::from(b)] => spelling(p, w),
                    // A literal mismatch at `run` (or the window ends).
                    _ => (None, run + 1),
                }
            };
            failed_at = if end.is_some() { usize::MAX } else { reach };
            best = best.max(end);
        }
        if ESCAPE_START[usize::from(b0)] {
            if let Some(u) = escape_at(w, 0) {
                if u.bytes[0] != b0 {
                    let mut failed_at = usize::MAX;
                    let (lo, hi) = self.group_range(u.bytes[0]);
                    for k in lo..hi {
                        let (Some(p), Some(&shared_prev)) = (self.patterns.get(k), self.shared_prev.get(k)) else {
                            break;
                        };
                        if shared_prev >= failed_at {
                            continue;
                        }
                        let (end, reach) = spelling(p.expose(), w);
                        failed_at = if end.is_some() { usize::MAX } else { reach };
                        best = best.max(end);
                    }
                }
            }
        }
        best.map(|end| i + end)
    }

    /// The first introducer in `buf` at or after `from` (`buf.len()` when
    /// none), eight bytes at a time.
    #[inline(always)]
    fn next_introducer(&self, buf: &[u8], from: usize) -> usize {
        const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
        const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
        // Bytes of `x` equal to `b` get their high bit set; the lowest such
        // bit is exact (a borrow only ever marks bytes above a true zero).
        let equal = |x: u64, b: u8| {
            let v = x ^ ONES.wrapping_mul(u64::from(b));
            v.wrapping_sub(ONES) & !v & HIGH
        };
        // Escape-dense text: the next introducer is usually a few bytes on.
        let mut i = from;
        while i < from + 4 {
            match buf.get(i) {
                Some(&b) if self.introducer[usize::from(b)] => return i,
                Some(_) => i += 1,
                None => return buf.len(),
            }
        }
        let plus = self.introducer[usize::from(b'+')];
        while let Some(word) = buf.get(i..i + 8) {
            let x = u64::from_le_bytes(<[u8; 8]>::try_from(word).unwrap_or_default());
            let mut hit = equal(x, b'%') | equal(x, b'\\');
            if plus {
                hit |= equal(x, b'+');
            }
            if hit != 0 {
                return i + (hit.trailing_zeros() / 8) as usize;
            }
            i += 8;
        }
        while let Some(&b) = buf.get(i) {
            if self.introducer[usize::from(b)] {
                return i;
            }
            i += 1;
        }
        buf.len()
    }

    /// The offsets (as in `offsets`) at which a pattern can hold the first
    /// byte of a reading of the introducer at `at`: its literal byte or
    /// what its escape stands for. Every offset when the escape may still
    /// be cut off by the end of `buf` (the next chunk could complete it) or
    /// there is no introducer.
    #[inline(always)]
    fn introducer_fits(&self, buf: &[u8], at: usize) -> u64 {
        if buf.len().saturating_sub(at) < 2 * MAX_SPELLING {
            return u64::MAX;
        }
        let Some(&b) = buf.get(at) else {
            return u64::MAX;
        };
        let literal = self.offsets[usize::from(b)];
        match first_escaped_byte(buf, at) {
            Some(first) => literal | self.offsets[usize::from(first)],
            None => literal,
        }
    }

    /// Scrubs `buf`, deciding every start position below `limit`, and
    /// returns how far it consumed (everything before that is emitted).
    ///
    /// Two levels: a stretch without introducers can only hold literal
    /// matches, so where the `min_len` window ahead holds none, the
    /// set-Horspool skip is exact; in the last `min_len − 1` bytes before
    /// an introducer, a match must begin with a literal run that fits the
    /// patterns' offsets (a bit-parallel check of the whole run at once);
    /// only the positions that survive, and the introducers themselves, get
    /// the decoding matcher. Every skip reads only bytes inside `buf`.
    fn scan(&self, buf: &[u8], limit: usize, out: &mut Vec<u8>) -> usize {
        if self.patterns.is_empty() {
            out.extend_from_slice(buf);
            return buf.len();
        }
        let end = limit.min(buf.len());
        let m = self.min_len;
        let mut i = 0;
        let mut copied = 0;
        'scan: while i < end {
            // Read the literal run from `i` up to an introducer, at most
            // `min_len − 1` bytes (the bits `offsets` keeps): bit `k` of
            // `viable` ends up set when the run from `t − 1 − k` fits some
            // pattern's offsets byte by byte.
            let lim = (i + m - 1).min(buf.len());
            let mut t = i;
            let mut viable = 0u64;
            let mut literal_window = false;
            while let Some(&b) = buf.get(t) {
                if self.introducer[usize::from(b)] {
                    break;
                }
                if t >= lim {
                    // `min_len` literal bytes from `i`.
                    literal_window = true;
                    break;
                }
                viable = (viable << 1 | 1) & self.offsets[usize::from(b)];
                t += 1;
            }
            if literal_window {
                // Skip as set-Horspool does while the window ahead holds
                // no introducer.
                let intro = self.next_introducer(buf, t + 1);
                while i < end && i + m <= intro {
                    let last = buf.get(i + m - 1).copied().unwrap_or_default();
                    let skip = usize::from(self.shift[usize::from(last)]);
                    if skip > 0 {
                        i += skip;
                        continue;
                    }
                    match self.match_at(buf, i, false) {
                        Some(e) => {
                            replace(out, buf, copied, i);
                            i = e;
                            copied = e;
                        }
                        None => i += 1,
                    }
                }
                continue;
            }
            // `t` is an introducer (or the end of `buf`) fewer than
            // `min_len` bytes on. One step further: bit `k` set when the run
            // from `t − k` also fits what the introducer can read as.
            // In bounds: the run is shorter than `min_len` ≤ 64.
            let fits = self.introducer_fits(buf, t);
            let mut bits = viable << 1 & fits;
            while bits != 0 {
                // Leftmost start first: the highest offset.
                let k = 63 - bits.leading_zeros() as usize;
                bits &= !(1u64 << k);
                let at = t - k;
                if at >= end {
                    // Undecided: kept for the next chunk (every position
                    // before it was decided).
                    i = at;
                    break 'scan;
                }
                if let Some(e) = self.match_at(buf, at, false) {
                    replace(out, buf, copied, at);
                    i = e;
                    copied = e;
                    continue 'scan;
                }
            }
            if t >= end {
                i = t;
                break;
            }
            // At the introducer.
            if fits & 1 != 0 {
                if let Some(e) = self.match_at(buf, t, false) {
                    replace(out, buf, copied, t);
                    i = e;
                    copied = e;
                    continue;
                }
            }
            i = t + 1;
        }
        // Only when deciding the whole buffer (end of stream) is the tail
        // known match-free; mid-stream, positions from `i` on may start a
        // match the next chunk completes.
        let consumed = if limit >= buf.len() { buf.len() } else { i.max(copied) };
        out.extend_from_slice(buf.get(copied..consumed).unwrap_or_default());
        consumed
    }

    /// Feeds one chunk; returns what can be emitted now.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.patterns.is_empty() {
            return chunk.to_vec();
        }
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(chunk);
        // A match starting below `limit` fits entirely in `buf`, and so does
        // every byte its decision reads; positions at or above it might
        // start a match that the next chunk completes.
        let limit = buf.len().saturating_sub(self.window.saturating_sub(1));
        let mut out = Vec::with_capacity(buf.len());
        let consumed = self.scan(&buf, limit, &mut out);
        buf.drain(..consumed.min(buf.len()));
        self.carry = buf;
        out
    }

    /// Flushes the carry at end of stream.
    pub fn finish(&mut self) -> Vec<u8> {
        let buf = std::mem::take(&mut self.carry);
        let mut out = Vec::with_capacity(buf.len());
        self.scan(&buf, buf.len(), &mut out);
        out
    }

    /// Scrubs a complete value.
    pub fn redact(&self, input: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(input.len());
        self.scan(input, input.len(), &mut out);
        out
    }

    /// Whether a complete value holds any spelling of any pattern.
    pub fn contains_any(&self, input: &[u8]) -> bool {
        !self.patterns.is_empty()
            && (0..input.len()).any(|i| input.get(i).is_some_and(|&b| self.start[usize::from(b)]) && self.match_at(input, i, false).is_some())
    }

    /// [`Redactor::contains_any`] with ASCII letters compared in any case:
    /// for header names, which HTTP treats case-insensitively (and which
    /// reach the filter lower-cased, so a pattern with capitals would never
    /// match them exactly).
    pub fn contains_any_ignore_case(&self, input: &[u8]) -> bool {
        !self.patterns.is_empty() && (0..input.len()).any(|i| self.match_at(input, i, true).is_some())
    }
}

/// What the sandbox receives of a response body, chunk by chunk. An error
/// names how the stream must be cut off.
pub trait BodyFilter {
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<u8>, &'static str>;
    fn finish(&mut self) -> Vec<u8>;
}

impl BodyFilter for Redactor {
    fn push(&mut self, chunk: &[u8]) -> Result<Vec<u8>, &'static str> {
        Ok(Redactor::push(self, chunk))
    }
    fn finish(&mut self) -> Vec<u8> {
        Redactor::finish(self)
    }
}

/// Response headers never passed back to the sandbox.
const DROPPED_RESPONSE_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    // The body may change length when scrubbed; the runtime re-frames it.
    "content-length",
];

/// Filters the origin's response headers: drops hop-by-hop headers,
/// `Content-Length`, anything claiming to be Airlock's, `Set-Cookie` from
/// credentialed origins, and scrubs every remaining value.
pub fn filter_response_headers(headers: &[(String, String)], redactor: &Redactor, credentialed: bool) -> Vec<(String, String)> {
    let mut out = Vec::with_capacity(headers.len());
    for (name, value) in headers {
        let lower = name.to_ascii_lowercase();
        if DROPPED_RESPONSE_HEADERS.contains(&lower.as_str()) || lower.starts_with("x-airlock-") {
            continue;
        }
        // Cookies set by a credentialed origin belong to the credential's
        // identity; handing them to the sandbox would leak a bearer.
        if credentialed && (lower == "set-cookie" || lower == "set-cookie2") {
            continue;
        }
        // A name can echo the credential too; names are case-insensitive,
        // so `X-Sekret` and `x-sekret` are the same leak.
        if redactor.contains_any_ignore_case(lower.as_bytes()) {
            continue;
        }
        let scrubbed = redactor.redact(value.as_bytes());
        out.push((lower, String::from_utf8_lossy(&scrubbed).into_owned()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(patterns: &[&str]) -> Redactor {
        Redactor::new(patterns.iter().map(|p| Secret::new(p.as_bytes().to_vec())).collect())
    }

    fn stream(red: &mut Redactor, chunks: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for c in chunks {
            out.extend(red.push(c));
        }
        out.extend(red.finish());
        out
    }

    #[test]
    fn replaces_whole_values() {
        let red = r(&["s3cr3t", "Bearer s3cr3t"]);
        assert_eq!(red.redact(b"x Bearer s3cr3t y s3cr3t"), b"x [REDACTED] y [REDACTED]");
        assert_eq!(red.redact(b"s3cr3"), b"s3cr3");
        assert_eq!(red.redact(b""), b"");
    }

    #[test]
    fn every_split_of_every_position() {
        let secret = "tok_9f8e7d6c5b4a";
        let body = format!("{{\"authorization\":\"Bearer {secret}\",\"x\":\"{secret}{secret}\",\"tail\":\"{}\"}}", &secret[..8]);
        let want = r(&[secret]).redact(body.as_bytes());
        assert!(!String::from_utf8_lossy(&want).contains(secret));
        let b = body.as_bytes();
        for i in 0..=b.len() {
            for j in i..=b.len() {
                let mut red = r(&[secret]);
                let got = stream(&mut red, &[&b[..i], &b[i..j], &b[j..]]);
                assert_eq!(got, want, "split at {i},{j}");
            }
        }
    }

    #[test]
    fn one_byte_chunks() {
        let mut red = r(&["abcabd", "cab"]);
        let input = b"xxabcabcabdyyabcab";
        let chunks: Vec<&[u8]> = input.chunks(1).collect();
        let got = stream(&mut red, &chunks);
        assert_eq!(got, r(&["abcabd", "cab"]).redact(input));
        let s = String::from_utf8(got).unwrap();
        assert!(!s.contains("abcabd") && !s.contains("cab"), "{s}");
    }

    #[test]
    fn carry_is_bounded() {
        let mut red = r(&["0123456789"]);
        for _ in 0..1000 {
            red.push(&[b'x'; 4096]);
            // The window: every pattern byte spelled `\uXXXX`.
            assert!(red.carry.len() < 10 * MAX_SPELLING);
        }
        // A partial match at the end is held back, then flushed.
        let out = red.push(b"012345678");
        assert!(out.iter().all(|&b| b == b'x'));
        let last = red.finish();
        assert!(last.ends_with(b"012345678") && last.iter().rev().skip(9).all(|&b| b == b'x'));
    }

    #[test]
    fn no_patterns_is_identity() {
        let mut red = Redactor::new(vec![]);
        assert!(red.is_empty());
        assert_eq!(stream(&mut red, &[b"abc", b"", b"def"]), b"abcdef");
    }

    #[test]
    fn pseudo_random_bodies_and_chunkings() {
        // Deterministic xorshift so failures reproduce.
        let mut seed: u64 = 0x9e3779b97f4a7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let secrets = ["Zq8#kP2!", "Zq8#kP2!Zq8", "%5Bx%5D"];
        for _ in 0..300 {
            let mut body = Vec::new();
            let mut clean = Vec::new();
            for _ in 0..(next() % 40) {
                if next() % 4 == 0 {
                    let s = secrets[(next() % secrets.len() as u64) as usize];
                    body.extend_from_slice(s.as_bytes());
                } else {
                    // Bytes drawn from the secrets' own alphabet make near-misses likely.
                    let alphabet = b"Zq8#kP2!x%5BD]";
                    let c = alphabet[(next() % alphabet.len() as u64) as usize];
                    body.push(c);
                    clean.push(c);
                }
            }
            let mut red = r(&secrets);
            let mut chunks = Vec::new();
            let mut rest = &body[..];
            while !rest.is_empty() {
                let n = 1 + (next() as usize % 9).min(rest.len() - 1);
                let (a, b) = rest.split_at(n.min(rest.len()));
                chunks.push(a);
                rest = b;
            }
            let got = stream(&mut red, &chunks);
            let once = r(&secrets).redact(&body);
            assert_eq!(got, once, "chunking changed the result");
            let text = String::from_utf8_lossy(&got);
            for s in secrets {
                assert!(!text.contains(s), "{s} survived in {text}");
            }
        }
    }

    #[test]
    fn headers_are_filtered_and_scrubbed() {
        let red = r(&["sekret"]);
        let h: Vec<(String, String)> = [
            ("Content-Type", "application/json"),
            ("Set-Cookie", "session=abc"),
            ("X-Echo-Authorization", "Bearer sekret"),
            ("Content-Length", "42"),
            ("Connection", "close"),
            ("X-Airlock-Request-Id", "spoofed"),
            ("Location", "https://x/?key=sekret"),
            ("x-sekret", "name carries it"),
        ]
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
        let out = filter_response_headers(&h, &red, true);
        assert_eq!(
            out,
            vec![
                ("content-type".to_string(), "application/json".to_string()),
                ("x-echo-authorization".to_string(), "Bearer [REDACTED]".to_string()),
                ("location".to_string(), "https://x/?key=[REDACTED]".to_string()),
            ]
        );
        // A tool without a credential keeps its cookies.
        let out = filter_response_headers(&h, &Redactor::new(vec![]), false);
        assert!(out.iter().any(|(n, _)| n == "set-cookie"));
    }

    /// Deterministic xorshift, so failures reproduce.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n.max(1) as u64) as usize
        }
    }

    /// Secrets with every character an encoder treats specially.
    const SECRETS: &[&str] = &["sk_live/Ab+cd=ef gh\"ij", "pä%ss/wörd🔑=Z", "tok\\en\t\u{1}</script>&'x", "ghp_R2d2C3poBb8Luke5kyWalker0Leia1Han"];

    /// The patterns Airlock builds for a credential injected as a bearer
    /// token: the secret and `Bearer <secret>`, each with its base64 spellings.
    fn credential_patterns(secret: &str) -> Vec<Vec<u8>> {
        let bearer = format!("Bearer {secret}");
        let mut out = crate::inject::encodings_of(secret.as_bytes());
        out.push(bearer.clone().into_bytes());
        out.extend(base64_spellings(bearer.as_bytes()));
        out
    }

    fn redactor_for(secret: &str) -> Redactor {
        Redactor::new(credential_patterns(secret).into_iter().map(Secret::new).collect())
    }

    /// One spelling of `s`, chosen character by character the way some
    /// mainstream encoder may write it.
    fn spell(s: &str, rng: &mut Rng) -> String {
        let mut out = String::new();
        for c in s.chars() {
            let mut utf8 = [0u8; 4];
            let bytes = c.encode_utf8(&mut utf8).as_bytes().to_vec();
            let mut units = [0u16; 2];
            let units = c.encode_utf16(&mut units).to_vec();
            let short = match c {
                '"' => Some("\\\""),
                '\\' => Some("\\\\"),
                '/' => Some("\\/"),
                '\u{8}' => Some("\\b"),
                '\u{c}' => Some("\\f"),
                '\n' => Some("\\n"),
                '\r' => Some("\\r"),
                '\t' => Some("\\t"),
                _ => None,
            };
            match rng.below(7) {
                0 => bytes.iter().for_each(|b| out.push_str(&format!("%{b:02X}"))),
                1 => bytes.iter().for_each(|b| out.push_str(&format!("%{b:02x}"))),
                2 => units.iter().for_each(|u| out.push_str(&format!("\\u{u:04X}"))),
                3 => units.iter().for_each(|u| out.push_str(&format!("\\u{u:04x}"))),
                4 if short.is_some() => out.push_str(short.unwrap_or_default()),
                5 if c == ' ' => out.push('+'),
                _ => out.push(c),
            }
        }
        out
    }

    fn percent_decode(s: &[u8], plus: bool) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while let Some(&b) = s.get(i) {
            match (b, escape_at(s, i)) {
                (b'%', Some(u)) => {
                    out.extend_from_slice(u.decoded());
                    i += u.width;
                }
                (b'+', _) if plus => {
                    out.push(b' ');
                    i += 1;
                }
                _ => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        out
    }

    fn json_unescape(s: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut i = 0;
        while let Some(&b) = s.get(i) {
            match (b, escape_at(s, i)) {
                (b'\\', Some(u)) => {
                    out.extend_from_slice(u.decoded());
                    i += u.width;
                }
                _ => {
                    out.push(b);
                    i += 1;
                }
            }
        }
        out
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    /// Every reading of `out` a client might apply: as is, JSON-unescaped,
    /// percent-decoded, form-decoded.
    fn readings(out: &[u8]) -> Vec<Vec<u8>> {
        vec![out.to_vec(), json_unescape(out), percent_decode(out, false), percent_decode(out, true)]
    }

    fn random_chunks<'a>(body: &'a [u8], rng: &mut Rng) -> Vec<&'a [u8]> {
        let mut chunks = Vec::new();
        let mut rest = body;
        while !rest.is_empty() {
            let (a, b) = rest.split_at((1 + rng.below(40)).min(rest.len()));
            chunks.push(a);
            rest = b;
        }
        chunks
    }

    #[test]
    fn every_json_percent_and_form_spelling_is_scrubbed() {
        let mut rng = Rng(0x243F6A8885A308D3);
        for secret in SECRETS {
            let red = redactor_for(secret);
            for round in 0..300 {
                let spelled = spell(secret, &mut rng);
                let (before, after) = match round % 3 {
                    0 => (r#"{"echo":""#, r#"","n":1}"#),
                    1 => ("https://api.example.com/cb?token=", "&state=xyz"),
                    _ => ("Authorization: Bearer ", "\r\n"),
                };
                let body = format!("{before}{spelled}{after}");
                let out = red.redact(body.as_bytes());
                // The whole spelling, and nothing around it, is replaced
                // (a bearer echo may take `Bearer ` with it).
                let want_exact = [before.as_bytes(), REPLACEMENT, after.as_bytes()].concat();
                let want_bearer = [&b"Authorization: "[..], REPLACEMENT, after.as_bytes()].concat();
                assert!(out == want_exact || out == want_bearer, "{secret:?} spelled {spelled:?} -> {}", String::from_utf8_lossy(&out));
                for reading in readings(&out) {
                    assert!(!contains(&reading, secret.as_bytes()), "{spelled:?}");
                }
                let mut streaming = redactor_for(secret);
                let mut streamed = Vec::new();
                for c in random_chunks(body.as_bytes(), &mut rng) {
                    streamed.extend(streaming.push(c));
                }
                streamed.extend(streaming.finish());
                assert_eq!(streamed, out, "chunking changed the result for {spelled:?}");
            }
        }
    }

    /// Base64 of the secret or of the whole injected header value, at each
    /// alignment inside a longer encoded run of random bytes, in both
    /// alphabets, padded or not, and with `/` escaped as PHP's
    /// `json_encode` does: no decoding of what is left spells the secret.
    #[test]
    fn base64_at_every_alignment_is_scrubbed() {
        use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
        let mut rng = Rng(0x13198A2E03707344);
        for secret in SECRETS {
            let red = redactor_for(secret);
            let bearer = format!("Bearer {secret}");
            for value in [secret.as_bytes(), bearer.as_bytes()] {
                for prefix_len in 0..6usize {
                    for suffix_len in [0, 1, 2, 3, 7] {
                        for style in 0..5 {
                            let prefix: Vec<u8> = (0..prefix_len).map(|_| rng.next() as u8).collect();
                            let suffix: Vec<u8> = (0..suffix_len).map(|_| rng.next() as u8).collect();
                            let data = [&prefix[..], value, &suffix[..]].concat();
                            let encoded = match style {
                                0 => STANDARD.encode(&data),
                                1 => STANDARD_NO_PAD.encode(&data),
                                2 => URL_SAFE.encode(&data),
                                3 => URL_SAFE_NO_PAD.encode(&data),
                                _ => STANDARD.encode(&data).replace('/', "\\/"),
                            };
                            let body = format!(r#"{{"blob":"{encoded}","ok":true}}"#);
                            let out = red.redact(body.as_bytes());
                            let text = String::from_utf8_lossy(&out).into_owned();
                            assert!(out.windows(REPLACEMENT.len()).any(|w| w == REPLACEMENT), "{encoded} at +{prefix_len}: {text}");
                            assert!(text.starts_with(r#"{"blob":""#) && text.ends_with(r#"","ok":true}"#), "{text}");
                            // Decode every base64 run that is left, at every
                            // character offset, in both alphabets.
                            let unescaped = json_unescape(&out);
                            let is_b64 = |c: &u8| c.is_ascii_alphanumeric() || b"+/-_".contains(c);
                            for run in unescaped.split(|c| !is_b64(c)) {
                                for skip in 0..4.min(run.len()) {
                                    let rest = run.get(skip..).unwrap_or_default();
                                    let rest = rest.get(..rest.len() / 4 * 4).unwrap_or_default();
                                    for engine in [&STANDARD_NO_PAD, &URL_SAFE_NO_PAD] {
                                        if let Ok(decoded) = engine.decode(rest) {
                                            assert!(!contains(&decoded, secret.as_bytes()), "{encoded}: {text}");
                                        }
                                    }
                                }
                            }
                            // At most the boundary characters of the value's
                            // own encoding survive: 2 at each end.
                            let first = (8 * prefix_len).div_ceil(6);
                            let last = 8 * (prefix_len + value.len()) / 6;
                            let inner = encoded.get(first + 2..last.saturating_sub(2)).unwrap_or_default();
                            if inner.len() >= 4 {
                                assert!(!text.contains(inner), "{encoded}: {text}");
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn ordinary_text_is_untouched() {
        let red = redactor_for(SECRETS[0]);
        let table: &[&str] = &[
            r#"{"id":1,"path":"a\/b\/c","note":"\u00e9t\u00E9 \"quoted\" \\ back\nslash","emoji":"\ud83d\udd11"}"#,
            "https://example.com/search?q=sk%5Flive%2FAb%2Bcd%3Def+gh%22iX&lang=fr%2Dfr",
            "sk_live/Ab+cd=ef gh\"iX and sk_live/Ab+cd=ef_gh\"ij and sk_liv",
            r#"{"almost":"sk\u005flive\/Ab+cd=ef+gh\"i\u006B"}"#,
            "%%%%%25%2%%%u\\\\\\u\\u00\\uD83D\\uDC00\\uZZZZ%ZZ+++",
            "c2tfbGl2ZS9BYitjZD1lZiBnaCJpWA== c2tfbGl2ZS9BYi", // base64 of a near miss, and a short prefix
            "",
        ];
        for text in table {
            assert_eq!(String::from_utf8_lossy(&red.redact(text.as_bytes())), *text);
            assert!(!red.contains_any(text.as_bytes()), "{text}");
        }
    }

    /// Where a pattern byte is itself `%` or `\`, the literal and escaped
    /// readings overlap; each row: description, patterns, input, output.
    #[test]
    fn overlapping_readings() {
        let table: &[(&str, &[&str], &str, &str)] = &[
            ("literal percent", &["a%25b"], "xa%25by", "x[REDACTED]y"),
            ("escaped percent", &["a%25b"], "xa%2525by", "x[REDACTED]y"),
            ("a pattern's own percent is not an escape", &["a%41"], "a%41 aA a%2541", "[REDACTED] aA [REDACTED]"),
            ("literal backslash", &["a\\b"], "a\\b", "[REDACTED]"),
            ("JSON-escaped backslash", &["a\\b"], "a\\\\b a\\u005Cb", "[REDACTED] [REDACTED]"),
            ("longest reading wins: each backslash escaped", &["\\\\"], "\\\\\\\\", "[REDACTED]"),
            ("plus is a space, or a plus", &["a b", "c+d"], "a+b c+d c%2Bd a%20b", "[REDACTED] [REDACTED] [REDACTED] [REDACTED]"),
            ("lone surrogate is nothing", &["\u{1F511}"], "\\uD83D \\uDD11 \\uD83D\\uDD11 %F0%9F%94%91", "\\uD83D \\uDD11 [REDACTED] [REDACTED]"),
            ("truncated escapes at the end", &["ab"], "a%6", "a%6"),
            ("hex in any case", &["/"], "%2f%2F\\u002f\\u002F\\/", "[REDACTED][REDACTED][REDACTED][REDACTED][REDACTED]"),
        ];
        for (what, patterns, input, want) in table {
            let red = r(patterns);
            assert_eq!(String::from_utf8_lossy(&red.redact(input.as_bytes())), *want, "{what}");
            let chunks: Vec<&[u8]> = input.as_bytes().chunks(1).collect();
            assert_eq!(String::from_utf8_lossy(&stream(&mut r(patterns), &chunks)), *want, "{what}, byte by byte");
        }
    }

    /// A pattern of backslashes against input of backslashes has
    /// exponentially many readings; each state is visited once.
    #[test]
    fn backtracking_is_bounded() {
        let pattern = "\\".repeat(40);
        let red = r(&[&pattern]);
        let input = vec![b'\\'; 20_000];
        let start = std::time::Instant::now();
        let out = red.redact(&input);
        assert!(!out.is_empty() && out.iter().all(|&b| REPLACEMENT.contains(&b)));
        assert!(start.elapsed() < std::time::Duration::from_secs(20), "{:?}", start.elapsed());
    }

    #[test]
    fn hostile_fragments_never_panic() {
        let mut rng = Rng(0xA4093822299F31D0);
        let alphabet = b"%\\u+0aFdD8C\"/=";
        for _ in 0..2000 {
            let body: Vec<u8> = (0..rng.below(64)).map(|_| alphabet[rng.below(alphabet.len())]).collect();
            let mut red = r(&["a/\"\u{1F511}", "%u"]);
            let mut streamed = Vec::new();
            for c in random_chunks(&body, &mut rng) {
                streamed.extend(red.push(c));
            }
            streamed.extend(red.finish());
            assert_eq!(streamed, r(&["a/\"\u{1F511}", "%u"]).redact(&body));
        }
    }

    #[test]
    fn header_names_match_in_any_case() {
        let red = r(&["SeKret-Key1"]);
        let h: Vec<(String, String)> =
            [("X-SEKRET-KEY1-Echo", "v"), ("X-Sekret%2DKey1", "v"), ("X-Other", "SeKret-Key1")].iter().map(|(a, b)| (a.to_string(), b.to_string())).collect();
        let out = filter_response_headers(&h, &red, true);
        assert_eq!(out, vec![("x-other".to_string(), "[REDACTED]".to_string())]);
        // Values stay case-sensitive: base64 spellings differ by case.
        assert_eq!(red.redact(b"sekret-key1"), b"sekret-key1");
    }

    #[test]
    fn base64_spellings_cover_each_alignment() {
        let value = b"Bearer tok_9f8e7d6c5b4a";
        let spellings = base64_spellings(value);
        for offset in 0..3 {
            for engine in [&STANDARD, &URL_SAFE] {
                let data = [&b"xyz"[..offset], value, b"!"].concat();
                let encoded = engine.encode(&data);
                let covered = spellings.iter().any(|s| encoded.as_bytes().windows(s.len()).any(|w| w == &s[..]) && s.len() + 3 >= value.len() * 4 / 3);
                assert!(covered, "offset {offset}: {encoded}");
            }
        }
        assert!(base64_spellings(b"pw").is_empty(), "short values would match ordinary text");
    }
}
