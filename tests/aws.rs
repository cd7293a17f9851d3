//! AWS tools through the deciding pipeline: a request signed as an AWS SDK
//! signs it, with the keys minted for the session, is verified, admitted
//! and signed again with the real key; every hostile variant is refused
//! before admission, with nothing read and nothing forwarded.

#![allow(clippy::too_many_arguments, clippy::type_complexity)]

mod common;

use std::cell::Cell;
use std::rc::Rc;

use airlock::admit::{self, Gated, Received};
use airlock::audit::AuditRecord;
use airlock::authorize;
use airlock::error::Error;
use airlock::inject::aws;
use airlock::inject::{Outbound, PreparedCredential};
use airlock::mint::mint;
use airlock::policy::Policy;
use airlock::request::ToolRequest;
use airlock::secret::Secret;
use airlock::sigv4;
use airlock::token::KeyRing;
use common::{block_on, create_session, MemState, KEYS, NOW};

const POLICY: &str = r#"{
  "version": 1, "audience": "airlock-test",
  "tools": {
    "s3": {
      "origin": "https://s3.us-east-1.amazonaws.com",
      "credential": { "kind": "aws_sigv4", "access_key_id_secret": "AWS_KEY_ID", "secret_access_key_secret": "AWS_SECRET",
                      "session_token_secret": "AWS_TOKEN", "region": "us-east-1", "service": "s3" },
      "rules": [ { "methods": ["GET", "HEAD"], "path": "/**", "level": "read" }, { "methods": ["PUT"], "path": "/*/**", "level": "write" } ]
    },
    "dynamodb": {
      "origin": "https://dynamodb.eu-west-1.amazonaws.com",
      "credential": { "kind": "aws_sigv4", "access_key_id_secret": "AWS_KEY_ID", "secret_access_key_secret": "AWS_SECRET",
                      "region": "eu-west-1", "service": "dynamodb" },
      "rules": [ { "methods": ["POST"], "path": "/", "level": "write" } ]
    }
  }
}"#;
const REAL_ID: &str = "AKIAREALKEYID0000001";
const REAL_SECRET: &str = "real/secret+access+key/0123456789abcdefgh";
const REAL_TOKEN: &str = "FwoGZXIvYXdzEREALSESSIONTOKEN";
const HOST: &str = "airlock.example.workers.dev";

fn real_secret(reads: &Cell<usize>) -> impl Fn(&str) -> Option<Rc<PreparedCredential>> + '_ {
    move |name| {
        reads.set(reads.get() + 1);
        let value = match name {
            "AWS_KEY_ID" => REAL_ID,
            "AWS_SECRET" => REAL_SECRET,
            "AWS_TOKEN" => REAL_TOKEN,
            _ => return None,
        };
        Some(Rc::new(PreparedCredential::new(Secret::new(value.as_bytes().to_vec()))))
    }
}

struct Session {
    token: String,
    key_id: String,
    secret: String,
}

fn session(policy: &Policy, keys: &KeyRing, state: &MemState, n: u8) -> Session {
    let body = br#"{"agent":"a","user":"u","tools":{"s3":"write","dynamodb":"write"},"ttl_seconds":600}"#;
    let minted = mint(body, policy, keys, NOW, [n; 16]).unwrap();
    create_session(state, minted.record.clone());
    let json = serde_json::to_value(&minted).unwrap();
    let s3 = &json["aws"]["s3"];
    assert_eq!(s3["session_token"], minted.token.as_str());
    assert_eq!(s3["region"], "us-east-1");
    assert_ne!(json["aws"]["dynamodb"]["access_key_id"], s3["access_key_id"], "keys are per tool");
    Session { token: minted.token, key_id: s3["access_key_id"].as_str().unwrap().into(), secret: s3["secret_access_key"].as_str().unwrap().into() }
}

