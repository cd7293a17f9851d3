use serde_json::json;

use super::*;
use crate::egress::HostPattern;

const OWN: &str = "airlock.example.workers.dev";
const A: &str = "https://airlock.example.workers.dev";

fn rule(host: &str, http: bool, ports: &[u16], package_index: bool) -> EgressRule {
    EgressRule { pattern: HostPattern::parse(host).unwrap(), http, ports: ports.to_vec(), package_index }
}

fn rules() -> Vec<EgressRule> {
    vec![
        rule("pypi.org", false, &[], true),
        rule("*.pythonhosted.org", false, &[], false),
        rule("mirror.example.com", true, &[8080], true),
        rule("registry.npmjs.org", false, &[], true),
    ]
}

fn rewrite(page: &str, format: Format, body: &str) -> Result<String, Uninspectable> {
    let rules = rules();
    let links = Links::new(page, &format!("{A}/e/whatever"), &rules, Some(OWN)).expect("a package index page");
    links.rewrite(format, body.as_bytes()).map(|b| String::from_utf8(b).unwrap())
}

fn html(body: &str) -> Result<String, Uninspectable> {
    rewrite("https://pypi.org/simple/pkg/", Format::Html, body)
}

#[test]
fn only_package_index_hosts_are_rewritten() {
    let rules = rules();
    let req = format!("{A}/e/x");
    for (page, want) in [
        ("https://pypi.org/simple/pkg/", true),
        ("http://mirror.example.com:8080/simple/", true),
        ("https://files.pythonhosted.org/packages/x.whl", false),
        ("https://unlisted.example.net/simple/", false),
    ] {
        assert_eq!(Links::new(page, &req, &rules, Some(OWN)).is_some(), want, "{page}");
    }
    // The links point at Airlock as the sandbox reached it.
    let links = Links::new("https://pypi.org/simple/", "http://127.0.0.1:8787/e/pypi.org/simple/", &rules, None).unwrap();
    let out = links.rewrite(Format::Html, b"<a href=\"/simple/x/\">x</a>").unwrap();
    assert_eq!(out, b"<a href=\"http://127.0.0.1:8787/e/pypi.org/simple/x/\">x</a>");
}

