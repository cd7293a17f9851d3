//! Filter response, the head: which origin answers Airlock may return at
//! all, before a byte of their body is read.
//!
//! Invariant: an answer Airlock could not fully inspect is refused, never
//! passed. Its body would reach the sandbox unscanned:
//! - a content coding the runtime did not decode before the redactor saw
//!   the body (`deflate`, `x-gzip`, `zstd`, stacked codings such as
//!   `gzip, gzip`): every mainstream client decodes these, Airlock's scan
//!   would have seen only compressed bytes;
//! - a `206 Partial Content` slice from a credentialed origin: a slice
//!   shorter than the credential holds no match, and slices of an echoed
//!   body put the credential back together.
//!
//! Every header value Airlock returns is scrubbed last: a `Location` is
//! rewritten first, then everything passes the redactor.
//!
//! Must never: decide on the sandbox's request headers (only on what the
//! origin answered and what the policy says), or return text from the origin.

use crate::error::Error;
use crate::inject::{Relocate, ResponseRules};
use crate::redact::{filter_response_headers, Redactor};

/// The status and headers the sandbox may see of an origin's answer. An
/// origin `5xx`, a status the runtime cannot answer with, or an answer
/// Airlock could not inspect is an error, before any of its body is read.
/// `egress_location` rewrites a `Location` of an egress answer.
pub fn head(
    status: u16,
    headers: Vec<(String, String)>,
    rules: &ResponseRules,
    request_url: &str,
    redactor: &Redactor,
    egress_location: impl Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, Error> {
    if status >= 500 && !rules.pass_server_errors {
        // The origin's own error body may describe its internals: the
        // sandbox gets Airlock's error, the status and a Retry-After that is
        // a number or a date and holds nothing Airlock injected.
        let retry_after = crate::request::header(&headers, "retry-after").and_then(retry_after).filter(|v| !redactor.contains_any(v.as_bytes()));
        return Err(Error::UpstreamError { status, retry_after });
    }
    if rules.inspect {
        let uninspectable = |why| Error::UpstreamUninspectable { status, why };
        let codings = headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("content-encoding")).map(|(_, v)| v.as_str());
        check_encoding(codings).map_err(uninspectable)?;
        check_partial(status, rules.credentialed, rules.allow_range).map_err(uninspectable)?;
    }
    let redirect = (300..400).contains(&status);
    let rewritten: Vec<(String, String)> = headers
        .into_iter()
        .filter_map(|(name, value)| {
            if !(redirect && name.eq_ignore_ascii_case("location")) {
                return Some((name, value));
            }
            let moved = match &rules.relocate {
                Relocate::Tool { base, base_path, name: tool } => Some(tool_location(&value, request_url, base, base_path, tool)),
                Relocate::Egress => egress_location(&value),
                Relocate::Drop => None,
            };
            moved.map(|v| (name, v))
        })
        .collect();
    Ok(filter_response_headers(&rewritten, redactor, rules.drop_cookies))
}

/// A tool's redirect: a `Location` on the tool's own origin (under its base
/// path) is rewritten onto the broker route `/t/{tool}/…`, so the sandbox
/// follows it through Airlock; any other target is returned as is (and
/// scrubbed after): the sandbox may follow it itself, without the credential.
pub fn tool_location(location: &str, request_url: &str, base: &str, base_path: &str, tool: &str) -> String {
    // Not parsed when it holds a punycode label: see `egress::has_punycode`.
    if crate::egress::has_punycode(location) {
        return location.to_string();
    }
    let Some(target) = url::Url::parse(request_url).ok().and_then(|u| u.join(location).ok()) else {
        return location.to_string();
    };
    let origin = target.origin().ascii_serialization();
    let rest = target.path().strip_prefix(base_path).filter(|r| r.starts_with('/') || r.is_empty());
    match rest {
        Some(rest) if origin == base => {
            let mut out = format!("/t/{tool}{}", if rest.is_empty() { "/" } else { rest });
            if let Some(q) = target.query() {
                out.push('?');
                out.push_str(q);
            }
            out
        }
        _ => location.to_string(),
    }
}