/// Signs a request as an AWS SDK does: every header given is signed.
fn sign(
    method: &str,
    path: &str,
    query: &str,
    headers: &mut Vec<(String, String)>,
    payload: &str,
    key_id: &str,
    secret: &str,
    scope: (&str, &str, &str),
    s3: bool,
) {
    let amz = headers.iter().find(|(n, _)| n == "x-amz-date").unwrap().1.clone();
    let mut signed: Vec<String> = headers.iter().map(|(n, _)| n.to_ascii_lowercase()).collect();
    signed.sort();
    signed.dedup();
    let signed: Vec<&str> = signed.iter().map(String::as_str).collect();
    let creq = sigv4::canonical_request(method, &sigv4::canonical_uri(path, s3), &sigv4::canonical_query(query), headers, &signed, payload).unwrap();
    let sc = sigv4::scope(scope.0, scope.1, scope.2);
    let key = sigv4::signing_key(secret.as_bytes(), scope.0, scope.1, scope.2).unwrap();
    let sig = sigv4::signature(&key, &sigv4::string_to_sign(&amz, &sc, &creq)).unwrap();
    headers.push(("authorization".into(), sigv4::authorization(key_id, &sc, &signed, &sig)));
}

struct Outcome {
    result: Result<Outbound, Error>,
    secret_reads: usize,
    state_calls: usize,
}

fn drive(
    policy: &Policy,
    keys: &KeyRing,
    state: &MemState,
    tool: &str,
    method: &str,
    rest: &str,
    query: Option<&str>,
    headers: &[(String, String)],
    body: &[u8],
) -> Outcome {
    let reads = Cell::new(0);
    let calls_before = state.calls.get();
    let req = ToolRequest { tool, rest, method, query, headers };
    let mut audit = AuditRecord::new("rid".into(), method, 0);
    let result = (|| {
        let authorized = authorize::tool(policy, keys, &req, NOW, &mut audit)?;
        let presented = aws::presented(&authorized, &req, keys, NOW)?.ok_or_else(|| Error::Internal("not an AWS tool".into()))?;
        let verified = presented.verify(Some(body))?;
        let received = Received { method, raw_path: rest, query: query.unwrap_or(""), headers };
        match block_on(admit::run(state, &authorized.gate, &received, body, keys, &policy.limits, NOW, &mut audit))? {
            Gated::Admitted(admitted) => aws::tool(authorized, &admitted, &req, verified, real_secret(&reads), NOW),
            Gated::Replay(_) => Err(Error::Internal("replay".into())),
        }
    })();
    Outcome { result, secret_reads: reads.get(), state_calls: state.calls.get() - calls_before }
}

fn base_headers(token: &str, payload: Option<&str>) -> Vec<(String, String)> {
    let mut h =
        vec![("host".to_string(), HOST.to_string()), ("x-amz-date".into(), sigv4::format_amz_date(NOW - 5)), ("x-amz-security-token".into(), token.into())];
    if let Some(p) = payload {
        h.push(("x-amz-content-sha256".into(), p.into()));
    }
    h
}

/// Verifies the forwarded request as AWS does, with the real key.
fn aws_verifies(out: &Outbound, body: &[u8], s3: bool, region: &str, service: &str) -> bool {
    let url = url::Url::parse(out.url()).unwrap();
    let host = url.host_str().unwrap().to_string();
    let auth = out.headers().iter().find(|(n, _)| n == "authorization").unwrap().1.clone();
    let parsed = sigv4::parse_authorization(&auth).unwrap();
    assert_eq!(parsed.access_key_id, REAL_ID);
    let mut headers = out.headers().to_vec();
    headers.push(("host".into(), host));
    let payload = out.headers().iter().find(|(n, _)| n == "x-amz-content-sha256").map_or_else(|| sigv4::sha256_hex(body), |(_, v)| v.clone());
    let amz = out.headers().iter().find(|(n, _)| n == "x-amz-date").unwrap().1.clone();
    let creq = sigv4::canonical_request(
        out.method().as_str(),
        &sigv4::canonical_uri(url.path(), s3),
        &sigv4::canonical_query(url.query().unwrap_or("")),
        &headers,
        &parsed.signed_headers,
        &payload,
    )
    .unwrap();
    let key = sigv4::signing_key(REAL_SECRET.as_bytes(), &amz[..8], region, service).unwrap();
    let sig = sigv4::signature(&key, &sigv4::string_to_sign(&amz, &sigv4::scope(&amz[..8], region, service), &creq)).unwrap();
    sigv4::signature_matches(&sig, &parsed.signature)
}

