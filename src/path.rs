//! Request paths: decode once, reject what is ambiguous, re-encode canonically.
//!
//! Invariants:
//! - Ambiguous forms are refused, never repaired: dot segments in any
//!   spelling (including the servlet spelling `..;x`), encoded separators
//!   (`%2f`, `%5c`), backslashes, NUL and other control bytes, malformed or
//!   double percent-encoding, invalid UTF-8 (which includes overlong
//!   encodings), empty segments (`//`, `/;x/`), and Unicode compatibility
//!   forms that NFKC normalization turns into `.`, `/`, `\`, `;` or `%`.
//! - The segments rules are matched against are exactly the segments the
//!   origin receives: [`NormalizedPath::encoded`] is derived from them alone.

pub use crate::error::PathError;

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

/// A query component as a form decoder reads it: `+` is a space, then
/// `%XX` (leniently).
pub(crate) fn form_decode(component: &str) -> Vec<u8> {
    if component.contains('+') {
        percent_decode_lenient(component.replace('+', " ").as_bytes())
    } else {
        percent_decode_lenient(component.as_bytes())
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
    if !s.is_ascii() && s.chars().any(is_compatibility_form) {
        return Err(PathError::CompatibilityForm);
    }
    // Servlet containers (Tomcat, Jetty, Undertow) cut `;` parameters off a
    // segment before resolving dot segments, so `..;x` is `..` to them, and
    // `;x` is an empty segment that collapses into its neighbour. Refused
    // whether or not the tool allows path parameters.
    match s.split(';').next() {
        Some("." | "..") => return Err(PathError::DotSegment),
        Some("") if s.contains(';') => return Err(PathError::EmptySegment),
        _ => {}
    }
    Ok(s)
}

/// Code points whose NFKC form differs from them and contains `.`, `/`,
/// `\`, `;` or `%`, as inclusive ranges, sorted. Generated with Python
/// 3.11.7's `unicodedata` (Unicode 14.0.0):
///
/// ```text
/// python3 -c "import unicodedata as u; print(u.unidata_version, [hex(c)
///   for c in range(0x110000) if u.normalize('NFKC', chr(c)) != chr(c)
///   and any(x in u.normalize('NFKC', chr(c)) for x in './;%' + chr(92))])"
/// ```
///
/// `;` and `%` go beyond the separators: `..；` becomes the servlet `..;`,
/// and `％2e` a second layer of percent-encoding.
const COMPATIBILITY_FORMS: &[(u32, u32)] = &[
    (0x037E, 0x037E),   // GREEK QUESTION MARK -> ';' (even under NFC)
    (0x2024, 0x2026),   // ONE DOT LEADER..HORIZONTAL ELLIPSIS -> '.', '..', '...'
    (0x2100, 0x2101),   // ACCOUNT OF, ADDRESSED TO THE SUBJECT -> 'a/c', 'a/s'
    (0x2105, 0x2106),   // CARE OF, CADA UNA -> 'c/o', 'c/u'
    (0x2488, 0x249B),   // DIGIT ONE FULL STOP..NUMBER TWENTY FULL STOP -> '1.'..'20.'
    (0x33C2, 0x33C2),   // SQUARE AM -> 'a.m.'
    (0x33C7, 0x33C7),   // SQUARE CO -> 'Co.'
    (0x33D8, 0x33D8),   // SQUARE PM -> 'p.m.'
    (0xFE14, 0xFE14),   // PRESENTATION FORM FOR VERTICAL SEMICOLON -> ';'
    (0xFE19, 0xFE19),   // PRESENTATION FORM FOR VERTICAL HORIZONTAL ELLIPSIS -> '...'
    (0xFE30, 0xFE30),   // PRESENTATION FORM FOR VERTICAL TWO DOT LEADER -> '..'
    (0xFE52, 0xFE52),   // SMALL FULL STOP -> '.'
    (0xFE54, 0xFE54),   // SMALL SEMICOLON -> ';'
    (0xFE68, 0xFE68),   // SMALL REVERSE SOLIDUS -> backslash
    (0xFE6A, 0xFE6A),   // SMALL PERCENT SIGN -> '%'
    (0xFF05, 0xFF05),   // FULLWIDTH PERCENT SIGN -> '%'
    (0xFF0E, 0xFF0F),   // FULLWIDTH FULL STOP, FULLWIDTH SOLIDUS -> '.', '/'
    (0xFF1B, 0xFF1B),   // FULLWIDTH SEMICOLON -> ';'
    (0xFF3C, 0xFF3C),   // FULLWIDTH REVERSE SOLIDUS -> backslash
    (0x1F100, 0x1F100), // DIGIT ZERO FULL STOP -> '0.'
];

fn is_compatibility_form(c: char) -> bool {
    let c = u32::from(c);
    COMPATIBILITY_FORMS
        .binary_search_by(|&(lo, hi)| {
            if hi < c {
                std::cmp::Ordering::Less
            } else if lo > c {
                std::cmp::Ordering::Greater
            } else {
                std::cmp::Ordering::Equal
            }
        })
        .is_ok()
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
    let encoded_len: usize =
        segments.iter().map(|s| 1 + s.bytes().map(|b| if keep_literal(b) { 1 } else { 3 }).sum::<usize>()).sum::<usize>() + usize::from(trailing_slash);
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

    #[test]
    fn rejects_servlet_dot_segments_and_empty_parameter_segments() {
        use PathError::*;
        let table: &[(&str, &str, PathError)] = &[
            ("dot-dot param", "/a/..;/admin", DotSegment),
            ("leading dot-dot param", "/..;/", DotSegment),
            ("dot param", "/.;/x", DotSegment),
            ("dot param value", "/a/.;x/b", DotSegment),
            ("jsessionid", "/a/..;jsessionid=1/b", DotSegment),
            ("encoded dot-dot param", "/%2e%2e;x", DotSegment),
            ("mixed encoded", "/%2E.;/x", DotSegment),
            ("encoded semicolon", "/..%3b/x", DotSegment),
            ("encoded dot and semicolon", "/.%2e%3Bx/y", DotSegment),
            ("two params", "/..;a;b/x", DotSegment),
            ("trailing", "/a/..;", DotSegment),
            ("empty before param", "/a/;x/b", EmptySegment),
            ("bare semicolon", "/a/;/b", EmptySegment),
            ("encoded bare semicolon", "/a/%3b/b", EmptySegment),
        ];
        for (what, raw, want) in table {
            assert_eq!(normalize(raw).unwrap_err(), *want, "{what}: {raw:?}");
        }
        // A parameter on an ordinary segment is still a path, decided by the
        // tool's `allow_path_params`; so are dots that are not a whole segment.
        for ok in ["/v1/x;y", "/a;b=c/d", "/...;x", "/.x;y", "/..x;y", "/a.b/c"] {
            assert!(normalize(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_compatibility_forms_raw_and_encoded() {
        // One row per range end of the table, raw and percent-encoded.
        let mut chars: Vec<char> = Vec::new();
        for &(lo, hi) in COMPATIBILITY_FORMS {
            chars.extend([lo, hi].iter().filter_map(|&c| char::from_u32(c)));
        }
        for c in chars {
            let mut enc = String::new();
            percent_encode(c.to_string().as_bytes(), |_| false, &mut enc);
            for raw in [format!("/a{c}b"), format!("/a{enc}b"), format!("/x/{c}"), format!("/x/{enc}/")] {
                assert_eq!(normalize(&raw), Err(PathError::CompatibilityForm), "U+{:04X} in {raw:?}", u32::from(c));
            }
        }
        for raw in [
            "/\u{ff0e}\u{ff0e}/admin",
            "/a\u{ff0f}b",
            "/a\u{ff3c}b",
            "/\u{2025}",
            "/%E2%80%A5",
            "/%EF%BC%8E%EF%BC%8E",
            "/a\u{fe68}b",
            "/\u{2488}",
            "/%F0%9F%84%80",
            "/..\u{ff1b}x",
            "/\u{ff05}2e",
            "/a\u{37e}b",
        ] {
            assert_eq!(normalize(raw), Err(PathError::CompatibilityForm), "{raw:?}");
        }
        // Neighbours of the ranges and ordinary non-ASCII text pass.
        for ok in [
            "/\u{e9}",
            "/caf%C3%A9",
            "/\u{2023}",
            "/\u{2027}",
            "/\u{2487}",
            "/\u{249c}",
            "/\u{ff0d}",
            "/\u{ff10}",
            "/\u{3002}",
            "/\u{1f101}",
            "/\u{65e5}\u{672c}",
        ] {
            assert!(normalize(ok).is_ok(), "{ok:?}");
        }
    }

    #[test]
    fn compatibility_table_is_sorted_and_disjoint() {
        assert!(COMPATIBILITY_FORMS.iter().all(|&(lo, hi)| lo <= hi));
        assert!(COMPATIBILITY_FORMS.windows(2).all(|w| w[0].1 < w[1].0));
        let count: u32 = COMPATIBILITY_FORMS.iter().map(|&(lo, hi)| hi - lo + 1).sum();
        assert_eq!(count, 44, "the generator lists 44 code points for Unicode 14.0.0");
        for c in ['.', '/', '\\', ';', '%', 'a', '\u{0}', '\u{10ffff}'] {
            assert!(!is_compatibility_form(c), "{c:?}");
        }
    }
}
