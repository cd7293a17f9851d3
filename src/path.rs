//! Request paths: decode once, reject what is ambiguous, re-encode canonically.
//!
//! Invariants:
//! - Ambiguous forms are refused, never repaired: dot segments in any
//!   spelling, encoded separators (`%2f`, `%5c`), backslashes, NUL and other
//!   control bytes, malformed or double percent-encoding, invalid UTF-8
//!   (which includes overlong encodings), empty segments (`//`).
//! - The segments rules are matched against are exactly the segments the
//!   origin receives: [`NormalizedPath::encoded`] is derived from them alone.

/// Why a path was refused. Never shown to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathError {
    NotAbsolute,
    TooLong,
    EmptySegment,
    DotSegment,
    EncodedSeparator,
    Backslash,
    ControlByte,
    BadPercentEncoding,
    DoubleEncoding,
    InvalidUtf8,
    /// `;` parameters in a tool that does not allow them: origins disagree
    /// on whether `/a;x/b` is the segment `a` or `a;x`.
    PathParameter,
}

/// Longest path accepted, encoded.
pub const MAX_PATH_LEN: usize = 4096;

/// A path that passed every check, as decoded segments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NormalizedPath {
    segments: Vec<String>,
    trailing_slash: bool,
}

impl NormalizedPath {
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// Whether any segment carries a `;` parameter.
    pub fn has_params(&self) -> bool {
        self.segments.iter().any(|s| s.contains(';'))
    }

    pub fn has_trailing_slash(&self) -> bool {
        self.trailing_slash
    }

    /// The canonical encoded form, starting with `/`: what the origin gets.
    pub fn encoded(&self) -> String {
        let mut out = String::with_capacity(self.segments.iter().map(|s| s.len() + 1).sum::<usize>() + 1);
        for seg in &self.segments {
            out.push('/');
            encode_segment(seg, &mut out);
        }
        if self.trailing_slash || self.segments.is_empty() {
            out.push('/');
        }
        out
    }
}

/// Bytes kept literal in a path segment (RFC 3986 `pchar` minus `%`);
/// everything else is percent-encoded.
fn keep_literal(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@".contains(&b)
}

fn encode_segment(seg: &str, out: &mut String) {
    percent_encode(seg.as_bytes(), keep_literal, out);
}

/// Appends `bytes` to `out`, keeping the bytes `keep` accepts and writing
/// every other as `%XX` (upper-case hex).
pub(crate) fn percent_encode(bytes: &[u8], keep: impl Fn(u8) -> bool, out: &mut String) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for &b in bytes {
        if keep(b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[(b >> 4) as usize] as char);
            out.push(HEX[(b & 15) as usize] as char);
        }
    }
}

