//! Parse: which of Airlock's routes a request path addresses.
//!
//! Invariant: routing looks only at the raw path; a tool request's remainder
//! is handed on still encoded, to be normalized exactly once by [`crate::path`].

/// A routed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route<'a> {
    Health,
    Sessions,
    /// `/v1/sessions/{id}`: one session's record (admin).
    Session {
        id: &'a str,
    },
    /// `/v1/sessions/{id}/audit`: one session's audit trail (admin).
    SessionAudit {
        id: &'a str,
    },
    /// `/v1/approvals`: pending approvals (admin).
    Approvals,
    /// `/v1/approvals/{id}`, or with `/approve` (`Some(true)`) or `/deny`.
    Approval {
        id: &'a str,
        action: Option<bool>,
    },
    /// `/approve/{link}`: the approval page; `link` is checked by
    /// [`crate::approval::verify_link`].
    ApprovalPage {
        link: &'a str,
    },
    /// `/t/{tool}/{rest}`: `rest` starts with `/` and is still percent-encoded.
    Tool {
        tool: &'a str,
        rest: &'a str,
    },
    /// `/e/{host[:port]}/{rest}`: both still raw.
    Egress {
        authority: &'a str,
        rest: &'a str,
    },
    /// `/mcp/{server}` exactly.
    Mcp {
        server: &'a str,
    },
    NotFound,
}

/// Routes a raw request path (no query).
pub fn route(path: &str) -> Route<'_> {
    match path {
        "/v1/health" => return Route::Health,
        "/v1/sessions" => return Route::Sessions,
        "/v1/approvals" => return Route::Approvals,
        _ => {}
    }
    if let Some(id) = path.strip_prefix("/v1/sessions/") {
        return match id.strip_suffix("/audit") {
            Some(id) if is_hex_id(id) => Route::SessionAudit { id },
            _ if is_hex_id(id) => Route::Session { id },
            _ => Route::NotFound,
        };
    }
    if let Some(rest) = path.strip_prefix("/v1/approvals/") {
        let (id, action) = match rest.split_once('/') {
            None => (rest, None),
            Some((id, "approve")) => (id, Some(true)),
            Some((id, "deny")) => (id, Some(false)),
            Some(_) => return Route::NotFound,
        };
        return match id.strip_prefix("ap_") {
            Some(hex) if is_hex_id(hex) => Route::Approval { id, action },
            _ => Route::NotFound,
        };
    }
    if let Some(link) = path.strip_prefix("/approve/") {
        let ok = !link.is_empty() && link.len() <= 256 && link.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        return if ok { Route::ApprovalPage { link } } else { Route::NotFound };
    }
    if let Some(server) = path.strip_prefix("/mcp/") {
        return if server.is_empty() || server.contains('/') { Route::NotFound } else { Route::Mcp { server } };
    }
    let (egress, after) = match (path.strip_prefix("/t/"), path.strip_prefix("/e/")) {
        (Some(after), _) => (false, after),
        (_, Some(after)) => (true, after),
        _ => return Route::NotFound,
    };
    let (first, rest) = match after.find('/') {
        Some(i) => (&after[..i], &after[i..]),
        None => (after, "/"),
    };
    if egress {
        // An empty host is routed on, to be refused as a malformed host.
        Route::Egress { authority: first, rest }
    } else if first.is_empty() {
        Route::NotFound
    } else {
        Route::Tool { tool: first, rest }
    }
}

