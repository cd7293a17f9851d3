//! Filter response: scrub every injected value from headers and streamed bodies.
//!
//! Invariants:
//! - Output never contains a pattern, whatever the chunking: a match that
//!   straddles chunks is found because the tail of each chunk that could
//!   start a match (at most `longest pattern − 1` bytes) is carried over.
//! - Memory is bounded by one chunk plus that carry; bodies are never buffered.
//! - Text without patterns passes through byte-identical.
//! - `Set-Cookie` from credentialed origins and hop-by-hop headers are dropped.

use std::rc::Rc;

use crate::secret::Secret;

/// What a scrubbed value is replaced with.
pub const REPLACEMENT: &[u8] = b"[REDACTED]";

/// A streaming multi-pattern replacer.
pub struct Redactor {
    /// Longest first, so the leftmost match is also the longest.
    patterns: Vec<Rc<Secret>>,
    /// Set-Horspool skip table over the first `min_len` bytes of every
    /// pattern: looking at the last byte of a `min_len` window starting at
    /// `i`, no pattern can start at `i..i + shift[byte]`.
    shift: [u8; 256],
    min_len: usize,
    max_len: usize,
    carry: Vec<u8>,
}

impl Redactor {
    pub fn new(patterns: Vec<Secret>) -> Redactor {
        Redactor::shared(patterns.into_iter().map(Rc::new).collect())
    }

    /// Builds a redactor over shared patterns: a prepared credential's
    /// encodings are reused across requests, not copied.
    pub fn shared(patterns: Vec<Rc<Secret>>) -> Redactor {
        let mut patterns: Vec<Rc<Secret>> = patterns.into_iter().filter(|p| !p.is_empty()).collect();
        patterns.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.expose().cmp(b.expose())));
        patterns.dedup_by(|a, b| a.expose() == b.expose());
        let max_len = patterns.first().map_or(0, |p| p.len());
        // Windows longer than 255 gain nothing measurable; cap so shifts fit a byte.
        let min_len = patterns.iter().map(|p| p.len()).min().unwrap_or(0).min(255);
        let mut shift = [min_len as u8; 256];
        for p in &patterns {
            let prefix = &p.expose()[..min_len];
            for (j, &b) in prefix.iter().enumerate() {
                let s = (min_len - 1 - j) as u8;
                if s < shift[b as usize] {
                    shift[b as usize] = s;
                }
            }
        }
        Redactor { patterns, shift, min_len, max_len, carry: Vec::new() }
    }

    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    fn match_at(&self, buf: &[u8], i: usize) -> Option<usize> {
        let rest = buf.get(i..)?;
        self.patterns.iter().map(|p| p.expose()).find(|p| rest.starts_with(p)).map(<[u8]>::len)
    }

    /// Scrubs `buf` up to `limit` (every position below it is decidable)
    /// and returns the output plus the index where undecided bytes start.
    /// Scrubs `buf`, deciding every start position below `limit`, and
    /// returns how far it consumed (everything before that is emitted).
    ///
    /// A skip is only taken over positions where no pattern can start: the
    /// byte at the end of the `min_len` window does not occur at a matching
    /// offset of any pattern's prefix. Every byte a decision reads is in
    /// `buf`, so positions skipped past `limit` are decided too.
    fn scan(&self, buf: &[u8], limit: usize, out: &mut Vec<u8>) -> usize {
        if self.patterns.is_empty() {
            out.extend_from_slice(buf);
            return buf.len();
        }
        let m = self.min_len;
        // No match can start at or after `last_start` within `buf`.
        let last_start = buf.len().saturating_sub(m - 1);
        let end = limit.min(last_start);
        let mut i = 0;
        let mut copied = 0;
        while i < end {
            let skip = self.shift[buf[i + m - 1] as usize] as usize;
            if skip > 0 {
                i += skip;
                continue;
            }
            if let Some(len) = self.match_at(buf, i) {
                out.extend_from_slice(&buf[copied..i]);
                out.extend_from_slice(REPLACEMENT);
                i += len;
                copied = i;
                continue;
            }
            i += 1;
        }
        // Only when deciding the whole buffer (end of stream, or patterns of
        // one byte) is the tail known match-free; mid-stream, positions from
        // `i` on may start a match the next chunk completes.
        let consumed = if limit >= buf.len() { buf.len() } else { i.max(copied) };
        out.extend_from_slice(&buf[copied..consumed]);
        consumed
    }

    /// Feeds one chunk; returns what can be emitted now.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        if self.patterns.is_empty() {
            return chunk.to_vec();
        }
        let mut buf = std::mem::take(&mut self.carry);
        buf.extend_from_slice(chunk);
        // A match starting below `limit` fits entirely in `buf`; positions
        // at or above it might start a match that the next chunk completes.
        let limit = buf.len().saturating_sub(self.max_len - 1);
        let mut out = Vec::with_capacity(buf.len());
        let consumed = self.scan(&buf, limit, &mut out);
        buf.drain(..consumed);
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

    /// Whether a complete value contains any pattern.
    pub fn contains_any(&self, input: &[u8]) -> bool {
        !self.patterns.is_empty() && (0..input.len()).any(|i| self.match_at(input, i).is_some())
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
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "proxy-connection",
    "te", "trailer", "transfer-encoding", "upgrade",
    // The body may change length when scrubbed; the runtime re-frames it.
    "content-length",
];