#[test]
fn an_sdk_signed_s3_request_is_verified_and_signed_again_with_the_real_key() {
    let (policy, keys, state) = (Policy::parse(POLICY).unwrap(), KeyRing::parse(KEYS).unwrap(), MemState::default());
    let s = session(&policy, &keys, &state, 1);
    assert!(s.key_id.starts_with("AIRL") && s.key_id.len() == 20, "{}", s.key_id);
    assert_eq!(s.secret.len(), 40);
    let scope = (&sigv4::format_amz_date(NOW)[..8], "us-east-1", "s3");
    let scope = (scope.0.to_string(), scope.1, scope.2);

    // ListObjectsV2 (hashed empty payload) and PutObject (UNSIGNED-PAYLOAD, and hashed).
    let body = b"hello object";
    let (empty, unsigned, hashed) = (sigv4::sha256_hex(b""), sigv4::UNSIGNED_PAYLOAD.to_string(), sigv4::sha256_hex(body));
    let cases: Vec<(&str, &str, &str, Option<&str>, Vec<u8>)> = vec![
        ("GET", "/bucket", "list-type=2&prefix=a%2Fb", Some(&empty), Vec::new()),
        ("PUT", "/bucket/dir/my%20key.txt", "", Some(&unsigned), body.to_vec()),
        ("PUT", "/bucket/dir/k~e%21y", "", Some(&hashed), body.to_vec()),
    ];
    for (method, rest, query, payload, body) in cases {
        let mut headers = base_headers(&s.token, payload);
        headers.push(("x-amz-meta-colour".into(), "blue".into()));
        sign(method, &format!("/t/s3{rest}"), query, &mut headers, payload.unwrap(), &s.key_id, &s.secret, (&scope.0, scope.1, scope.2), true);
        headers.push(("user-agent".into(), "Boto3/1.44".into()));
        let run = drive(&policy, &keys, &state, "s3", method, rest, Some(query).filter(|q| !q.is_empty()), &headers, &body);
        let out = run.result.unwrap_or_else(|e| panic!("{method} {rest}: {e:?} {}", e.detail()));
        assert!(out.url().starts_with("https://s3.us-east-1.amazonaws.com/bucket"), "{}", out.url());
        assert!(aws_verifies(&out, &body, true, "us-east-1", "s3"), "{method} {rest}");
        let h = |name: &str| out.headers().iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str());
        assert_eq!(h("x-amz-security-token"), Some(REAL_TOKEN), "the real session token, never the sandbox's");
        assert_eq!(h("x-amz-meta-colour"), Some("blue"));
        assert_eq!(h("x-amz-content-sha256"), payload);
        assert_eq!(h("user-agent"), Some("Boto3/1.44"));
        assert!(!out.headers().iter().any(|(_, v)| v.contains(&s.token) || v.contains(&s.key_id)), "nothing of the sandbox's signature is forwarded");
        assert_eq!(out.headers().iter().filter(|(n, _)| n == "authorization").count(), 1);
        assert!(!out.headers().iter().any(|(n, _)| n == "host"), "the runtime sets Host from the URL");
        assert_eq!(run.secret_reads, 3);
        // Every part of the real key is scrubbed from answers.
        for secret in [REAL_ID, REAL_SECRET, REAL_TOKEN] {
            assert!(out.redactions().iter().any(|r| r.expose() == secret.as_bytes()), "{secret}");
        }
    }
}