/// Decodes every well-formed `%XX` and keeps everything else as it is. For
/// *looking at* text the way a lenient parser would (query keys, hosts in a
/// URL); request paths use the strict decoder below, which refuses instead.
pub(crate) fn percent_decode_lenient(bytes: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(h), Some(l)) => {
                out.push(h << 4 | l);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn decode_segment(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let (h, l) = match (bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
                (Some(h), Some(l)) => (h, l),
                _ => return Err(PathError::BadPercentEncoding),
            };
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    for &b in &out {
        match b {
            b'/' => return Err(PathError::EncodedSeparator),
            b'\\' => return Err(PathError::Backslash),
            // `%25` decodes to `%`: a second decoding layer (`%252e` → `%2e`
            // → `.`) at the origin or a proxy would see a different path.
            b'%' => return Err(PathError::DoubleEncoding),
            0..=0x1f | 0x7f => return Err(PathError::ControlByte),
            _ => {}
        }
    }
    // `from_utf8` also refuses overlong encodings and surrogates.
    let s = String::from_utf8(out).map_err(|_| PathError::InvalidUtf8)?;
    if s == "." || s == ".." {
        return Err(PathError::DotSegment);
    }
    Ok(s)
}

/// Normalizes the raw (still percent-encoded) path of a request.
///
/// `raw` must start with `/`. A single trailing slash is kept (it is
/// meaningful to some APIs) but does not take part in rule matching.
pub fn normalize(raw: &str) -> Result<NormalizedPath, PathError> {
    if raw.len() > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    let rest = raw.strip_prefix('/').ok_or(PathError::NotAbsolute)?;
    // Checked on the raw form too: a literal backslash or control byte is
    // refused whether or not it was encoded.
    for b in rest.bytes() {
        match b {
            b'\\' => return Err(PathError::Backslash),
            0..=0x1f | 0x7f => return Err(PathError::ControlByte),
            _ => {}
        }
    }
    if rest.is_empty() {
        return Ok(NormalizedPath { segments: Vec::new(), trailing_slash: false });
    }
    let (body, trailing_slash) = match rest.strip_suffix('/') {
        Some(b) => (b, true),
        None => (rest, false),
    };
    let mut segments = Vec::new();
    for raw_seg in body.split('/') {
        if raw_seg.is_empty() {
            return Err(PathError::EmptySegment);
        }
        segments.push(decode_segment(raw_seg)?);
    }
    // The cap holds for what the origin receives: a literal `[` becomes
    // `%5B`, so the canonical form can be longer than the raw path.
    let encoded_len: usize = segments
        .iter()
        .map(|s| 1 + s.bytes().map(|b| if keep_literal(b) { 1 } else { 3 }).sum::<usize>())
        .sum::<usize>()
        + usize::from(trailing_slash);
    if encoded_len > MAX_PATH_LEN {
        return Err(PathError::TooLong);
    }
    Ok(NormalizedPath { segments, trailing_slash })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_and_canonicalizes() {
        let table: &[(&str, &[&str], &str)] = &[
            ("/", &[], "/"),
            ("/repos/o/r", &["repos", "o", "r"], "/repos/o/r"),
            ("/repos/o/r/", &["repos", "o", "r"], "/repos/o/r/"),
            ("/a%20b/c", &["a b", "c"], "/a%20b/c"),
            ("/%41%42", &["AB"], "/AB"),
            ("/caf%C3%A9", &["café"], "/caf%C3%A9"),
            ("/a;b=c", &["a;b=c"], "/a;b=c"),
            ("/...", &["..."], "/..."),
            ("/.x", &[".x"], "/.x"),
            ("/a:b@c", &["a:b@c"], "/a:b@c"),
            ("/a%3Fb", &["a?b"], "/a%3Fb"),
        ];
        for (raw, segs, enc) in table {
            let p = normalize(raw).unwrap_or_else(|e| panic!("{raw}: {e:?}"));
            assert_eq!(p.segments(), *segs, "{raw}");
            assert_eq!(p.encoded(), *enc, "{raw}");
            // Canonical form is a fixed point.
            assert_eq!(normalize(&p.encoded()).unwrap(), p, "{raw}");
        }
    }

    #[test]
    fn rejects_ambiguous_paths() {
        use PathError::*;
        let table: &[(&str, &str, PathError)] = &[
            ("dot-dot", "/a/../b", DotSegment),
            ("dot", "/a/./b", DotSegment),
            ("encoded dot-dot lower", "/a/%2e%2e/b", DotSegment),
            ("encoded dot-dot upper", "/a/%2E%2E/b", DotSegment),
            ("mixed dot-dot", "/a/%2E./b", DotSegment),
            ("mixed dot-dot 2", "/a/.%2e/b", DotSegment),
            ("trailing dot-dot", "/a/..", DotSegment),
            ("double-encoded dot", "/a/%252e%252e/b", DoubleEncoding),
            ("double-encoded slash", "/a%252fb", DoubleEncoding),
            ("encoded slash", "/a%2fb", EncodedSeparator),
            ("encoded slash upper", "/a%2Fb", EncodedSeparator),
            ("encoded backslash", "/a%5cb", Backslash),
            ("backslash", "/a\\b", Backslash),
            ("backslash dot-dot", "/a/..\\b", Backslash),
            ("encoded NUL", "/a%00b", ControlByte),
            ("raw NUL", "/a\0b", ControlByte),
            ("encoded newline", "/a%0ab", ControlByte),
            ("encoded CR", "/a%0Db", ControlByte),
            ("encoded DEL", "/a%7fb", ControlByte),
            ("tab", "/a\tb", ControlByte),
            ("bad percent", "/a%zzb", BadPercentEncoding),
            ("truncated percent", "/a%2", BadPercentEncoding),
            ("lone percent", "/a%", BadPercentEncoding),
            ("overlong slash", "/a%c0%afb", InvalidUtf8),
            ("overlong dot", "/%c0%ae%c0%ae/b", InvalidUtf8),
            ("invalid utf8", "/a%ffb", InvalidUtf8),
            ("surrogate", "/%ed%a0%80", InvalidUtf8),
            ("double slash", "/a//b", EmptySegment),
            ("leading double slash", "//a", EmptySegment),
            ("double trailing slash", "/a//", EmptySegment),
            ("relative", "a/b", NotAbsolute),
            ("empty", "", NotAbsolute),
        ];
        for (what, raw, want) in table {
            assert_eq!(normalize(raw).unwrap_err(), *want, "{what}: {raw:?}");
        }
        assert_eq!(normalize(&format!("/{}", "a".repeat(MAX_PATH_LEN))).unwrap_err(), TooLong);
        // The cap applies to the canonical form (found by fuzzing): 1366
        // literal `[` encode to 4099 bytes; 1365 encode to exactly 4096.
        assert_eq!(normalize(&format!("/{}", "[".repeat(1366))).unwrap_err(), TooLong);
        let at_cap = normalize(&format!("/{}", "[".repeat(1365))).unwrap();
        assert_eq!(at_cap.encoded().len(), MAX_PATH_LEN);
        assert_eq!(normalize(&at_cap.encoded()), Ok(at_cap));
    }
}