#[test]
fn html_links_are_rewritten_onto_the_egress_route() {
    let files = format!("{A}/e/files.pythonhosted.org");
    let table: Vec<(&str, &str, String)> = vec![
        (
            "absolute, hash kept",
            r#"<a href="https://files.pythonhosted.org/packages/ab/pkg-1.0.tar.gz#sha256=0123abcd">pkg-1.0.tar.gz</a>"#,
            format!(r#"<a href="{files}/packages/ab/pkg-1.0.tar.gz#sha256=0123abcd">pkg-1.0.tar.gz</a>"#),
        ),
        (
            "PEP 503 / 592 / 658 / 714 attributes kept as written",
            r#"<a href="https://files.pythonhosted.org/p/x.whl#sha256=ff" data-requires-python="&gt;=3.8" data-dist-info-metadata="sha256=aa" data-core-metadata="sha256=aa" data-yanked="bröken">x</a>"#,
            format!(
                r#"<a href="{files}/p/x.whl#sha256=ff" data-requires-python="&gt;=3.8" data-dist-info-metadata="sha256=aa" data-core-metadata="sha256=aa" data-yanked="bröken">x</a>"#
            ),
        ),
        ("single quotes", "<a href='https://files.pythonhosted.org/x.whl'>x</a>", format!(r#"<a href="{files}/x.whl">x</a>"#)),
        ("unquoted", "<a href=https://files.pythonhosted.org/x.whl#sha256=1>x</a>", format!(r#"<a href="{files}/x.whl#sha256=1">x</a>"#)),
        ("&amp; in href", r#"<a href="https://files.pythonhosted.org/x?a=1&amp;b=2">x</a>"#, format!(r#"<a href="{files}/x?a=1&amp;b=2">x</a>"#)),
        ("numeric references", r#"<a href="https:&#x2F;&#47;files.pythonhosted.org/x">x</a>"#, format!(r#"<a href="{files}/x">x</a>"#)),
        ("root-relative", r#"<a href="/packages/x.whl">x</a>"#, format!(r#"<a href="{A}/e/pypi.org/packages/x.whl">x</a>"#)),
        ("relative", r#"<a href="../../packages/x.whl">x</a>"#, format!(r#"<a href="{A}/e/pypi.org/packages/x.whl">x</a>"#)),
        ("relative, same directory", r#"<a href="x.whl#md5=1">x</a>"#, format!(r#"<a href="{A}/e/pypi.org/simple/pkg/x.whl#md5=1">x</a>"#)),
        ("scheme-relative", r#"<a href="//files.pythonhosted.org/x.whl">x</a>"#, format!(r#"<a href="{files}/x.whl">x</a>"#)),
        ("upper-case host", r#"<a href="https://FILES.PythonHosted.ORG./x">x</a>"#, format!(r#"<a href="{files}/x">x</a>"#)),
        ("upper-case tag", r#"<A HREF="/x">x</A>"#, format!(r#"<A HREF="{A}/e/pypi.org/x">x</A>"#)),
        ("spaces around =", "<a\nhref\n=\t\"/x\"\n>x</a>", format!("<a\nhref\n=\t\"{A}/e/pypi.org/x\"\n>x</a>")),
        ("slash separators", r#"<a/href="/x"/>x</a>"#, format!(r#"<a/href="{A}/e/pypi.org/x"/>x</a>"#)),
        (
            "http entry with its port",
            r#"<a href="http://mirror.example.com:8080/x.whl">x</a>"#,
            format!(r#"<a href="{A}/e/mirror.example.com:8080/x.whl">x</a>"#),
        ),
        ("no href", r#"<a name="top">x</a>"#, r#"<a name="top">x</a>"#.into()),
        (
            "not an anchor",
            r#"<abbr href="https://evil.example.net/">x</abbr><link href="/x">"#,
            r#"<abbr href="https://evil.example.net/">x</abbr><link href="/x">"#.into(),
        ),
        ("in a comment", r#"<!-- <a href="/x"> -->"#, format!(r#"<!-- <a href="{A}/e/pypi.org/x"> -->"#)),
        ("a stray <", "1 < 2 <3 <", "1 < 2 <3 <".into()),
        ("a literal &", r#"<a href="/x?a=1& b">x</a>"#, format!(r#"<a href="{A}/e/pypi.org/x?a=1&amp;%20b">x</a>"#)),
    ];
    for (what, input, want) in table {
        assert_eq!(html(input).as_deref(), Ok(want.as_str()), "{what}");
    }
}

#[test]
fn html_anchors_to_hosts_not_allowed_are_removed() {
    let table: &[(&str, &str)] = &[
        ("host not listed", "https://evil.example.net/x.whl"),
        ("userinfo", "https://u:p@files.pythonhosted.org/x.whl"),
        ("user only", "https://u@pypi.org/x.whl"),
        ("http where the entry is https", "http://files.pythonhosted.org/x.whl"),
        ("https where the entry is http", "https://mirror.example.com:8080/x.whl"),
        ("port not listed", "http://mirror.example.com:9090/x.whl"),
        ("default port of an http entry not listed", "http://mirror.example.com:8081/x"),
        ("apex of a wildcard", "https://pythonhosted.org/x.whl"),
        ("IP literal", "https://127.0.0.1/x.whl"),
        ("metadata", "http://169.254.169.254/latest/meta-data/"),
        ("localhost", "https://localhost/x"),
        ("Airlock itself", "https://airlock.example.workers.dev/v1/sessions"),
        ("javascript", "javascript:alert(1)"),
        ("data", "data:text/html,x"),
        ("ftp", "ftp://pypi.org/x"),
        ("punycode", "https://xn--bcher-kva.pythonhosted.org/x"),
        ("encoded slash", "https://pypi.org/a%2fb"),
        ("reference to a host not listed", "https:&#47;&#47;evil.example.net/x"),
    ];
    for (what, href) in table {
        let page = format!("<p>before<a href=\"{href}\" data-x=\"1\">x.whl</a>after</p>");
        assert_eq!(html(&page).as_deref(), Ok("<p>before after</p>"), "{what}");
    }
    let also = [
        ("bare href", "<a href>x</a>!", " !"),
        ("the second href is not allowed", r#"<a href="/x" href="https://evil.example.net/">x</a>!"#, " !"),
        ("no </a>", r#"<a href="https://evil.example.net/">x"#, " x"),
        ("</A > closes", r#"<a href="https://evil.example.net/">x</A >y"#, " y"),
        ("</abbr> does not close", r#"<a href="https://evil.example.net/"><abbr>x</abbr></a>y"#, " y"),
        // What is left cannot join into a tag no one scanned.
        ("no join", r#"<<a href="https://evil.example.net/">x</a>a href="https://evil.example.net/">"#, r#"< a href="https://evil.example.net/">"#),
    ];
    for (what, input, want) in also {
        assert_eq!(html(input).as_deref(), Ok(want), "{what}");
    }
}

#[test]
fn a_typical_simple_page() {
    let page = concat!(
        "<!DOCTYPE html>\n<html>\n  <head>\n    <meta name=\"pypi:repository-version\" content=\"1.1\">\n",
        "    <title>Links for pkg</title>\n  </head>\n  <body>\n    <h1>Links for pkg</h1>\n",
        "    <a href=\"https://files.pythonhosted.org/packages/aa/bb/pkg-1.0-py3-none-any.whl#sha256=11\" ",
        "data-requires-python=\"&gt;=3.8\" data-dist-info-metadata=\"sha256=22\" data-core-metadata=\"sha256=22\">pkg-1.0-py3-none-any.whl</a><br />\n",
        "    <a href=\"https://evil.example.net/pkg-9.0.tar.gz#sha256=33\">pkg-9.0.tar.gz</a><br />\n",
        "    <a href=\"../../packages/pkg-1.0.tar.gz#sha256=44\">pkg-1.0.tar.gz</a><br />\n",
        "  </body>\n</html>\n<!--SERIAL 1-->\n",
    );
    let out = html(page).unwrap();
    assert!(out.contains(&format!("href=\"{A}/e/files.pythonhosted.org/packages/aa/bb/pkg-1.0-py3-none-any.whl#sha256=11\"")), "{out}");
    assert!(out.contains(&format!("href=\"{A}/e/pypi.org/packages/pkg-1.0.tar.gz#sha256=44\"")), "{out}");
    assert!(out.contains("data-requires-python=\"&gt;=3.8\" data-dist-info-metadata=\"sha256=22\" data-core-metadata=\"sha256=22\""));
    assert!(!out.contains("evil") && !out.contains("pkg-9.0"), "{out}");
    assert!(out.contains("<title>Links for pkg</title>") && out.ends_with("</html>\n<!--SERIAL 1-->\n"));
}

#[test]
fn html_that_cannot_be_read_exactly_is_refused() {
    let table: &[(&str, &[u8])] = &[
        ("unterminated tag", b"<a href=\"/x\""),
        ("unterminated tag, no attributes", b"x <a "),
        ("unterminated quote", b"<a href=\"/x>x</a>"),
        ("< in a value", b"<a title=\"<a href=x>\" href=\"/y\">"),
        ("< in a single-quoted value", b"<a title='<b>' href=\"/y\">"),
        ("< in a name", b"<a <a href=\"/y\">"),
        ("a value after ==", b"<a href==\"/x\">"),
        ("empty unquoted value", b"<a href=>x</a>"),
        ("name starting with =", b"<a =x href=\"/y\">"),
        ("quote in a name", b"<a \"href\"=\"/y\">"),
        ("quote in an unquoted value", b"<a href=/x\"y>"),
        ("vertical tab (Python splits there)", b"<a x=1\x0bhref=https://evil.example.net/>"),
        ("no-break space", b"<a x=1\xc2\xa0href=https://evil.example.net/>"),
        ("control in a name", b"<a x\x01=1 href=\"/y\">"),
        ("unknown named reference", b"<a href=\"/x?a=1&copy=2\">"),
        ("reference without ;", b"<a href=\"/x?a=1&amp\">"),
        ("NUL reference", b"<a href=\"/x&#0;\">"),
        ("control reference", b"<a href=\"/x&#x85;\">"),
        ("surrogate reference", b"<a href=\"/x&#xD800;\">"),
        ("signed number", b"<a href=\"/x&#+47;\">"),
        ("href not UTF-8", b"<a href=\"/x\xff\">"),
        ("a base, which changes every relative link", b"<base href=\"https://files.pythonhosted.org/\"><a href=\"x.whl\">"),
        ("an upper-case base", b"<BASE\nhref=\"/\">"),
    ];
    let rules = rules();
    let links = Links::new("https://pypi.org/simple/pkg/", &format!("{A}/e/x"), &rules, Some(OWN)).unwrap();
    for (what, input) in table {
        assert!(matches!(links.rewrite(Format::Html, input), Err(Uninspectable::Index(_))), "{what}");
    }
}

#[test]
fn pep_691_json() {
    let page = json!({
        "meta": {"api-version": "1.1", "_last-serial": 7},
        "name": "pkg",
        "versions": ["1.0", "9.0"],
        "files": [
            {"filename": "pkg-1.0-py3-none-any.whl", "url": "https://files.pythonhosted.org/packages/aa/pkg-1.0-py3-none-any.whl",
             "hashes": {"sha256": "11"}, "requires-python": ">=3.8", "core-metadata": {"sha256": "22"}, "yanked": false},
            {"filename": "pkg-1.0.tar.gz", "url": "../../packages/pkg-1.0.tar.gz#sha256=44", "hashes": {"sha256": "44"}},
            {"filename": "pkg-9.0.tar.gz", "url": "https://evil.example.net/pkg-9.0.tar.gz", "hashes": {"sha256": "33"}},
            {"filename": "pkg-8.0.tar.gz", "url": "https://u:p@files.pythonhosted.org/pkg-8.0.tar.gz", "hashes": {}},
        ],
    });
    let out = rewrite("https://pypi.org/simple/pkg/", Format::Json, &page.to_string()).unwrap();
    let out: Value = serde_json::from_str(&out).unwrap();
    let mut want = page.clone();
    let files = want["files"].as_array_mut().unwrap();
    files.truncate(2);
    files[0]["url"] = json!(format!("{A}/e/files.pythonhosted.org/packages/aa/pkg-1.0-py3-none-any.whl"));
    files[1]["url"] = json!(format!("{A}/e/pypi.org/packages/pkg-1.0.tar.gz#sha256=44"));
    assert_eq!(out, want);
}

#[test]
fn npm_package_documents() {
    let doc = json!({
        "name": "left-pad",
        "dist-tags": {"latest": "1.3.0"},
        "versions": {
            "1.3.0": {"name": "left-pad", "version": "1.3.0",
                      "dist": {"tarball": "https://registry.npmjs.org/left-pad/-/left-pad-1.3.0.tgz",
                               "shasum": "5b8a3a7765dfe001261dde915589e782f8c94d1e",
                               "integrity": "sha512-XI5MPzVNApjAyhQzphX8BkmKsKUxD4LdyK24iZeQEv+Dn+wLXhH0Wyy9v5UeuVoyBCgN5zV1ZIbrTEsKA9Z3CQ=="}},
            "1.2.0": {"name": "left-pad", "version": "1.2.0",
                      "dist": {"tarball": "https://evil.example.net/left-pad-1.2.0.tgz", "shasum": "00"}},
        },
        "modified": "2018-01-01T00:00:00.000Z",
    });
    let out = rewrite("https://registry.npmjs.org/left-pad", Format::Json, &doc.to_string()).unwrap();
    let out: Value = serde_json::from_str(&out).unwrap();
    let mut want = doc.clone();
    want["versions"].as_object_mut().unwrap().remove("1.2.0");
    want["versions"]["1.3.0"]["dist"]["tarball"] = json!(format!("{A}/e/registry.npmjs.org/left-pad/-/left-pad-1.3.0.tgz"));
    assert_eq!(out, want);
}

#[test]
fn json_that_cannot_be_rewritten_is_refused() {
    for body in ["", "{", "{\"files\": [}", "\u{feff}{}", r#"{"url": "https://evil.example.net/"}"#] {
        let got = rewrite("https://pypi.org/simple/pkg/", Format::Json, body);
        assert!(matches!(got, Err(Uninspectable::Index(_))), "{body:?}: {got:?}");
    }
    // Not every `url` is a link to follow, but every one is decided: one
    // that is not allowed takes its object with it.
    let got = rewrite("https://pypi.org/pypi/pkg/json", Format::Json, r#"{"info": {"bugs": {"url": "https://evil.example.net/"}}, "n": 1}"#);
    assert_eq!(got.as_deref(), Ok(r#"{"info":{},"n":1}"#));
}

#[test]
fn which_answers_are_rewritten() {
    let h = |pairs: &[(&str, &str)]| pairs.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect::<Vec<_>>();
    let ok = |m: &str, s: u16, hs: &[(&str, &str)]| format(m, s, &h(hs));
    assert_eq!(ok("GET", 200, &[("content-type", "text/html")]), Ok(Some(Format::Html)));
    assert_eq!(ok("GET", 200, &[("Content-Type", "text/html; charset=\"UTF-8\"")]), Ok(Some(Format::Html)));
    assert_eq!(ok("GET", 200, &[("content-type", "application/vnd.pypi.simple.v1+html")]), Ok(Some(Format::Html)));
    assert_eq!(ok("GET", 200, &[("content-type", "application/vnd.pypi.simple.v1+json")]), Ok(Some(Format::Json)));
    assert_eq!(ok("GET", 200, &[("content-type", "application/vnd.npm.install-v1+json; charset=utf-8")]), Ok(Some(Format::Json)));
    assert_eq!(ok("GET", 203, &[("content-type", "application/json"), ("content-encoding", "gzip")]), Ok(Some(Format::Json)));
    assert_eq!(ok("GET", 200, &[("content-type", "application/json"), ("content-encoding", "br")]), Ok(Some(Format::Json)));
    for (m, s, hs) in [
        ("GET", 200, &[("content-type", "application/octet-stream")][..]),
        ("GET", 200, &[]),
        ("HEAD", 200, &[("content-type", "text/html")]),
        ("POST", 200, &[("content-type", "application/json")]),
        ("GET", 404, &[("content-type", "text/html")]),
        ("GET", 304, &[("content-type", "text/html")]),
        ("GET", 204, &[("content-type", "application/json")]),
    ] {
        assert_eq!(ok(m, s, hs), Ok(None), "{m} {s} {hs:?}");
    }
    assert_eq!(ok("GET", 206, &[("content-type", "text/html")]), Err(Uninspectable::Index("partial content")));
    assert_eq!(ok("GET", 200, &[("content-type", "text/html; charset=utf-16")]), Err(Uninspectable::Index("charset")));
    assert_eq!(ok("GET", 200, &[("content-type", "text/html;charset=utf-7")]), Err(Uninspectable::Index("charset")));
    assert_eq!(ok("GET", 200, &[("content-type", "text/html; charset=ebcdic-cp-us")]), Err(Uninspectable::Index("charset")));
    assert_eq!(ok("GET", 200, &[("content-type", "text/html; charset=ISO-8859-1")]), Ok(Some(Format::Html)));
    assert!(matches!(ok("GET", 200, &[("content-type", "text/html"), ("content-encoding", "deflate")]), Err(Uninspectable::Encoding(_))));
    assert!(matches!(ok("GET", 200, &[("content-type", "text/html"), ("content-encoding", "gzip, gzip")]), Err(Uninspectable::Encoding(_))));
}
