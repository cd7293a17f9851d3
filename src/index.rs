//! Package indexes: the links of a PEP 503 simple page (HTML), a PEP 691
//! simple page (JSON) or an npm package document, served by an egress host
//! the policy marks `package_index`, rewritten onto Airlock's own egress
//! route, so an installer pointed at `<airlock>/e/<index>/…` fetches every
//! file through Airlock and a closed sandbox needs no other way out.
//!
//! Invariants:
//! - A link is rewritten only to `<airlock>/e/<host>/…` for a target the
//!   egress allowlist allows, by the same decision as a redirect's
//!   `Location` ([`egress::route`]: host, scheme, port, no userinfo); any
//!   other link is removed with what holds it: the `<a>…</a>`, the PEP 691
//!   file entry, the npm version. Rewriting grants nothing: the egress route
//!   decides again when the link is followed.
//! - Fragments (`#sha256=…`) and every other attribute and field are kept.
//! - A document is rewritten whole or refused ([`Uninspectable::Index`]),
//!   never passed half-rewritten: whatever the scanner cannot read exactly as
//!   an HTML parser would (an unterminated tag, a `<` or a control character
//!   inside a tag, an unknown character reference in an `href`, a `<base>`,
//!   a charset that is not ASCII-compatible, a body the runtime did not
//!   decode, one larger than [`MAX_BODY`]) or as strict JSON is refused.
//!
//! Must never: fetch anything, or pass a link it did not decide.

use serde_json::Value;
use url::Url;

use crate::egress::{self, EgressRule};
pub use crate::error::Uninspectable;
use crate::mcp;

/// The syntax of an index document, from its `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `text/html`, `application/vnd.pypi.simple.v1+html`, …
    Html,
    /// `application/vnd.pypi.simple.v1+json`, `application/json`,
    /// `application/vnd.npm.install-v1+json`, …
    Json,
}

/// Index documents are read whole to be rewritten; a larger one (or one
/// larger than the policy's `max_response_body_bytes`) is refused. Several
/// times the largest PyPI project pages and npm install documents, and small
/// enough that a document, its parse and its rewrite fit in one isolate.
pub const MAX_BODY: u64 = 16 * 1024 * 1024;

/// Charsets in which every ASCII byte means its ASCII character, so a
/// byte-level scan sees the tags an installer sees.
const ASCII_COMPATIBLE: &[&str] = &["utf-8", "utf8", "us-ascii", "iso-8859-1", "windows-1252"];

/// Which answers of a package-index host are rewritten: a `GET`'s 2xx with
/// an HTML or JSON body. Everything else (files, errors, `HEAD`) passes
/// unchanged. An index document that cannot be read as it is written (a
/// `206` slice, a coding the runtime did not decode, a charset that is not
/// ASCII-compatible) is refused.
pub fn format(method: &str, status: u16, headers: &[(String, String)]) -> Result<Option<Format>, Uninspectable> {
    let content_type = crate::request::header(headers, "content-type").unwrap_or_default().to_ascii_lowercase();
    let format = match content_type.as_str() {
        t if t.contains("html") => Format::Html,
        t if t.contains("json") => Format::Json,
        _ => return Ok(None),
    };
    if method != "GET" || !(200..300).contains(&status) || matches!(status, 204 | 205) {
        return Ok(None);
    }
    if status == 206 {
        return Err(Uninspectable::Index("partial content"));
    }
    crate::respond::check_encoding(headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("content-encoding")).map(|(_, v)| v.as_str()))?;
    let charset = content_type.find("charset=").and_then(|i| content_type.get(i + 8..)).map(|c| c.trim_start_matches('"'));
    if charset.is_some_and(|c| !ASCII_COMPATIBLE.iter().any(|a| c.starts_with(a))) {
        return Err(Uninspectable::Index("charset"));
    }
    Ok(Some(format))
}

/// How the links of one page are rewritten.
#[derive(Debug)]
pub struct Links<'a> {
    /// The page's own URL at its origin, against which links resolve.
    page: Url,
    /// Airlock's origin as the sandbox reached it (`https://airlock.example`).
    airlock: String,
    rules: &'a [EgressRule],
    own_host: Option<&'a str>,
}