pub use crate::error::Uninspectable;

/// The response codings the runtime decodes on its own before the body is
/// read (workerd decodes exactly these two).
const DECODED: &[&str] = &["gzip", "br"];

/// Content codings of the IANA registry, the only names an audit record
/// repeats.
const REGISTERED: &[&str] =
    &["aes128gcm", "br", "compress", "dcb", "dcz", "deflate", "exi", "gzip", "identity", "pack200-gzip", "x-compress", "x-gzip", "zstd"];

/// Checks an origin's `Content-Encoding` (all of its values, in order).
/// Passes identity (absent, empty or `identity`) and exactly one coding
/// the runtime decoded; anything else is refused.
pub fn check_encoding<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<(), Uninspectable> {
    let codings: Vec<String> = values.into_iter().flat_map(|v| v.split(',')).map(|c| c.trim().to_ascii_lowercase()).filter(|c| !c.is_empty()).collect();
    match codings.as_slice() {
        [] => Ok(()),
        [one] if one == "identity" || DECODED.contains(&one.as_str()) => Ok(()),
        // The origin's text goes to the audit record: only coding names
        // from the registry are kept, anything else (an echoed value
        // included) is recorded as `other`.
        _ => Err(Uninspectable::Encoding(
            codings
                .iter()
                .map(|c| if REGISTERED.contains(&c.as_str()) { c.as_str() } else { "other" })
                .collect::<Vec<_>>()
                .join(", ")
                .chars()
                .take(64)
                .collect(),
        )),
    }
}

/// Checks the status of an answer from a tool's origin: a `206` from a
/// credentialed origin passes only when the tool opted in with `allow_range`.
pub fn check_partial(status: u16, credentialed: bool, allow_range: bool) -> Result<(), Uninspectable> {
    if status == 206 && credentialed && !allow_range {
        return Err(Uninspectable::PartialContent);
    }
    Ok(())
}

/// A `Retry-After` value that is safe to pass on: delta-seconds (at most ten
/// digits) or an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`). Anything
/// else — free text an origin could fill with an echoed value — is dropped.
pub fn retry_after(value: &str) -> Option<String> {
    let v = value.trim();
    if !v.is_empty() && v.len() <= 10 && v.bytes().all(|b| b.is_ascii_digit()) {
        return Some(v.to_string());
    }
    is_http_date(v).then(|| v.to_string())
}