#[test]
fn a_json_api_signs_its_body_and_its_target() {
    let (policy, keys, state) = (Policy::parse(POLICY).unwrap(), KeyRing::parse(KEYS).unwrap(), MemState::default());
    let minted = mint(br#"{"agent":"a","user":"u","tools":{"dynamodb":"write"},"ttl_seconds":600}"#, &policy, &keys, NOW, [9; 16]).unwrap();
    create_session(&state, minted.record.clone());
    let k = &minted.aws.as_ref().unwrap()["dynamodb"];
    let (key_id, secret) = (k["access_key_id"].as_str().unwrap(), k["secret_access_key"].as_str().unwrap());
    let body = br#"{"TableName":"t"}"#;
    let date = sigv4::format_amz_date(NOW);
    let mut headers = base_headers(&minted.token, None);
    headers.push(("x-amz-target".into(), "DynamoDB_20120810.DescribeTable".into()));
    headers.push(("content-type".into(), "application/x-amz-json-1.0".into()));
    sign(
        "POST",
        // boto3 signs the service root as the endpoint path itself, without a slash.
        "/t/dynamodb",
        "",
        &mut headers,
        &sigv4::sha256_hex(body),
        key_id,
        secret,
        (&date[..8], "eu-west-1", "dynamodb"),
        false,
    );
    let run = drive(&policy, &keys, &state, "dynamodb", "POST", "/", None, &headers, body);
    let out = run.result.unwrap_or_else(|e| panic!("{e:?} {}", e.detail()));
    assert_eq!(out.url(), "https://dynamodb.eu-west-1.amazonaws.com/");
    assert!(aws_verifies(&out, body, false, "eu-west-1", "dynamodb"));
    let auth = &out.headers().iter().find(|(n, _)| n == "authorization").unwrap().1;
    assert!(auth.contains("content-type;host;x-amz-date;x-amz-target"), "{auth}");
    assert!(!out.headers().iter().any(|(n, _)| n == "x-amz-security-token"), "no session token configured");
    // The body changed after signing no longer verifies.
    let run = drive(&policy, &keys, &state, "dynamodb", "POST", "/", None, &headers, br#"{"TableName":"u"}"#);
    assert_eq!(run.result.err().map(|e| e.code()), Some("signature_invalid"));
}

#[test]
fn hostile_requests_are_refused_before_anything_is_read_or_admitted() {
    let (policy, keys, state) = (Policy::parse(POLICY).unwrap(), KeyRing::parse(KEYS).unwrap(), MemState::default());
    let s = session(&policy, &keys, &state, 1);
    let other = session(&policy, &keys, &state, 2);
    let date = sigv4::format_amz_date(NOW);
    let empty = sigv4::sha256_hex(b"");
    let signed = |token: &str, key_id: &str, secret: &str, mutate: &dyn Fn(&mut Vec<(String, String)>)| {
        let mut h = base_headers(token, Some(&empty));
        mutate(&mut h);
        sign("GET", "/t/s3/bucket/key", "", &mut h, &empty, key_id, secret, (&date[..8], "us-east-1", "s3"), true);
        h
    };
    let none = |_: &mut Vec<(String, String)>| {};
    let mut changed = signed(&s.token, &s.key_id, &s.secret, &|h| h.push(("x-amz-meta-a".into(), "1".into())));
    changed.iter_mut().find(|(n, _)| n == "x-amz-meta-a").unwrap().1 = "2".into();
    let mut wrong_sig = signed(&s.token, &s.key_id, &s.secret, &none);
    let auth = &mut wrong_sig.iter_mut().find(|(n, _)| n == "authorization").unwrap().1;
    let last = auth.pop().unwrap();
    auth.push(if last == '0' { '1' } else { '0' });
    let mut presigned_q = "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=x&X-Amz-Signature=00".to_string();
    presigned_q.push_str("&X-Amz-Security-Token=");
    presigned_q.push_str(&s.token);
    let mut old = base_headers(&s.token, Some(&empty));
    old[1].1 = sigv4::format_amz_date(NOW - 16 * 60);
    let old_date = sigv4::format_amz_date(NOW - 16 * 60);
    sign("GET", "/t/s3/bucket/key", "", &mut old, &empty, &s.key_id, &s.secret, (&old_date[..8], "us-east-1", "s3"), true);
    let mut other_region = base_headers(&s.token, Some(&empty));
    sign("GET", "/t/s3/bucket/key", "", &mut other_region, &empty, &s.key_id, &s.secret, (&date[..8], "eu-west-1", "s3"), true);
    let mut bad_hash = base_headers(&s.token, Some(&sigv4::sha256_hex(b"other body")));
    sign("PUT", "/t/s3/bucket/key", "", &mut bad_hash, &sigv4::sha256_hex(b"other body"), &s.key_id, &s.secret, (&date[..8], "us-east-1", "s3"), true);
    let mut chunked = base_headers(&s.token, Some("STREAMING-AWS4-HMAC-SHA256-PAYLOAD"));
    chunked.push(("content-encoding".into(), "aws-chunked".into()));
    sign("PUT", "/t/s3/bucket/key", "", &mut chunked, "STREAMING-AWS4-HMAC-SHA256-PAYLOAD", &s.key_id, &s.secret, (&date[..8], "us-east-1", "s3"), true);
    let mut bearer = base_headers(&s.token, Some(&empty));
    bearer.push(("authorization".into(), format!("Bearer {}", s.token)));

    type Row<'a> = (&'a str, &'a str, Option<String>, Vec<(String, String)>, &'a [u8], &'a str);
    let table: Vec<Row> = vec![
        ("wrong signature", "GET", None, wrong_sig, b"", "signature_invalid"),
        ("the real key's id", "GET", None, signed(&s.token, REAL_ID, &s.secret, &none), b"", "signature_invalid"),
        ("another session's key with this token", "GET", None, signed(&s.token, &other.key_id, &other.secret, &none), b"", "signature_invalid"),
        ("this key with another session's token", "GET", None, signed(&other.token, &s.key_id, &s.secret, &none), b"", "signature_invalid"),
        ("a header changed after signing", "GET", None, changed, b"", "signature_invalid"),
        ("a time 16 minutes ago", "GET", None, old, b"", "signature_invalid"),
        ("another region", "GET", None, other_region, b"", "signature_invalid"),
        ("a presigned URL", "GET", Some(presigned_q), vec![("host".into(), HOST.into())], b"", "presigned_refused"),
        ("aws-chunked", "PUT", None, chunked, b"", "aws_chunked_refused"),
        ("a body that is not the signed hash", "PUT", None, bad_hash, b"this body", "payload_hash_mismatch"),
        ("a bearer token instead of a signature", "GET", None, bearer, b"", "signature_invalid"),
        ("no token", "GET", None, signed("", &s.key_id, &s.secret, &|h| h.retain(|(n, _)| n != "x-amz-security-token")), b"", "invalid_session"),
    ];
    for (what, method, query, headers, body, code) in table {
        let rest = "/bucket/key";
        let run = drive(&policy, &keys, &state, "s3", method, rest, query.as_deref(), &headers, body);
        let err = run.result.err().unwrap_or_else(|| panic!("{what}: allowed"));
        assert_eq!(err.code(), code, "{what}: {}", err.detail());
        assert_eq!((run.secret_reads, run.state_calls), (0, 0), "{what}: nothing read, nothing admitted");
        assert!(!err.wire_body().contains(&s.secret) && !err.wire_body().contains(REAL_ID), "{what}");
    }
}

#[test]
fn aws_policies_are_checked_field_by_field() {
    let tool = |credential: &str| {
        format!(
            r#"{{"version":1,"audience":"a","tools":{{"s3":{{"origin":"https://s3.amazonaws.com","credential":{credential},"rules":[{{"methods":["GET"],"path":"/**","level":"read"}}]}}}}}}"#
        )
    };
    let ok = r#"{"kind":"aws_sigv4","access_key_id_secret":"A","secret_access_key_secret":"B","region":"us-east-1","service":"s3"}"#;
    let p = Policy::parse(&tool(ok)).unwrap();
    let t = p.tool("s3").unwrap();
    assert_eq!(t.aws().map(|a| (a.region.as_str(), a.service.as_str(), a.is_s3())), Some(("us-east-1", "s3", true)));
    assert!(t.session_token.headers.contains(&"x-amz-security-token".to_string()));
    let bad = [
        (ok.replace(r#""kind":"aws_sigv4""#, r#""kind":"aws","secret":"S""#), "tools.s3.credential.kind"),
        (ok.replace(r#","region":"us-east-1""#, ""), "tools.s3.credential.region"),
        (ok.replace("us-east-1", "US-EAST-1"), "tools.s3.credential.region"),
        (ok.replace(r#""A""#, r#""not a name""#), "tools.s3.credential.access_key_id_secret"),
        (ok.replace(r#","secret_access_key_secret":"B""#, ""), "tools.s3.credential.secret_access_key_secret"),
        (ok.replace(r#""service":"s3""#, r#""service":"s3","inject":"bearer""#), "tools.s3.credential.inject"),
    ];
    for (credential, field) in bad {
        let e = Policy::parse(&tool(&credential)).unwrap_err();
        assert_eq!(e.field, field, "{credential}: {e}");
    }
}
