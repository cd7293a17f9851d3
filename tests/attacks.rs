//! Attack tables across every class of hostile input, run through the real
//! deciding pipeline. Each row: a description, the hostile input, the
//! expected error code — and proof that nothing happened: no outbound
//! request was built, no credential secret was read, the audit record is a
//! denial and carries neither a secret, the token nor the query.

mod common;

use airlock::audit::Decision;
use airlock::inject::McpOutbound;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine;
use common::*;

fn assert_refused(what: &str, run: Run, code: &str, token: &str) {
    match run.result {
        Ok(out) => panic!("{what}: allowed, would send to {}", out.url()),
        Err(e) => {
            assert_eq!(e.code(), code, "{what}: {e:?}");
            assert!(!run.secret_read, "{what}: a credential secret was read");
            assert_eq!(run.audit.decision, Decision::Deny, "{what}");
            assert_eq!(run.audit.reason, code, "{what}");
            let line = run.audit.to_json();
            assert!(!line.contains(ECHO_SECRET), "{what}: audit holds the credential");
            assert!(token.is_empty() || !line.contains(token), "{what}: audit holds the token");
            assert!(!line.contains("q=secret-query-value"), "{what}: audit holds the query");
            // The wire body is one of the fixed messages, never the detail
            // (invalid_request messages are built from the client's own input).
            if code != "invalid_request" {
                assert!(!e.wire_body().contains(&e.detail()), "{what}: detail on the wire");
            }
        }
    }
}

const QUERY: Option<&str> = Some("q=secret-query-value");