/// Filters the origin's response headers: drops hop-by-hop headers,
/// `Content-Length`, anything claiming to be Airlock's, `Set-Cookie` from
/// credentialed origins, and scrubs every remaining value.
pub fn filter_response_headers(
    headers: &[(String, String)],
    redactor: &Redactor,
    credentialed: bool,
) -> Vec<(String, String)> {
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
        if redactor.contains_any(lower.as_bytes()) {
            continue;
        }
        let scrubbed = redactor.redact(value.as_bytes());
        out.push((lower, String::from_utf8_lossy(&scrubbed).into_owned()));
    }
    out
}

/// A tool's redirect: a `Location` on the tool's own origin (under its base
/// path) is rewritten onto the broker route `/t/{tool}/…`, so the sandbox
/// follows it through Airlock; any other target is returned as is (already
/// scrubbed): the sandbox may follow it itself, without the credential.
pub fn tool_location(location: &str, request_url: &str, tool: &crate::policy::Tool) -> String {
    // Not parsed when it holds a punycode label: see `egress::has_punycode`.
    if crate::egress::has_punycode(location) {
        return location.to_string();
    }
    let Some(target) = url::Url::parse(request_url).ok().and_then(|u| u.join(location).ok()) else {
        return location.to_string();
    };
    let origin = target.origin().ascii_serialization();
    let rest = target.path().strip_prefix(tool.origin.base_path.as_str()).filter(|r| r.starts_with('/') || r.is_empty());
    match rest {
        Some(rest) if origin == tool.origin.base => {
            let mut out = format!("/t/{}{}", tool.name, if rest.is_empty() { "/" } else { rest });
            if let Some(q) = target.query() {
                out.push('?');
                out.push_str(q);
            }
            out
        }
        _ => location.to_string(),
    }
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
            assert!(red.carry.len() < 10);
        }
        // A partial match at the end is held back, then flushed.
        let out = red.push(b"012345678");
        assert!(out.iter().all(|&b| b == b'x'));
        assert_eq!(red.finish(), b"012345678");
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
    fn tool_redirects() {
        let policy = crate::policy::Policy::parse(r#"{"version":1,"audience":"a","tools":{"gh":{"origin":"https://api.github.com/v3","rules":[{"methods":["GET"],"path":"/**","level":"read"}]}}}"#).unwrap();
        let tool = policy.tool("gh").unwrap();
        let from = "https://api.github.com/v3/repos/o/r";
        let table: &[(&str, &str)] = &[
            ("/v3/repositories/42", "/t/gh/repositories/42"),
            ("https://api.github.com/v3/repos/o/r2?page=2", "/t/gh/repos/o/r2?page=2"),
            ("r2", "/t/gh/repos/o/r2"),
            ("https://api.github.com/other", "https://api.github.com/other"),
            ("https://api.github.com/v3x/a", "https://api.github.com/v3x/a"),
            ("https://codeload.github.com/o/r/zip", "https://codeload.github.com/o/r/zip"),
            ("http://api.github.com/v3/x", "http://api.github.com/v3/x"),
            ("http://xn--ttgrxct7l/", "http://xn--ttgrxct7l/"),
        ];
        for (loc, want) in table {
            assert_eq!(tool_location(loc, from, tool), *want, "{loc}");
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
}
