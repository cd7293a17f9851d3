//! The deciding pipeline end to end, natively: mint a session, then run
//! requests through parse → authenticate → authorize → inject.
//!
//! Every hostile row asserts the refusal code *and* that nothing happened:
//! no outbound request was built and the credential secret was never read.

mod common;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;

use airlock::audit::Decision;
use airlock::mint::mint;
use airlock::policy::Policy;
use airlock::redact::Redactor;
use airlock::token::KeyRing;
use common::*;

#[test]
fn allowed_call_sets_the_credential_and_drops_the_session_token() {
    let f = Fixture::new();
    let token = f.token(r#"{"echo":"write"}"#, 600);
    let auth = format!("Bearer {token}");
    let Run { result: out, secret_read: read, audit, .. } = f.run(
        "echo",
        "POST",
        "/items/42",
        Some("a=1&b=%20"),
        &[("Authorization", &auth), ("Cookie", "c=1"), ("Content-Type", "application/json"), ("Content-Length", "10")],
        NOW,
    );
    let out = out.unwrap();
    assert!(read);
    assert_eq!(out.url(), "https://echo.example.com/api/items/42?a=1&b=%20");
    assert_eq!(
        out.headers(),
        vec![
            ("content-type".to_string(), "application/json".to_string()),
            ("accept-encoding".to_string(), airlock::inject::ACCEPT_ENCODING.to_string()),
            ("authorization".to_string(), format!("Bearer {ECHO_SECRET}")),
        ]
    );
    let flat = format!("{:?}", out.headers());
    assert!(!flat.contains(&token), "session token forwarded");
    // The response filter built from this request scrubs the credential.
    let redactor = Redactor::shared(out.redactions().to_vec());
    let echoed = format!(r#"{{"headers":{{"authorization":"Bearer {ECHO_SECRET}"}}}}"#);
    let scrubbed = String::from_utf8(redactor.redact(echoed.as_bytes())).unwrap();
    assert!(!scrubbed.contains(ECHO_SECRET), "{scrubbed}");
    // The audit record knows who and what, and holds no secret or query.
    let line = audit.to_json();
    assert!(line.contains(r#""agent":"agent-7""#) && line.contains(r#""rule":"/items/**""#), "{line}");
    for banned in [ECHO_SECRET, &token, "a=1"] {
        assert!(!line.contains(banned), "audit leaked {banned}: {line}");
    }
}

#[test]
fn private_tool_uses_its_binding_and_header() {
    let f = Fixture::new();
    // The token in the very header the credential goes into (as an SDK
    // built for this API sends it): replaced, never forwarded.
    let token = f.token(r#"{"private":"read"}"#, 60);
    let Run { result: out, .. } = f.run("private", "GET", "/status", None, &[("x-api-key", &token)], NOW);
    let out = out.unwrap();
    assert_eq!(out.target(), &airlock::policy::Target::Service { binding: "PRIVATE_ORIGIN".into() });
    assert_eq!(out.url(), "https://private.airlock.invalid/status");
    assert_eq!(
        out.headers(),
        vec![("accept-encoding".to_string(), airlock::inject::ACCEPT_ENCODING.to_string()), ("x-api-key".to_string(), "Key private-key-456".to_string()),]
    );
}

/// What, tool, method, raw path, headers, clock, expected code.
type Row<'a> = (&'a str, &'a str, &'a str, &'a str, Vec<(&'a str, &'a str)>, u64, &'a str);

#[test]
fn hostile_requests_are_refused_and_nothing_happens() {
    let f = Fixture::new();
    let read_token = f.token(r#"{"echo":"read"}"#, 600);
    let write_token = f.token(r#"{"echo":"write"}"#, 600);
    let other_ring = KeyRing::parse(OTHER_KEYS).unwrap();
    let foreign = mint(br#"{"agent":"a","user":"u","tools":{"echo":"admin"},"ttl_seconds":60}"#, &f.policy, &other_ring, NOW, [1; 16]).unwrap().token;
    let r = format!("Bearer {read_token}");
    let w = format!("Bearer {write_token}");
    let tampered = {
        let mut t = read_token.clone().into_bytes();
        let i = t.len() / 2;
        t[i] = if t[i] == b'A' { b'B' } else { b'A' };
        format!("Bearer {}", String::from_utf8(t).unwrap())
    };
    let truncated = format!("Bearer {}", &read_token[..read_token.len() - 5]);
    let escalated = {
        // Swap the claims for ones granting admin, keep the old MAC.
        let parts: Vec<&str> = read_token.split('.').collect();
        let admin: Vec<&str> = f.token(r#"{"echo":"admin"}"#, 600).leak().split('.').collect();
        format!("Bearer {}.{}.{}.{}", parts[0], parts[1], admin[2], parts[3])
    };
    let f_auth = format!("Bearer {foreign}");
    let two = format!("Bearer {read_token}, Bearer {write_token}");
    let basic = format!("Basic {read_token}");

    let table: Vec<Row> = vec![
        ("no token", "echo", "GET", "/x", vec![], NOW, "invalid_session"),
        ("empty bearer", "echo", "GET", "/x", vec![("authorization", "Bearer ")], NOW, "invalid_session"),
        ("garbage token", "echo", "GET", "/x", vec![("authorization", "Bearer garbage")], NOW, "invalid_session"),
        ("basic scheme", "echo", "GET", "/x", vec![("authorization", &basic)], NOW, "invalid_session"),
        ("two tokens joined", "echo", "GET", "/x", vec![("authorization", &two)], NOW, "invalid_session"),
        ("tampered token", "echo", "GET", "/x", vec![("authorization", &tampered)], NOW, "invalid_session"),
        ("truncated mac", "echo", "GET", "/x", vec![("authorization", &truncated)], NOW, "invalid_session"),
        ("claims swapped, old mac", "echo", "DELETE", "/items/1", vec![("authorization", &escalated)], NOW, "invalid_session"),
        ("signed by another deployment", "echo", "GET", "/x", vec![("authorization", &f_auth)], NOW, "invalid_session"),
        ("expired", "echo", "GET", "/x", vec![("authorization", &r)], NOW + 600 + 30, "invalid_session"),
        ("not yet valid", "echo", "GET", "/x", vec![("authorization", &r)], NOW - 31, "invalid_session"),
        ("token in cookie only", "echo", "GET", "/x", vec![("cookie", &r)], NOW, "invalid_session"),
        ("tool out of scope", "private", "GET", "/x", vec![("authorization", &r)], NOW, "tool_not_allowed"),
        ("unknown tool", "stripe", "GET", "/x", vec![("authorization", &r)], NOW, "tool_not_allowed"),
        ("tool name case", "Echo", "GET", "/x", vec![("authorization", &r)], NOW, "tool_not_allowed"),
        ("level too low write", "echo", "POST", "/items/1", vec![("authorization", &r)], NOW, "level_insufficient"),
        ("level too low admin", "echo", "DELETE", "/items/1", vec![("authorization", &w)], NOW, "level_insufficient"),
        ("method not allowed", "echo", "PATCH", "/items/1", vec![("authorization", &w)], NOW, "route_not_allowed"),
        ("path not allowed", "echo", "POST", "/admin", vec![("authorization", &w)], NOW, "route_not_allowed"),
        ("connect", "echo", "CONNECT", "/x", vec![("authorization", &r)], NOW, "route_not_allowed"),
        ("trace", "echo", "TRACE", "/x", vec![("authorization", &r)], NOW, "route_not_allowed"),
        ("lower-case method", "echo", "get", "/x", vec![("authorization", &r)], NOW, "route_not_allowed"),
        ("dot-dot", "echo", "GET", "/a/../b", vec![("authorization", &r)], NOW, "invalid_path"),
        ("encoded dot-dot", "echo", "GET", "/a/%2e%2e/b", vec![("authorization", &r)], NOW, "invalid_path"),
        ("mixed dot-dot", "echo", "GET", "/a/.%2E/b", vec![("authorization", &r)], NOW, "invalid_path"),
        ("double-encoded dot-dot", "echo", "GET", "/%252e%252e/v1/sessions", vec![("authorization", &r)], NOW, "invalid_path"),
        ("encoded slash", "echo", "GET", "/items%2f..%2fadmin", vec![("authorization", &r)], NOW, "invalid_path"),
        ("backslash", "echo", "GET", "/a\\..\\b", vec![("authorization", &r)], NOW, "invalid_path"),
        ("encoded backslash", "echo", "GET", "/a%5c..%5cb", vec![("authorization", &r)], NOW, "invalid_path"),
        ("encoded NUL", "echo", "GET", "/a%00.json", vec![("authorization", &r)], NOW, "invalid_path"),
        ("overlong dot", "echo", "GET", "/%c0%ae%c0%ae/x", vec![("authorization", &r)], NOW, "invalid_path"),
        ("double slash", "echo", "GET", "//evil.example/x", vec![("authorization", &r)], NOW, "invalid_path"),
        ("CRLF in path", "echo", "GET", "/a%0d%0aX-Injected:%201", vec![("authorization", &r)], NOW, "invalid_path"),
        ("body over limit", "echo", "POST", "/items/1", vec![("authorization", &w), ("content-length", "1001")], NOW, "body_too_large"),
        ("bad content-length", "echo", "POST", "/items/1", vec![("authorization", &w), ("content-length", "12, 13")], NOW, "invalid_request"),
    ];
    for (what, tool, method, rest, headers, now, code) in table {
        let Run { result, secret_read, audit, .. } = f.run(tool, method, rest, Some("q=1"), &headers, now);
        match result {
            Ok(out) => panic!("{what}: allowed, would send to {}", out.url()),
            Err(e) => {
                assert_eq!(e.code(), code, "{what}: {e:?}");
                assert!(!secret_read, "{what}: the credential secret was read");
                assert_eq!(audit.decision, Decision::Deny, "{what}");
                assert_eq!(audit.reason, code, "{what}");
                let line = audit.to_json();
                assert!(!line.contains(ECHO_SECRET) && !line.contains(&read_token) && !line.contains("q=1"), "{what}: {line}");
            }
        }
    }
}

#[test]
fn missing_credential_secret_fails_closed() {
    let mut f = Fixture::new();
    f.policy = Policy::parse(&POLICY.replace("ECHO_TOKEN", "UNSET_SECRET")).unwrap();
    let auth = format!("Bearer {}", f.token(r#"{"echo":"read"}"#, 60));
    let Run { result, secret_read: read, audit, .. } = f.run("echo", "GET", "/x", None, &[("authorization", &auth)], NOW);
    assert_eq!(result.err().map(|e| e.code()), Some("misconfigured"));
    assert!(read);
    assert_eq!(audit.decision, Decision::Error);
}

#[test]
fn a_token_in_a_query_parameter_is_read_and_never_forwarded() {
    let f = Fixture::new();
    let token = f.token(r#"{"gemini":"write"}"#, 60);
    for query in [format!("key={token}&alt=sse"), format!("alt=sse;key={token}"), format!("k%65y={token}&alt=sse")] {
        let run = f.run("gemini", "POST", "/v1beta/models/m:generateContent", Some(&query), &[], NOW);
        let out = run.result.unwrap_or_else(|e| panic!("{query}: {e:?}"));
        let url = out.url();
        assert!(url.starts_with("https://generativelanguage.googleapis.com/v1beta/models/m:generateContent?alt=sse"), "{url}");
        assert!(!url.contains(&token) && !url.contains("key="), "{url}");
        assert!(out.headers().contains(&("x-goog-api-key".to_string(), ECHO_SECRET.to_string())));
        assert!(!run.audit.to_json().contains(&token));
    }
}

#[test]
fn git_smart_http_reads_with_read_and_pushes_with_write() {
    let f = Fixture::new();
    let read = f.token(r#"{"git":"read"}"#, 60);
    let write = f.token(r#"{"git":"write"}"#, 60);
    let basic = |t: &str| format!("Basic {}", STANDARD.encode(format!("x:{t}")));
    let (read, write) = (basic(&read), basic(&write));
    let ok = [
        (&read, "GET", "/acme/app.git/info/refs", Some("service=git-upload-pack")),
        (&read, "POST", "/acme/app.git/git-upload-pack", None),
        (&write, "GET", "/acme/app/info/refs", Some("service=git-receive-pack")),
        (&write, "POST", "/acme/app.git/git-receive-pack", None),
        (&write, "GET", "/acme/app.git/info/refs", Some("service=git-upload-pack")),
    ];
    for (auth, method, path, query) in ok {
        let run = f.run("git", method, path, query, &[("authorization", auth), ("git-protocol", "version=2")], NOW);
        let out = run.result.unwrap_or_else(|e| panic!("{method} {path}: {e:?}"));
        let expected = format!("Basic {}", STANDARD.encode(format!("x-access-token:{ECHO_SECRET}")));
        assert!(out.headers().contains(&("authorization".to_string(), expected)), "{method} {path}");
        assert!(out.headers().contains(&("git-protocol".to_string(), "version=2".to_string())), "{method} {path}");
    }
    let refused = [
        (&read, "GET", "/acme/app.git/info/refs", Some("service=git-receive-pack"), "level_insufficient"),
        (&read, "POST", "/acme/app.git/git-receive-pack", None, "level_insufficient"),
        (&read, "GET", "/acme/app.git/info/refs", None, "route_not_allowed"),
        (&read, "GET", "/acme/app.git/info/refs", Some("service=git-upload-pack&service=git-receive-pack"), "route_not_allowed"),
        (&write, "GET", "/acme/app.git/info/refs", Some("service=git-upload-pack;service=git-receive-pack"), "route_not_allowed"),
    ];
    for (auth, method, path, query, code) in refused {
        let run = f.run("git", method, path, query, &[("authorization", auth)], NOW);
        let e = run.result.err().unwrap_or_else(|| panic!("{method} {path} {query:?}: allowed"));
        assert_eq!(e.code(), code, "{method} {path} {query:?}");
        assert!(!run.secret_read, "{method} {path} {query:?}: the credential was read");
    }
}