/// Ids Airlock hands out: 32 lower-case hex digits.
fn is_hex_id(s: &str) -> bool {
    s.len() == 32 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The host of an absolute URL (no port, no brackets handling needed for
/// the worker's own name), lower-cased.
pub fn url_host(url: &str) -> Option<String> {
    let after_scheme = &url[url.find("://")? + 3..];
    let authority = after_scheme.split(['/', '?', '#']).next()?;
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match (host.starts_with('['), host.find(']'), host.rsplit_once(':')) {
        (true, Some(end), _) => &host[..=end],
        (false, _, Some((h, _))) => h,
        _ => host,
    };
    Some(host.trim_end_matches('.').to_ascii_lowercase())
}

/// Splits an absolute request URL as the platform gives it
/// (`scheme://authority/path?query#fragment`) into the raw path and the raw
/// query, without decoding or re-normalizing either.
pub fn split_url(url: &str) -> Option<(&str, Option<&str>)> {
    let after_scheme = &url[url.find("://")? + 3..];
    let path_start = after_scheme.find('/')?;
    let rest = &after_scheme[path_start..];
    let rest = rest.split('#').next().unwrap_or(rest);
    Some(match rest.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (rest, None),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_host() {
        assert_eq!(url_host("https://Airlock.Example.workers.dev/t/x").as_deref(), Some("airlock.example.workers.dev"));
        assert_eq!(url_host("http://127.0.0.1:8787/x").as_deref(), Some("127.0.0.1"));
        assert_eq!(url_host("http://localhost:8787").as_deref(), Some("localhost"));
        assert_eq!(url_host("http://[::1]:8787/x").as_deref(), Some("[::1]"));
        assert_eq!(url_host("http://[::1]/x").as_deref(), Some("[::1]"));
        assert_eq!(url_host("nonsense"), None);
    }

    #[test]
    fn splits_urls_without_decoding() {
        assert_eq!(split_url("https://a.b/t/x/y?q=1&r=%2F"), Some(("/t/x/y", Some("q=1&r=%2F"))));
        assert_eq!(split_url("http://127.0.0.1:8787/t/x/a%2fb"), Some(("/t/x/a%2fb", None)));
        assert_eq!(split_url("http://h/p?#frag"), Some(("/p", Some(""))));
        assert_eq!(split_url("http://h/p#f?x"), Some(("/p", None)));
        assert_eq!(split_url("http://h"), None);
        assert_eq!(split_url("nonsense"), None);
    }

    #[test]
    fn routes() {
        let table: &[(&str, Route)] = &[
            ("/v1/health", Route::Health),
            ("/v1/sessions", Route::Sessions),
            ("/v1/sessions/", Route::NotFound),
            ("/v1/sessions/0123456789abcdef0123456789abcdef", Route::Session { id: "0123456789abcdef0123456789abcdef" }),
            ("/v1/sessions/0123456789ABCDEF0123456789abcdef", Route::NotFound),
            ("/v1/sessions/0123456789abcdef0123456789abcdef/x", Route::NotFound),
            ("/v1/sessions/..%2f", Route::NotFound),
            ("/v1/sessions/0123456789abcdef0123456789abcdef/audit", Route::SessionAudit { id: "0123456789abcdef0123456789abcdef" }),
            ("/v1/sessions/0123456789abcdef0123456789abcdef/audit/", Route::NotFound),
            ("/v1/sessions//audit", Route::NotFound),
            ("/v1/approvals", Route::Approvals),
            ("/v1/approvals/ap_0123456789abcdef0123456789abcdef", Route::Approval { id: "ap_0123456789abcdef0123456789abcdef", action: None }),
            ("/v1/approvals/ap_0123456789abcdef0123456789abcdef/approve", Route::Approval { id: "ap_0123456789abcdef0123456789abcdef", action: Some(true) }),
            ("/v1/approvals/ap_0123456789abcdef0123456789abcdef/deny", Route::Approval { id: "ap_0123456789abcdef0123456789abcdef", action: Some(false) }),
            ("/v1/approvals/ap_0123456789abcdef0123456789abcdef/use", Route::NotFound),
            ("/v1/approvals/0123456789abcdef0123456789abcdef", Route::NotFound),
            ("/t/github/repos/o/r", Route::Tool { tool: "github", rest: "/repos/o/r" }),
            ("/t/github", Route::Tool { tool: "github", rest: "/" }),
            ("/t/github/", Route::Tool { tool: "github", rest: "/" }),
            ("/t/gh/a%2fb", Route::Tool { tool: "gh", rest: "/a%2fb" }),
            ("/e/pypi.org/simple/", Route::Egress { authority: "pypi.org", rest: "/simple/" }),
            ("/e/pypi.org:8443", Route::Egress { authority: "pypi.org:8443", rest: "/" }),
            ("/e/", Route::Egress { authority: "", rest: "/" }),
            ("/e//simple/", Route::Egress { authority: "", rest: "/simple/" }),
            ("/approve/ap1.ap_0a.99.AbC-_x", Route::ApprovalPage { link: "ap1.ap_0a.99.AbC-_x" }),
            ("/approve/", Route::NotFound),
            ("/approve/a/b", Route::NotFound),
            ("/approve/a%2fb", Route::NotFound),
            ("/mcp/crm", Route::Mcp { server: "crm" }),
            ("/mcp/crm/", Route::NotFound),
            ("/mcp/", Route::NotFound),
            ("/t/", Route::NotFound),
            ("/t//x", Route::NotFound),
            ("/", Route::NotFound),
            ("/tools/x", Route::NotFound),
        ];
        for (path, want) in table {
            assert_eq!(&route(path), want, "{path}");
        }
    }
}