/// IMF-fixdate, the form RFC 9110 requires senders to use.
fn is_http_date(v: &str) -> bool {
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    let parts: Vec<&str> = v.split(' ').collect();
    let [day, date, month, year, time, zone] = parts.as_slice() else {
        return false;
    };
    let digits = |s: &str, n: usize| s.len() == n && s.bytes().all(|b| b.is_ascii_digit());
    let Some(day) = day.strip_suffix(',') else {
        return false;
    };
    let clock: Vec<&str> = time.split(':').collect();
    DAYS.contains(&day)
        && digits(date, 2)
        && MONTHS.contains(month)
        && digits(year, 4)
        && clock.len() == 3
        && clock.iter().all(|c| digits(c, 2))
        && *zone == "GMT"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_5xx_passes_only_when_the_tool_says_so_and_scrubbed() {
        let secret = crate::secret::Secret::new(b"sk-live-credential-42".to_vec());
        let redactor = Redactor::new(vec![secret]);
        let headers = vec![("x-should-retry".to_string(), "true".to_string()), ("x-debug".to_string(), "key sk-live-credential-42".to_string())];
        let mut rules =
            ResponseRules { drop_cookies: true, inspect: true, credentialed: true, allow_range: false, relocate: Relocate::Drop, pass_server_errors: false };
        let refused = head(529, headers.clone(), &rules, "https://a.example/x", &redactor, |_| None).unwrap_err();
        assert_eq!(refused.code(), "upstream_error");
        rules.pass_server_errors = true;
        let passed = head(529, headers, &rules, "https://a.example/x", &redactor, |_| None).unwrap();
        assert!(passed.contains(&("x-should-retry".to_string(), "true".to_string())));
        assert!(passed.iter().all(|(_, v)| !v.contains("sk-live-credential-42")), "{passed:?}");
    }

    #[test]
    fn tool_redirects() {
        let policy = crate::policy::Policy::parse(
            r#"{"version":1,"audience":"a","tools":{"gh":{"origin":"https://api.github.com/v3","rules":[{"methods":["GET"],"path":"/**","level":"read"}]}}}"#,
        )
        .unwrap();
        let tool = policy.tool("gh").unwrap();
        let (base, base_path) = (tool.origin.base.as_str(), tool.origin.base_path.as_str());
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
            assert_eq!(tool_location(loc, from, base, base_path, "gh"), *want, "{loc}");
        }
    }

    #[test]
    fn what_airlock_asks_for_is_what_it_decodes() {
        let asked: Vec<&str> = crate::inject::ACCEPT_ENCODING.split(", ").collect();
        assert_eq!(asked, DECODED);
    }

    #[test]
    fn codings_that_were_decoded_pass_and_nothing_else() {
        let pass: &[&[&str]] = &[&[], &[""], &["identity"], &["gzip"], &["GZIP"], &[" br "], &["Identity"]];
        for values in pass {
            assert_eq!(check_encoding(values.iter().copied()), Ok(()), "{values:?}");
        }
        let refuse: &[&[&str]] = &[
            &["deflate"],
            &["x-gzip"],
            &["zstd"],
            &["compress"],
            &["x-compress"],
            &["gzip, gzip"],
            &["gzip,br"],
            &["gzip", "gzip"],
            &["br", "identity"],
            &["gzip, identity"],
            &["aes128gcm"],
            &["exi"],
            &["pack200-gzip"],
            &["dcb"],
            &["dcz"],
            &["gzip;q=1"],
            &["unknown-coding"],
        ];
        for values in refuse {
            assert!(matches!(check_encoding(values.iter().copied()), Err(Uninspectable::Encoding(_))), "{values:?}");
        }
        // What is recorded names registered codings only: an origin that
        // echoes a credential into the header cannot get it into a log line.
        let recorded = |v: &str| match check_encoding([v]) {
            Err(Uninspectable::Encoding(c)) => c,
            other => panic!("{v}: {other:?}"),
        };
        assert_eq!(recorded("gzip, zstd"), "gzip, zstd");
        assert_eq!(recorded("sk_live_SECRET"), "other");
        assert_eq!(recorded("gzip, Bearer sk_live_SECRET"), "gzip, other");
    }

    #[test]
    fn partial_content_needs_the_opt_in_when_credentialed() {
        assert_eq!(check_partial(206, true, false), Err(Uninspectable::PartialContent));
        assert_eq!(check_partial(206, true, true), Ok(()));
        assert_eq!(check_partial(206, false, false), Ok(()));
        for status in [200, 204, 304, 416] {
            assert_eq!(check_partial(status, true, false), Ok(()), "{status}");
        }
    }

    #[test]
    fn retry_after_passes_only_seconds_and_dates() {
        for ok in ["0", "120", " 30 ", "9999999999", "Sun, 06 Nov 1994 08:49:37 GMT", "Wed, 21 Oct 2026 07:28:00 GMT"] {
            assert_eq!(retry_after(ok).as_deref(), Some(ok.trim()), "{ok}");
        }
        for bad in [
            "",
            "-1",
            "1.5",
            "99999999999",
            "soon",
            "Bearer sk_live_abc",
            "120 sk_live_abc",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
            "Sun, 06 Nov 1994 08:49:37 GMT x",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Xyz, 06 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(retry_after(bad), None, "{bad:?}");
        }
    }
}