impl<'a> Links<'a> {
    /// For a page fetched from `page_url` on behalf of a request to Airlock
    /// at `request_url`; `None` when the page's host is not a package index.
    pub fn new(page_url: &str, request_url: &str, rules: &'a [EgressRule], own_host: Option<&'a str>) -> Option<Links<'a>> {
        let page = Url::parse(page_url).ok()?;
        egress::rule_for(rules, page.host_str()?).filter(|r| r.package_index)?;
        // `scheme://authority` of the request URL, as the platform gives it.
        let (scheme, rest) = request_url.split_once("://")?;
        let authority = rest.split(['/', '?', '#']).next()?;
        let airlock = [scheme, "://", authority].concat();
        Some(Links { page, airlock, rules, own_host })
    }

    /// The document with its links rewritten, or why it was refused.
    pub fn rewrite(&self, format: Format, body: &[u8]) -> Result<Vec<u8>, Uninspectable> {
        match format {
            Format::Html => self.html(body),
            Format::Json => self.json(body),
        }
        .map_err(Uninspectable::Index)
    }

    /// A link, resolved against the page's URL, as an absolute URL on the
    /// egress route with its fragment; `None` when it is not allowed.
    fn link(&self, link: &str) -> Option<String> {
        let (route, target) = egress::route(link, &self.page, self.rules, self.own_host)?;
        let mut out = [self.airlock.as_str(), &route].concat();
        if let Some(fragment) = target.fragment() {
            out.push('#');
            out.push_str(fragment);
        }
        Some(out)
    }

    /// HTML: every `<a>` start tag's `href` is rewritten, or the anchor is
    /// removed up to its `</a>`. Only anchors matter to installers, and every anchor is found:
    /// wherever the page has `<a` followed by a delimiter (in a comment or
    /// a script too), it is read as a tag.
    fn html(&self, body: &[u8]) -> Result<Vec<u8>, &'static str> {
        let mut out = Vec::with_capacity(body.len() + body.len() / 4);
        let (mut copied, mut at) = (0, 0);
        while let Some((lt, name_end)) = next_tag(body, at)? {
            let tag = tag(body, name_end)?;
            out.extend_from_slice(body.get(copied..lt).unwrap_or_default());
            // The tag as written, each `href` value replaced by its link.
            let mut rewritten = Some(Vec::new());
            let mut from = lt;
            for (start, end, href) in &tag.hrefs {
                let link = href.as_deref().and_then(|h| self.link(h));
                if let (Some(tag), Some(link)) = (&mut rewritten, link) {
                    tag.extend_from_slice(body.get(from..*start).unwrap_or_default());
                    tag.push(b'"');
                    for b in link.bytes() {
                        match b {
                            b'&' => tag.extend_from_slice(b"&amp;"),
                            b'"' => tag.extend_from_slice(b"&quot;"),
                            _ => tag.push(b),
                        }
                    }
                    tag.push(b'"');
                    from = *end;
                } else {
                    rewritten = None;
                }
            }
            at = match rewritten {
                Some(rewritten) => {
                    out.extend(rewritten);
                    out.extend_from_slice(body.get(from..tag.end).unwrap_or_default());
                    tag.end
                }
                None => {
                    // The space keeps what was before and after the anchor
                    // from joining into a tag nobody scanned (`<` + `a …`).
                    out.push(b' ');
                    end_of_anchor(body, tag.end).unwrap_or(tag.end)
                }
            };
            copied = at;
        }
        out.extend_from_slice(body.get(copied..).unwrap_or_default());
        Ok(out)
    }

    /// JSON: every string under a `url` (PEP 691 `files[].url`) or
    /// `tarball` (npm `versions.*.dist.tarball`) key is rewritten, or the
    /// object holding it is removed, and with an npm `dist` its version.
    /// The document is read as strictly as an MCP message (no duplicate
    /// or case-folded sibling keys, no BOM) and sent in canonical form.
    fn json(&self, body: &[u8]) -> Result<Vec<u8>, &'static str> {
        let mut doc = mcp::parse_strict(body).map_err(|_| "invalid JSON")?;
        match self.keep(&mut doc) {
            true => Ok(mcp::canonical(&doc)),
            false => Err("the document is a link that is not allowed"),
        }
    }

    /// Rewrites the links in a value; `false` when it must be removed.
    fn keep(&self, value: &mut Value) -> bool {
        match value {
            Value::Array(items) => {
                items.retain_mut(|v| self.keep(v));
                true
            }
            Value::Object(map) => {
                // Rebuilt rather than `retain`ed: the map's removal code is
                // a kilobyte of Wasm the worker does not otherwise need.
                let mut keep = true;
                for (key, mut v) in std::mem::take(map) {
                    let kept = match (&mut v, key.as_str()) {
                        (Value::String(s), "url" | "tarball") => {
                            match self.link(s) {
                                Some(link) => *s = link,
                                None => keep = false,
                            }
                            true
                        }
                        _ => self.keep(&mut v),
                    };
                    keep &= kept || key != "dist";
                    if kept {
                        map.insert(key, v);
                    }
                }
                keep
            }
            _ => true,
        }
    }
}

/// One `<a>` start tag.
struct Tag {
    /// Just past its `>`.
    end: usize,
    /// Each `href`: the byte range of its value as written (quotes
    /// included), and the value decoded (`None` for a bare `href`).
    hrefs: Vec<(usize, usize, Option<String>)>,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | b'\x0c')
}

/// Bytes a tag may hold outside quoted values: printable ASCII, no quote,
/// no `<`. Other parsers count other characters as spaces (Python's
/// `html.parser` splits attributes at `\x0b` or U+00A0), so such a tag is
/// refused rather than read one way when an installer reads another.
fn is_plain(b: u8) -> bool {
    b.is_ascii_graphic() && !matches!(b, b'"' | b'\'' | b'<')
}