#[test]
fn token_attacks() {
    let f = Fixture::new();
    let good = f.token(r#"{"echo":"admin"}"#, 600);
    let parts: Vec<&str> = good.split('.').collect();
    let (kid, claims, mac) = (parts[1], parts[2], parts[3]);
    let claims_json = URL_SAFE_NO_PAD.decode(claims).unwrap();
    let std_claims = STANDARD.encode(&claims_json);
    let padded_mac = format!("{mac}=");
    let mut rows: Vec<(String, String)> = vec![
        ("missing".into(), String::new()),
        ("upper-case version".into(), good.replacen("al1.", "AL1.", 1)),
        ("version 0".into(), good.replacen("al1.", "al0.", 1)),
        ("no version".into(), good.split_once('.').unwrap().1.to_string()),
        ("empty kid".into(), format!("al1..{claims}.{mac}")),
        ("kid with dot".into(), format!("al1.k1.x.{claims}.{mac}")),
        ("unknown kid".into(), format!("al1.k9.{claims}.{mac}")),
        ("kid case".into(), format!("al1.K1.{claims}.{mac}")),
        ("padded mac".into(), format!("al1.{kid}.{claims}.{padded_mac}")),
        ("mac in standard base64".into(), format!("al1.{kid}.{claims}.{}", STANDARD.encode(URL_SAFE_NO_PAD.decode(mac).unwrap()))),
        ("claims in standard base64".into(), format!("al1.{kid}.{std_claims}.{mac}")),
        ("claims padded".into(), format!("al1.{kid}.{claims}==.{mac}")),
        ("hex mac".into(), format!("al1.{kid}.{claims}.{}", URL_SAFE_NO_PAD.decode(mac).unwrap().iter().map(|b| format!("{b:02x}")).collect::<String>())),
        ("mac of zeros".into(), format!("al1.{kid}.{claims}.{}", URL_SAFE_NO_PAD.encode([0u8; 32]))),
        ("mac truncated by one char".into(), format!("al1.{kid}.{claims}.{}", &mac[..mac.len() - 1])),
        ("mac extended".into(), format!("al1.{kid}.{claims}.{mac}A")),
        ("empty claims".into(), format!("al1.{kid}..{mac}")),
        ("claims reordered JSON, old mac".into(), {
            let v: serde_json::Value = serde_json::from_slice(&claims_json).unwrap();
            format!("al1.{kid}.{}.{mac}", URL_SAFE_NO_PAD.encode(serde_json::to_vec_pretty(&v).unwrap()))
        }),
        ("jwt none".into(), format!("eyJhbGciOiJub25lIn0.{claims}.")),
        ("jwt hs256 shape".into(), format!("eyJhbGciOiJIUzI1NiJ9.{claims}.{mac}")),
        ("alg in kid".into(), format!("al1.none.{claims}.")),
        ("leading space".into(), format!(" {good}")),
        ("trailing space".into(), format!("{good} ")),
        ("inner tab".into(), good.replacen('.', ".\t", 1)),
        ("inner newline".into(), good.replacen('.', ".\n", 1)),
        ("non-ascii".into(), format!("{good}ü")),
        ("fullwidth dot".into(), good.replacen('.', "\u{ff0e}", 1)),
        ("NUL".into(), format!("{good}\0")),
        ("oversized".into(), format!("{good}{}", "A".repeat(5000))),
        ("percent-encoded".into(), good.replace('.', "%2E")),
        ("quoted".into(), format!("\"{good}\"")),
        ("double token".into(), format!("{good}.{good}")),
    ];
    // Every single-character substitution in the signed part must fail the MAC.
    for i in [4, 7, 10, 20, 40, claims.len() / 2 + 7] {
        let mut b = good.clone().into_bytes();
        if i < b.len() && b[i] != b'.' {
            b[i] = if b[i] == b'A' { b'B' } else { b'A' };
            rows.push((format!("substituted byte {i}"), String::from_utf8(b).unwrap()));
        }
    }
    let wire = airlock::error::Error::InvalidSession(airlock::token::TokenError::BadMac).wire_body();
    for (what, token) in rows {
        let auth = format!("Bearer {token}");
        let headers: Vec<(&str, &str)> = if token.is_empty() { vec![] } else { vec![("authorization", auth.as_str())] };
        let run = f.run("echo", "GET", "/x", QUERY, &headers, NOW);
        if let Err(e) = &run.result {
            assert_eq!(e.wire_body(), wire, "{what}: every token failure must look the same");
        }
        assert_refused(&what, run, "invalid_session", &good);
    }
    // Authorization header shapes.
    for (what, value) in [
        ("two bearer values", format!("Bearer {good}, Bearer {good}")),
        ("basic with the raw token", format!("Basic {good}")),
        ("basic with a tampered token", format!("Basic {}", STANDARD.encode(format!("x:{}", good.replacen("al1.k1.", "al1.k2.", 1))))),
        ("basic and bearer joined", format!("Basic {}, Bearer {good}", STANDARD.encode(format!("x:{good}")))),
        ("unknown scheme", format!("Digest {good}")),
        ("no scheme", good.clone()),
        ("double space", format!("Bearer  {good}")),
        ("empty", String::new()),
    ] {
        let run = f.run("echo", "GET", "/x", QUERY, &[("authorization", &value)], NOW);
        assert_refused(what, run, "invalid_session", &good);
    }
    // The token anywhere but the places clients put their key does not count.
    for name in ["cookie", "x-airlock-token", "proxy-authorization", "x-auth-token"] {
        let run = f.run("echo", "GET", "/x", QUERY, &[(name, &good)], NOW);
        assert_refused(name, run, "invalid_session", &good);
    }
    // Exactly one token: a second, different one anywhere is refused, even
    // when both are valid sessions (two parsers could each pick another).
    let other = f.token(r#"{"echo":"admin"}"#, 600);
    let bearer = format!("Bearer {good}");
    let basic = format!("Basic {}", STANDARD.encode(format!("x:{other}")));
    for (what, headers) in [
        ("bearer and x-api-key", vec![("authorization", bearer.as_str()), ("x-api-key", other.as_str())]),
        ("x-api-key and x-goog-api-key", vec![("x-api-key", good.as_str()), ("x-goog-api-key", other.as_str())]),
        ("api-key and basic", vec![("api-key", good.as_str()), ("authorization", basic.as_str())]),
        ("a valid token and garbage", vec![("authorization", bearer.as_str()), ("x-api-key", "sk-not-a-session")]),
    ] {
        let run = f.run("echo", "GET", "/x", QUERY, &headers, NOW);
        assert_refused(what, run, "invalid_session", &good);
    }
}

#[test]
fn the_token_is_accepted_wherever_clients_put_their_key_and_never_forwarded() {
    let f = Fixture::new();
    let good = f.token(r#"{"echo":"read"}"#, 600);
    let basic = |pair: String| format!("Basic {}", STANDARD.encode(pair));
    let rows: Vec<(&str, Vec<(String, String)>)> = vec![
        ("bearer (openai, stripe)", vec![("Authorization".into(), format!("Bearer {good}"))]),
        ("token (PyGithub, Octokit)", vec![("authorization".into(), format!("token {good}"))]),
        ("basic password (git, pip)", vec![("authorization".into(), basic(format!("session:{good}")))]),
        ("basic user, empty password (a URL's user)", vec![("authorization".into(), basic(format!("{good}:")))]),
        ("x-api-key (anthropic)", vec![("x-api-key".into(), good.clone())]),
        ("x-goog-api-key (google-genai)", vec![("X-Goog-Api-Key".into(), good.clone())]),
        ("api-key (azure openai)", vec![("api-key".into(), good.clone())]),
        ("the same token twice", vec![("authorization".into(), format!("Bearer {good}")), ("x-api-key".into(), good.clone())]),
    ];
    for (what, headers) in rows {
        let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let run = f.run("echo", "GET", "/x", None, &headers, NOW);
        let out = run.result.unwrap_or_else(|e| panic!("{what}: {e:?}"));
        let expected =
            vec![("accept-encoding".to_string(), airlock::inject::ACCEPT_ENCODING.to_string()), ("authorization".to_string(), format!("Bearer {ECHO_SECRET}"))];
        assert_eq!(out.headers(), expected, "{what}: only Airlock's credential goes out");
        assert!(!out.url().contains(&good), "{what}");
    }
}

#[test]
fn path_attacks() {
    let f = Fixture::new();
    let token = f.token(r#"{"echo":"admin"}"#, 600);
    let auth = format!("Bearer {token}");
    let rows: &[(&str, &str, &str)] = &[
        ("dot-dot", "/a/../b", "invalid_path"),
        ("dot", "/a/./b", "invalid_path"),
        ("leading dot-dot", "/../v1/sessions", "invalid_path"),
        ("encoded dot-dot", "/%2e%2e/x", "invalid_path"),
        ("encoded upper", "/%2E%2E/x", "invalid_path"),
        ("half encoded", "/.%2e/x", "invalid_path"),
        ("half encoded 2", "/%2e./x", "invalid_path"),
        ("encoded single dot", "/a/%2e/b", "invalid_path"),
        ("double-encoded dot-dot", "/%252e%252e/x", "invalid_path"),
        ("triple-encoded", "/%25252e/x", "invalid_path"),
        ("double-encoded slash", "/a%252fb", "invalid_path"),
        ("encoded slash", "/a%2fb", "invalid_path"),
        ("encoded slash upper", "/a%2Fb", "invalid_path"),
        ("encoded dot-dot slash", "/items/..%2f..%2fadmin", "invalid_path"),
        ("encoded backslash", "/a%5cb", "invalid_path"),
        ("backslash", "/a\\b", "invalid_path"),
        ("backslash traversal", "/..\\..\\etc", "invalid_path"),
        ("NUL", "/a%00b", "invalid_path"),
        ("raw NUL", "/a\0", "invalid_path"),
        ("CR", "/a%0d", "invalid_path"),
        ("LF", "/a%0a", "invalid_path"),
        ("CRLF header injection", "/a%0d%0aSet-Cookie:%20x", "invalid_path"),
        ("tab", "/a%09b", "invalid_path"),
        ("DEL", "/a%7f", "invalid_path"),
        ("unit separator", "/a%1f", "invalid_path"),
        ("bad escape", "/a%zz", "invalid_path"),
        ("short escape", "/a%4", "invalid_path"),
        ("lone percent", "/100%", "invalid_path"),
        ("overlong slash", "/a%c0%af", "invalid_path"),
        ("overlong dot", "/%c0%ae%c0%ae/x", "invalid_path"),
        ("overlong 3-byte", "/%e0%80%af", "invalid_path"),
        ("invalid utf8", "/%ff", "invalid_path"),
        ("surrogate", "/%ed%a0%80", "invalid_path"),
        ("truncated utf8", "/%e2%82", "invalid_path"),
        ("double slash", "/a//b", "invalid_path"),
        ("protocol-relative", "//evil.example/x", "invalid_path"),
        ("triple slash", "///x", "invalid_path"),
        ("path parameter", "/items;jsessionid=1", "invalid_path"),
        ("path parameter mid", "/items;x/1", "invalid_path"),
        ("encoded semicolon", "/items%3bx", "invalid_path"),
        ("relative", "items", "invalid_path"),
        ("huge", &"/a".repeat(3000), "invalid_path"),
    ];
    for (what, path, code) in rows {
        let run = f.run("echo", "GET", path, QUERY, &[("authorization", &auth)], NOW);
        assert_refused(what, run, code, &token);
    }
}

#[test]
fn host_attacks() {
    let f = Fixture::new();
    let token = f.token_with(r#"{"echo":"read"}"#, 600, r#","egress":true"#);
    let no_egress = f.token(r#"{"echo":"read"}"#, 600);
    let auth = format!("Bearer {token}");
    let forbidden = [
        "127.0.0.1",
        "127.0.0.1:443",
        "10.0.0.1",
        "192.168.1.1",
        "172.16.0.1",
        "169.254.169.254",
        "100.100.100.200",
        "0.0.0.0",
        "255.255.255.255",
        "1.1.1.1",
        "2130706433",
        "017700000001",
        "0177.0.0.1",
        "0x7f.0.0.1",
        "0x7f000001",
        "0X7F.1",
        "127.1",
        "127.0.1",
        "10.1",
        "0",
        "0x",
        "127.0.0.1.",
        "[::1]",
        "[::]",
        "::1",
        "[::ffff:127.0.0.1]",
        "[::ffff:7f00:1]",
        "[0:0:0:0:0:ffff:127.0.0.1]",
        "[64:ff9b::7f00:1]",
        "[64:ff9b::169.254.169.254]",
        "[2002:7f00:1::]",
        "[fe80::1]",
        "[fe80::1%25eth0]",
        "[fd00::1]",
        "[::1]:8080",
        "localhost",
        "LocalHost",
        "localhost.",
        "a.localhost",
        "x.y.localhost",
        "metadata",
        "metadata.google.internal",
        "METADATA.GOOGLE.INTERNAL.",
        "metadata.goog",
        "instance-data",
        "instance-data.ec2.internal",
        "metadata.azure.com",
        "db.internal",
        "svc.cluster.internal",
        "printer.local",
        "host.localdomain",
        "nas.home.arpa",
        "1.0.0.127.in-addr.arpa",
        "router.lan",
        "kubernetes",
        "intranet",
        OWN_HOST,
        "AIRLOCK.EXAMPLE.WORKERS.DEV.",
    ];
    for host in forbidden {
        let run = f.run_egress(host, "GET", "/x", QUERY, &[("authorization", &auth)]);
        assert_refused(host, run, "host_forbidden", &token);
    }
    let malformed = [
        "user@pypi.org",
        "user:pass@pypi.org",
        "pypi.org@evil.com",
        "pypi%2eorg",
        "evil.com%2f@pypi.org",
        "bücher.de",
        "pypi\u{3002}org",
        "a_b.pythonhosted.org",
        "pypi.org:0",
        "pypi.org:65536",
        "pypi.org:abc",
        "pypi.org:",
        "pypi.org:-1",
        "-pypi.org",
        "pypi-.org",
        "pypi..org",
        "pypi.org..",
        ".",
        "pypi org",
        "pypi.org\\x",
        "",
        "pypi.org:80:80",
    ];
    for host in malformed {
        let run = f.run_egress(host, "GET", "/x", QUERY, &[("authorization", &auth)]);
        assert_refused(host, run, "invalid_host", &token);
    }
    let not_allowed = [
        "pythonhosted.org",
        "evilpythonhosted.org",
        "pythonhosted.org.evil.io",
        "evil-pythonhosted.org",
        "www.pypi.org",
        "pypi.org.evil.io",
        "pypi.org:443",
        "pypi.org:8080",
        "mirror.example.com:8081",
        "example.com",
        "github.com",
        "xn--pypi-abc.org",
    ];
    for host in not_allowed {
        let run = f.run_egress(host, "GET", "/x", QUERY, &[("authorization", &auth)]);
        assert_refused(host, run, "egress_not_allowed", &token);
    }
    // Without the egress right, an allowed host looks exactly like an unlisted one.
    let plain = format!("Bearer {no_egress}");
    let a = f.run_egress("pypi.org", "GET", "/x", QUERY, &[("authorization", &plain)]);
    let b = f.run_egress("example.com", "GET", "/x", QUERY, &[("authorization", &auth)]);
    assert_eq!(a.result.as_ref().err().map(|e| e.wire_body()), b.result.as_ref().err().map(|e| e.wire_body()));
    assert_refused("no egress right", a, "egress_not_allowed", &no_egress);
    // Without a valid session even a forbidden destination is a 401: every
    // refusal of a real attempt is attributed to its session.
    let run = f.run_egress("169.254.169.254", "GET", "/latest/meta-data", None, &[]);
    assert_refused("metadata without a token", run, "invalid_session", "");
    let run = f.run_egress("169.254.169.254", "GET", "/latest/meta-data", None, &[("authorization", &auth)]);
    assert!(run.audit.session_id.is_some(), "the denial names the session");
    assert_refused("metadata with a token", run, "host_forbidden", &token);
    // Egress paths get the same hygiene.
    for path in ["/a/../b", "/a%2fb", "/a;b", "//x"] {
        let run = f.run_egress("pypi.org", "GET", path, QUERY, &[("authorization", &auth)]);
        assert_refused(path, run, "invalid_path", &token);
    }
}

#[test]
fn egress_allowed_calls_carry_no_credential() {
    let f = Fixture::new();
    let token = f.token_with(r#"{"echo":"read"}"#, 600, r#","egress":true"#);
    let auth = format!("Bearer {token}");
    let hostile = [
        ("authorization", auth.as_str()),
        ("cookie", "a=1"),
        ("proxy-authorization", "Basic eA=="),
        ("host", "evil"),
        ("x-forwarded-for", "1.2.3.4"),
        ("forwarded", "for=1.2.3.4"),
        ("x-real-ip", "1.2.3.4"),
        ("accept", "text/html"),
    ];
    for (authority, base) in [
        ("pypi.org", "https://pypi.org"),
        ("PyPI.org.", "https://pypi.org"),
        ("files.pythonhosted.org", "https://files.pythonhosted.org"),
        ("mirror.example.com:8080", "http://mirror.example.com:8080"),
    ] {
        let run = f.run_egress(authority, "GET", "/simple/requests/", Some("a=1"), &hostile);
        let out = run.result.unwrap_or_else(|e| panic!("{authority}: {e:?}"));
        assert_eq!(out.url(), format!("{base}/simple/requests/?a=1"));
        assert_eq!(out.headers(), vec![("accept".to_string(), "text/html".to_string())], "{authority}");
        assert!(out.redactions().is_empty());
        assert_eq!(run.audit.host.as_deref(), Some(authority.trim_end_matches('.').split(':').next().unwrap().to_ascii_lowercase().as_str()));
    }
}

#[test]
fn header_attacks() {
    let f = Fixture::new();
    let token = f.token(r#"{"echo":"write"}"#, 600);
    let auth = format!("Bearer {token}");
    // Headers that must never reach the origin, whatever their value.
    let hostile: &[(&str, &str)] = &[
        ("host", "evil.example"),
        ("x-forwarded-for", "127.0.0.1"),
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "http"),
        ("x-forwarded-port", "80"),
        ("forwarded", "for=127.0.0.1;host=evil"),
        ("x-real-ip", "127.0.0.1"),
        ("proxy-authorization", "Basic eDp5"),
        ("proxy-connection", "keep-alive"),
        ("cookie", "session=stolen"),
        ("x-airlock-request-id", "spoof"),
        ("x-airlock-upstream-status", "200"),
        ("cf-connecting-ip", "1.2.3.4"),
        ("cf-worker", "x"),
        ("connection", "x-extra"),
        ("keep-alive", "timeout=5"),
        ("te", "trailers"),
        ("trailer", "x"),
        ("transfer-encoding", "chunked"),
        ("upgrade", "websocket"),
        ("expect", "100-continue"),
        ("x-extra", "listed in connection"),
        ("x-unlisted", "dropped"),
        ("x-http-method-override", "DELETE"),
        ("x-original-url", "/admin"),
        ("x-rewrite-url", "/admin"),
    ];
    let mut headers: Vec<(&str, &str)> = vec![("authorization", &auth)];
    headers.extend_from_slice(hostile);
    let run = f.run("echo", "POST", "/items/1", None, &headers, NOW);
    let out = run.result.unwrap();
    let names: Vec<&str> = out.headers().iter().map(|(n, _)| n.as_str()).collect();
    // Only Airlock's own headers: the credential, and the codings it can scan.
    assert_eq!(names, vec!["accept-encoding", "authorization"], "only the injected credential may be set");
    assert_eq!(out.headers()[0].1, airlock::inject::ACCEPT_ENCODING);
    assert_eq!(out.headers()[1].1, format!("Bearer {ECHO_SECRET}"));

    // Size caps refuse before anything else.
    let big = "v".repeat(airlock::request::MAX_HEADER_BYTES);
    let owned = |h: &[(&str, &str)]| -> Vec<(String, String)> { h.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect() };
    type SizeRow<'a> = (&'a str, String, Vec<(String, String)>, &'a str);
    let rows: Vec<SizeRow> = vec![
        ("one huge header", "https://a/t/echo/x".into(), owned(&[("x-big", &big)]), "headers_too_large"),
        ("many headers", "https://a/t/echo/x".into(), (0..2000).map(|i| (format!("x-h{i}"), "0123456789".to_string())).collect(), "headers_too_large"),
        ("huge url", format!("https://a/t/echo/x?{}", "a".repeat(9000)), vec![], "url_too_long"),
        ("huge path", format!("https://a/t/echo/{}", "a/".repeat(5000)), vec![], "url_too_long"),
    ];
    for (what, url, headers, code) in rows {
        let e = airlock::request::check_sizes(&url, &headers).unwrap_err();
        assert_eq!(e.code(), code, "{what}");
    }
    assert!(airlock::request::check_sizes("https://a/t/echo/x?q=1", &owned(&[("accept", "x")])).is_ok());
}

#[test]
fn body_attacks() {
    let f = Fixture::new();
    let token = f.token_with(r#"{"echo":"write"}"#, 600, r#","egress":true"#);
    let auth = format!("Bearer {token}");
    for (what, len, code) in [
        ("one over the limit", "1001", "body_too_large"),
        ("huge", "99999999999", "body_too_large"),
        ("u64 overflow", "184467440737095516160", "invalid_request"),
        ("negative", "-1", "invalid_request"),
        ("two lengths", "10, 10", "invalid_request"),
        ("hex", "0x10", "invalid_request"),
        ("empty", "", "invalid_request"),
        ("plus sign", "+5", "invalid_request"),
        ("inner space", "1 0", "invalid_request"),
    ] {
        let run = f.run("echo", "POST", "/items/1", QUERY, &[("authorization", &auth), ("content-length", len)], NOW);
        assert_refused(what, run, code, &token);
        let run = f.run_egress("pypi.org", "POST", "/upload", QUERY, &[("authorization", &auth), ("content-length", len)]);
        assert_refused(what, run, code, &token);
    }
    // At the limit is fine, and the cap travels with the outbound request.
    let run = f.run("echo", "POST", "/items/1", None, &[("authorization", &auth), ("content-length", "1000")], NOW);
    let out = run.result.unwrap();
    assert_eq!((out.declared_length(), out.body_limit()), (Some(1000), 1000));
    let run = f.run("echo", "POST", "/items/1", None, &[("authorization", &auth)], NOW);
    let out = run.result.unwrap();
    assert_eq!((out.declared_length(), out.body_limit()), (None, 1000), "chunked bodies must be counted by the edge");
}

#[test]
fn mcp_attacks() {
    let f = Fixture::new();
    let read = f.token(r#"{"docs":"read","echo":"admin"}"#, 600);
    let auth = format!("Bearer {read}");
    const JSON: (&str, &str) = ("content-type", "application/json");
    let call =
        |name: &str| format!(r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"{name}","arguments":{{"q":"secret-argument-value"}}}}}}"#);
    // Messages refused inside the JSON-RPC layer: answered by Airlock, no
    // credential read, nothing built.
    let refused: Vec<(&str, String, &str)> = vec![
        ("tool above the session's level", call("create_page"), "mcp_tool_not_allowed"),
        ("admin tool", call("delete_space"), "mcp_tool_not_allowed"),
        ("tool not in the policy", call("debug_dump"), "mcp_tool_not_allowed"),
        ("empty tool name", call(""), "mcp_tool_not_allowed"),
        ("prompt not in the policy", r#"{"jsonrpc":"2.0","id":2,"method":"prompts/get","params":{"name":"jailbreak"}}"#.into(), "mcp_prompt_not_allowed"),
        (
            "resource outside the prefixes",
            r#"{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"docs://private/k"}}"#.into(),
            "mcp_resource_not_allowed",
        ),
        ("prefix trick", r#"{"jsonrpc":"2.0","id":3,"method":"resources/read","params":{"uri":"docs://publicity/x"}}"#.into(), "mcp_resource_not_allowed"),
        ("unknown method", r#"{"jsonrpc":"2.0","id":4,"method":"admin/shutdown"}"#.into(), "mcp_method_not_allowed"),
        ("server-side method from the client", r#"{"jsonrpc":"2.0","id":5,"method":"sampling/createMessage","params":{}}"#.into(), "mcp_method_not_allowed"),
    ];
    for (what, body, reason) in refused {
        let (result, secret_read, audit) = f.run_mcp("docs", "POST", &[("authorization", &auth), JSON], Some(&body));
        // A refusal is an answer, not a request: there is no outbound to send.
        match result.unwrap_or_else(|e| panic!("{what}: {e:?}")) {
            McpOutbound::Refused { reason: r, .. } => assert_eq!(r, reason, "{what}"),
            McpOutbound::Exchange(x) => panic!("{what}: not refused, built a request to {}", x.outbound.url()),
        }
        assert!(!secret_read, "{what}: the credential was read");
        let line = audit.to_json();
        assert!(!line.contains("secret-argument-value") && !line.contains(&read), "{what}: {line}");
    }
    // Requests refused at the HTTP layer.
    let other_server = format!("Bearer {}", f.token(r#"{"echo":"admin"}"#, 600));
    type McpRow<'a> = (&'a str, &'a str, &'a str, Vec<(&'a str, &'a str)>, Option<&'a str>, &'a str);
    let rows: Vec<McpRow> = vec![
        ("no token", "docs", "POST", vec![], Some(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#), "invalid_session"),
        (
            "server not in scope",
            "docs",
            "POST",
            vec![("authorization", &other_server), JSON],
            Some(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#),
            "tool_not_allowed",
        ),
        ("unknown server", "nope", "POST", vec![("authorization", &auth), JSON], Some(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#), "tool_not_allowed"),
        (
            "plain HTTP tool as MCP",
            "echo",
            "POST",
            vec![("authorization", &auth), JSON],
            Some(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#),
            "tool_not_allowed",
        ),
        ("PUT", "docs", "PUT", vec![("authorization", &auth)], None, "method_not_allowed"),
        ("batch", "docs", "POST", vec![("authorization", &auth), JSON], Some(r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#), "mcp_invalid_message"),
        ("not JSON", "docs", "POST", vec![("authorization", &auth), JSON], Some("{"), "mcp_invalid_message"),
        ("not JSON-RPC 2.0", "docs", "POST", vec![("authorization", &auth), JSON], Some(r#"{"id":1,"method":"ping"}"#), "mcp_invalid_message"),
        (
            "foreign session id",
            "docs",
            "POST",
            vec![("authorization", &auth), JSON, ("mcp-session-id", "AAAAAAAAAAAAAAAAAAAAAA.origin-sid")],
            Some(r#"{"jsonrpc":"2.0","id":1,"method":"ping"}"#),
            "mcp_session_invalid",
        ),
        ("raw origin session id", "docs", "GET", vec![("authorization", &auth), ("mcp-session-id", "origin-sid")], None, "mcp_session_invalid"),
    ];
    // Parser differentials: spellings another JSON reader (or charset)
    // would take for an admin call. Refused before any verdict: nothing to
    // forward, no credential read.
    let admin = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_space"}}"#;
    let differentials: Vec<(&str, String, &str)> = vec![
        (
            "duplicate name, admin last",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","name":"delete_space"}}"#.into(),
            "application/json",
        ),
        (
            "duplicate name, admin first",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"delete_space","name":"search"}}"#.into(),
            "application/json",
        ),
        (
            "escaped duplicate name",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","na\u006de":"delete_space"}}"#.into(),
            "application/json",
        ),
        (
            "Name for Go's case-insensitive match",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","Name":"delete_space"}}"#.into(),
            "application/json",
        ),
        ("Method with a result", r#"{"jsonrpc":"2.0","id":1,"result":{},"Method":"tools/call","params":{"name":"delete_space"}}"#.into(), "application/json"),
        (
            "LONG S in params",
            "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"param\u{17f}\":{\"name\":\"delete_space\"},\"params\":{\"name\":\"search\"}}".into(),
            "application/json",
        ),
        (
            "trailing NUL on name",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","name\u0000":"delete_space"}}"#.into(),
            "application/json",
        ),
        ("float id", r#"{"jsonrpc":"2.0","id":1.0,"method":"tools/call","params":{"name":"search"}}"#.into(), "application/json"),
        (
            "utf-7 body",
            r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search","+AG4-ame":"delete_space"}}"#.into(),
            "application/json; charset=utf-7",
        ),
        ("latin1", admin.into(), "application/json; charset=latin1"),
        ("utf-16", admin.into(), "application/json; charset=utf-16"),
        ("text/plain", admin.into(), "text/plain"),
    ];
    for (what, body, content_type) in differentials {
        let (result, secret_read, _) = f.run_mcp("docs", "POST", &[("authorization", &auth), ("content-type", content_type)], Some(&body));
        match result {
            Ok(_) => panic!("{what}: not refused"),
            Err(e) => {
                assert_eq!(e.code(), "mcp_invalid_message", "{what}");
                assert_eq!(e.status(), 400, "{what}");
                assert!(e.wire_body().contains("-32600"), "{what}: {}", e.wire_body());
            }
        }
        assert!(!secret_read, "{what}: the credential was read");
    }
    let (result, _, _) = f.run_mcp("docs", "POST", &[("authorization", &auth)], Some(&call("search")));
    assert!(result.is_err(), "no Content-Type");
    for (what, server, method, headers, body, code) in rows {
        let (result, secret_read, _) = f.run_mcp(server, method, &headers, body);
        match result {
            Ok(_) => panic!("{what}: allowed"),
            Err(e) => assert_eq!(e.code(), code, "{what}"),
        }
        assert!(!secret_read, "{what}: the credential was read");
    }
    // An allowed call: credential set, sandbox token and session binding gone.
    let sent = r#"{ "params":{"arguments":{"q":"secret-argument-value"},"name":"search"},"method":"tools/call","jsonrpc":"2.0","id":1 }"#;
    let headers = [
        ("authorization", auth.as_str()),
        ("content-type", "application/json; charset=UTF-8"),
        ("content-encoding", "identity"),
        ("accept", "application/json, text/event-stream"),
        ("mcp-protocol-version", "2025-06-18"),
    ];
    let (result, _, audit) = f.run_mcp("docs", "POST", &headers, Some(sent));
    let McpOutbound::Exchange(p) = result.unwrap() else { panic!("not forwarded") };
    // What goes upstream is the canonical reading, as plain JSON.
    let Some(body) = &p.body else { panic!("no canonical body") };
    assert_eq!(body.as_bytes(), br#"{"id":1,"jsonrpc":"2.0","method":"tools/call","params":{"arguments":{"q":"secret-argument-value"},"name":"search"}}"#);
    let content_types: Vec<&str> = p.outbound.headers().iter().filter(|(n, _)| n.eq_ignore_ascii_case("content-type")).map(|(_, v)| v.as_str()).collect();
    assert_eq!(content_types, ["application/json"]);
    assert!(!p.outbound.headers().iter().any(|(n, _)| n.eq_ignore_ascii_case("content-encoding")));
    assert_eq!(p.outbound.url(), "https://mcp.example.com/mcp");
    assert!(p.outbound.headers().contains(&("authorization".to_string(), format!("Bearer {ECHO_SECRET}"))));
    assert!(p.outbound.headers().contains(&("mcp-protocol-version".to_string(), "2025-06-18".to_string())));
    assert_eq!(audit.mcp_target.as_deref(), Some("search"));
    assert_eq!(audit.mcp_args, Some(vec!["q".to_string()]));
}

// ---- path and method games ------------------------------------------------
// Servlet dot segments (`..;`), Unicode compatibility forms that NFKC turns
// into separators, and method-override parameters, against tools with and
// without `allow_path_params` / `allow_method_override`. The secret closure
// counts its calls: a refusal must read none.

const GAMES_POLICY: &str = r#"{
  "version": 1,
  "audience": "airlock-test",
  "tools": {
    "plain": {
      "origin": "https://plain.example.com",
      "credential": { "secret": "ECHO_TOKEN", "inject": "bearer" },
      "rules": [
        { "methods": ["GET", "POST"], "path": "/**", "level": "read" },
        { "methods": ["DELETE", "PUT"], "path": "/**", "level": "admin" }
      ]
    },
    "params": {
      "origin": "https://params.example.com",
      "credential": { "secret": "ECHO_TOKEN", "inject": "bearer" },
      "allow_path_params": true,
      "rules": [ { "methods": ["GET"], "path": "/**", "level": "read" } ]
    },
    "override": {
      "origin": "https://override.example.com",
      "credential": { "secret": "ECHO_TOKEN", "inject": "bearer" },
      "allow_method_override": true,
      "rules": [
        { "methods": ["GET"], "path": "/**", "level": "read" },
        { "methods": ["POST", "PUT"], "path": "/items/**", "level": "write" },
        { "methods": ["DELETE"], "path": "/items/*", "level": "admin" }
      ]
    }
  }
}"#;

struct Games {
    policy: airlock::policy::Policy,
    keys: airlock::token::KeyRing,
    state: common::MemState,
    /// The one session of every token (each level shares its id) exists.
    created: std::cell::Cell<bool>,
}

impl Games {
    fn new() -> Games {
        Games {
            policy: airlock::policy::Policy::parse(GAMES_POLICY).unwrap(),
            keys: airlock::token::KeyRing::parse(KEYS).unwrap(),
            state: common::MemState::default(),
            created: std::cell::Cell::new(false),
        }
    }

    fn token(&self, level: &str) -> String {
        let body = format!(r#"{{"agent":"a","user":"u","tools":{{"plain":"{level}","params":"{level}","override":"{level}"}},"ttl_seconds":600}}"#);
        let minted = airlock::mint::mint(body.as_bytes(), &self.policy, &self.keys, NOW, [9; 16]).unwrap();
        if !self.created.replace(true) {
            common::create_session(&self.state, minted.record.clone());
        }
        minted.token
    }

    /// Runs `prepare`; the second value is how many times a secret was read.
    fn run(&self, tool: &str, method: &str, rest: &str, query: Option<&str>, token: &str) -> (Run, usize) {
        use std::cell::Cell;
        use std::rc::Rc;
        let headers = vec![("authorization".to_string(), format!("Bearer {token}"))];
        let req = airlock::request::ToolRequest { tool, rest, method, query, headers: &headers };
        let reads = Cell::new(0);
        let mut audit = airlock::audit::AuditRecord::new("rid".into(), method, 0);
        let (result, gate) = common::drive_tool(&self.policy, &self.keys, &self.state, &req, NOW, &mut audit, |_| {
            reads.set(reads.get() + 1);
            let secret = airlock::secret::Secret::new(ECHO_SECRET.as_bytes().to_vec());
            Some(Rc::new(airlock::inject::PreparedCredential::new(secret)))
        });
        (common::finish(result, reads.get() > 0, audit, gate), reads.get())
    }
}

#[test]
fn path_and_method_games() {
    let g = Games::new();
    let admin = g.token("admin");
    let pct = |c: char| c.to_string().bytes().map(|b| format!("%{b:02X}")).collect::<String>();

    // Hostile paths, refused by both the plain tool and the one that allows
    // `;` parameters: the servlet container would resolve them as `..`, or
    // an NFKC-normalizing origin as a separator.
    let mut paths: Vec<(String, String)> = [
        ("dot-dot param mid", "/a/..;/admin"),
        ("dot-dot param leading", "/..;/"),
        ("dot param", "/.;/x"),
        ("dot param value", "/a/.;x/b"),
        ("jsessionid", "/a/..;jsessionid=1/admin"),
        ("encoded dot-dot param", "/%2e%2e;x"),
        ("half-encoded dot-dot param", "/%2E.;/admin"),
        ("encoded semicolon", "/a/..%3B/admin"),
        ("empty segment with param", "/a/;x/admin"),
        ("fullwidth dot-dot", "/a/\u{ff0e}\u{ff0e}/admin"),
        ("fullwidth dot-dot encoded", "/a/%EF%BC%8E%EF%BC%8E/admin"),
        ("mixed fullwidth and ascii dot", "/a/\u{ff0e}./admin"),
        ("fullwidth solidus", "/a\u{ff0f}b"),
        ("fullwidth reverse solidus", "/a\u{ff3c}b"),
        ("two dot leader", "/\u{2025}/admin"),
        ("fullwidth semicolon after dots", "/..\u{ff1b}x/admin"),
        ("fullwidth percent", "/\u{ff05}2e\u{ff05}2e/admin"),
    ]
    .iter()
    .map(|(w, p)| (w.to_string(), p.to_string()))
    .collect();
    for (name, c) in [
        ("fullwidth full stop", '\u{ff0e}'),
        ("fullwidth solidus", '\u{ff0f}'),
        ("fullwidth reverse solidus", '\u{ff3c}'),
        ("one dot leader", '\u{2024}'),
        ("two dot leader", '\u{2025}'),
        ("ellipsis", '\u{2026}'),
        ("small full stop", '\u{fe52}'),
        ("small reverse solidus", '\u{fe68}'),
        ("digit one full stop", '\u{2488}'),
        ("number twenty full stop", '\u{249b}'),
        ("digit zero full stop", '\u{1f100}'),
        ("account of", '\u{2100}'),
        ("care of", '\u{2105}'),
        ("vertical two dot leader", '\u{fe30}'),
        ("vertical ellipsis", '\u{fe19}'),
        ("square a.m.", '\u{33c2}'),
        ("small semicolon", '\u{fe54}'),
        ("greek question mark", '\u{37e}'),
        ("small percent", '\u{fe6a}'),
    ] {
        paths.push((format!("{name} raw"), format!("/x/a{c}b")));
        paths.push((format!("{name} encoded"), format!("/x/a{}b", pct(c))));
    }
    for tool in ["plain", "params"] {
        for (what, path) in &paths {
            let (run, reads) = g.run(tool, "GET", path, QUERY, &admin);
            assert_eq!(reads, 0, "{tool} {what}: a secret was read");
            assert_refused(&format!("{tool}: {what} {path:?}"), run, "invalid_path", &admin);
        }
    }

    // Legitimate paths still pass.
    for (tool, path, sent) in [
        ("plain", "/a.b/c", "https://plain.example.com/a.b/c"),
        ("plain", "/\u{e9}", "https://plain.example.com/%C3%A9"),
        ("plain", "/caf%C3%A9/\u{65e5}", "https://plain.example.com/caf%C3%A9/%E6%97%A5"),
        ("plain", "/.well-known/x", "https://plain.example.com/.well-known/x"),
        ("params", "/v1/x;y", "https://params.example.com/v1/x;y"),
        ("params", "/a;v=1/b", "https://params.example.com/a;v=1/b"),
        ("params", "/...;x", "https://params.example.com/...;x"),
    ] {
        let (run, _) = g.run(tool, "GET", path, None, &admin);
        let out = run.result.unwrap_or_else(|e| panic!("{tool} {path:?}: {e:?}"));
        assert_eq!(out.url(), sent);
    }
    // Without the option a parameter is still refused, as before.
    let (run, reads) = g.run("plain", "GET", "/v1/x;y", None, &admin);
    assert_eq!(reads, 0);
    assert_refused("param without allow_path_params", run, "invalid_path", &admin);

    // Method overrides on a tool that does not allow them: refused whatever
    // the level, even for an admin session whose rules would allow DELETE.
    for (what, method, query) in [
        ("_method", "POST", "_method=DELETE"),
        ("_METHOD lower value", "POST", "_METHOD=delete"),
        ("encoded underscore", "POST", "%5Fmethod=DELETE"),
        ("encoded key", "POST", "%5F%6D%65%74%68%6F%64=DELETE"),
        ("x-http-method-override", "POST", "x-http-method-override=DELETE"),
        ("X-HTTP-Method", "POST", "X-HTTP-Method=DELETE"),
        ("x-method-override", "POST", "x-method-override=PUT"),
        ("_httpmethod", "POST", "_HttpMethod=DELETE"),
        ("after another pair", "POST", "a=1&_method=PUT"),
        ("form plus before key", "POST", "+_method=DELETE"),
        ("form plus in value", "POST", "_method=DELETE+"),
        ("semicolon separator", "POST", "a=1;_method=DELETE"),
        ("php dot", "POST", ".method=DELETE"),
        ("php array", "POST", "_method[]=DELETE"),
        ("on a GET", "GET", "_method=DELETE"),
        ("no value", "POST", "_method"),
        ("same method", "POST", "_method=POST"),
    ] {
        let (run, reads) = g.run("plain", method, "/items/1", Some(query), &admin);
        assert_eq!(reads, 0, "{what}: a secret was read");
        assert_refused(&format!("override {what} ?{query}"), run, "method_override_not_allowed", &admin);
    }
    // Look-alikes that are not overrides pass.
    for query in ["method=flickr.photos.search", "q=_method%3DDELETE", "_methods=x", "http_method=DELETE"] {
        let (run, _) = g.run("plain", "POST", "/items/1", Some(query), &admin);
        let out = run.result.unwrap_or_else(|e| panic!("?{query}: {e:?}"));
        assert_eq!(out.url(), format!("https://plain.example.com/items/1?{query}"));
    }

    // With allow_method_override the override method is authorized too and
    // the higher level is required.
    let write = g.token("write");
    for (what, query, code) in [
        ("DELETE needs admin", "_method=DELETE", "level_insufficient"),
        ("upper-cased like the origin", "_method=delete", "level_insufficient"),
        ("alias", "x-http-method-override=DELETE", "level_insufficient"),
        ("second value", "_method=PUT&_method=DELETE", "level_insufficient"),
        ("unknown method", "_method=PURGE", "route_not_allowed"),
        ("empty", "_method=", "route_not_allowed"),
        ("no rule for the method", "_method=PATCH", "route_not_allowed"),
    ] {
        let (run, reads) = g.run("override", "POST", "/items/1", Some(query), &write);
        assert_eq!(reads, 0, "{what}: a secret was read");
        assert_refused(&format!("allowed override {what}"), run, code, &write);
    }
    let (run, reads) = g.run("override", "POST", "/items/1", Some("_method=DELETE"), &admin);
    let level = run.gate.as_ref().and_then(|g| g.level);
    let out = run.result.expect("admin may override to DELETE");
    assert_eq!(reads, 1);
    assert_eq!(out.method().as_str(), "POST", "the real method is sent");
    assert_eq!(out.url(), "https://override.example.com/items/1?_method=DELETE");
    assert_eq!(level, Some(airlock::policy::Level::Admin), "idempotency and approvals see the override's level");
    let (run, _) = g.run("override", "POST", "/items/1", Some("_method=PUT"), &write);
    assert!(run.result.is_ok(), "PUT is a write");
    assert_eq!(run.gate.and_then(|g| g.level), Some(airlock::policy::Level::Write));
    // The override path must match the override's rule too.
    let (run, reads) = g.run("override", "POST", "/items/1/sub", Some("_method=DELETE"), &admin);
    assert_eq!(reads, 0);
    assert_refused("override outside the DELETE rule's path", run, "route_not_allowed", &admin);
}