/// The next `<a` start tag from `from`: where its `<` is and where its
/// name ends. A `<base` tag, which would change what every relative link
/// means, is refused: index pages do not use one.
fn next_tag(body: &[u8], mut from: usize) -> Result<Option<(usize, usize)>, &'static str> {
    let delimits = |i: usize| body.get(i).is_some_and(|&b| is_space(b) || b == b'/' || b == b'>');
    while let Some(lt) = body.get(from..).and_then(|r| r.iter().position(|&b| b == b'<')) {
        let lt = from + lt;
        let name = |n: &[u8]| body.get(lt + 1..lt + 1 + n.len()).is_some_and(|b| b.eq_ignore_ascii_case(n)) && delimits(lt + 1 + n.len());
        if name(b"a") {
            return Ok(Some((lt, lt + 2)));
        }
        if name(b"base") {
            return Err("base");
        }
        from = lt + 1;
    }
    Ok(None)
}

/// Just past the `</a …>` that closes an anchor whose start tag ends at `from`.
fn end_of_anchor(body: &[u8], from: usize) -> Option<usize> {
    let mut at = from;
    loop {
        let lt = at + body.get(at..)?.windows(3).position(|w| w.eq_ignore_ascii_case(b"</a"))?;
        at = lt + 3;
        if body.get(at).is_some_and(|&b| is_space(b) || b == b'/' || b == b'>') {
            return Some(at + 1 + body.get(at..)?.iter().position(|&b| b == b'>')?);
        }
    }
}

/// Reads a start tag's attributes from just after its name.
fn tag(body: &[u8], mut i: usize) -> Result<Tag, &'static str> {
    let at = |i: usize| body.get(i).copied();
    let skip = |mut i: usize, f: fn(u8) -> bool| {
        while at(i).is_some_and(f) {
            i += 1;
        }
        i
    };
    let mut hrefs = Vec::new();
    loop {
        i = skip(i, |b| is_space(b) || b == b'/');
        let name = i;
        i = skip(i, |b| is_plain(b) && !matches!(b, b'/' | b'>' | b'='));
        match at(i) {
            Some(b'>') if i == name => return Ok(Tag { end: i + 1, hrefs }),
            Some(b) if i > name && (is_space(b) || matches!(b, b'/' | b'>' | b'=')) => {}
            None => return Err("unterminated tag"),
            _ => return Err("unreadable attribute"),
        }
        let is_href = body.get(name..i).is_some_and(|n| n.eq_ignore_ascii_case(b"href"));
        let eq = skip(i, is_space);
        if at(eq) != Some(b'=') {
            if is_href {
                hrefs.push((i, i, None));
            }
            continue;
        }
        let start = skip(eq + 1, is_space);
        let (raw, end) = match at(start) {
            Some(q @ (b'"' | b'\'')) => {
                let len = body.get(start + 1..).and_then(|r| r.iter().position(|&b| b == q)).ok_or("unterminated tag")?;
                (start + 1..start + 1 + len, start + 2 + len)
            }
            // `href==x` is `=x` to a browser but `x` to Python's parser.
            Some(b'=') => return Err("unreadable attribute"),
            _ => {
                let end = skip(start, |b| is_plain(b) && b != b'>');
                (start..end, end)
            }
        };
        let raw = body.get(raw).unwrap_or_default();
        // An empty unquoted value (`href=>`) is refused too. A value that
        // stops at a byte that is not plain is refused on the next turn.
        if end == start || raw.contains(&b'<') {
            return Err("unreadable attribute");
        }
        if is_href {
            hrefs.push((start, end, Some(decode(raw)?)));
        }
        i = end;
    }
}

/// An attribute value with its character references decoded: `&amp;`,
/// `&lt;`, `&gt;`, `&quot;`, `&apos;` and numeric ones. Any other reference
/// is refused rather than guessed (HTML knows some 2,000 names, some valid
/// without `;`).
fn decode(raw: &[u8]) -> Result<String, &'static str> {
    let mut out = String::with_capacity(raw.len());
    let text = std::str::from_utf8(raw).map_err(|_| "href not UTF-8")?;
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(rest.get(..amp).unwrap_or_default());
        rest = rest.get(amp + 1..).unwrap_or_default();
        if !rest.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '#') {
            out.push('&');
            continue;
        }
        let (name, after) = rest.split_once(';').filter(|(n, _)| n.len() <= 8).ok_or("character reference")?;
        let number = |digits: &str, radix| u32::from_str_radix(digits, radix).ok().filter(|_| digits.chars().all(|c| c.is_digit(radix)));
        let code = match name {
            "amp" => Some(38),
            "lt" => Some(60),
            "gt" => Some(62),
            "quot" => Some(34),
            "apos" => Some(39),
            _ => match name.strip_prefix("#x").or_else(|| name.strip_prefix("#X")) {
                Some(hex) => number(hex, 16),
                None => name.strip_prefix('#').and_then(|d| number(d, 10)),
            },
        };
        out.push(code.and_then(char::from_u32).filter(|c| !c.is_control()).ok_or("character reference")?);
        rest = after;
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests;
