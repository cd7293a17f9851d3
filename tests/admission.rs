//! Admission natively: the session-state phase runs between authorize and
//! inject, against the same state machines the Durable Objects run (in
//! memory here). Every refusal of the state — revoked, rate-limited,
//! replayed, duplicate, held for approval — happens before the credential
//! is read: each row counts secret reads and expects none.

mod common;

use airlock::policy::Policy;
use common::*;

/// The fixture's policy with a session rate of three requests, an
/// idempotent write rule and a rule held for approval.
fn fixture() -> Fixture {
    let mut f = Fixture::new();
    let policy = POLICY
        .replace(
            r#""limits": { "max_session_ttl_seconds": 900,"#,
            r#""limits": { "session_rate": { "burst": 3, "per_second": 0.001 }, "max_session_ttl_seconds": 900,"#,
        )
        .replace(
            r#"{ "methods": ["DELETE"], "path": "/items/*", "level": "admin" }"#,
            r#"{ "methods": ["DELETE"], "path": "/items/*", "level": "admin", "approval": true }"#,
        );
    assert_ne!(policy, POLICY, "the fixture's policy changed shape");
    f.policy = Policy::parse(&policy).unwrap();
    f
}

#[test]
fn a_revoked_session_reads_no_secret() {
    let f = fixture();
    let auth = format!("Bearer {}", f.token(r#"{"echo":"read"}"#, 600));
    let first = f.run("echo", "GET", "/x", None, &[("authorization", &auth)], NOW);
    assert!(first.result.is_ok() && first.secret_read, "control: the live session reads its credential");
    f.revoke_last();
    let calls = f.state.calls.get();
    let run = f.run("echo", "GET", "/x", None, &[("authorization", &auth)], NOW);
    assert_eq!(run.result.err().map(|e| e.code()), Some("session_revoked"));
    assert!(!run.secret_read, "a revoked session's request read the credential");
    assert_eq!(f.state.calls.get(), calls + 1, "admission asked the state once");
}

#[test]
fn every_state_refusal_comes_before_the_secret() {
    let f = fixture();
    let read = format!("Bearer {}", f.token(r#"{"echo":"read"}"#, 600));
    // The session rate: three requests, then refused.
    for i in 0..3 {
        let run = f.run("echo", "GET", "/x", None, &[("authorization", &read)], NOW);
        assert!(run.result.is_ok(), "request {i} within the rate");
    }
    let run = f.run("echo", "GET", "/x", None, &[("authorization", &read)], NOW);
    assert_eq!(run.result.err().map(|e| e.code()), Some("rate_limited"));
    assert!(!run.secret_read, "a rate-limited request read the credential");
    assert_eq!(run.audit.rate_limit, Some("session"));

    // A duplicate of an idempotent write whose first request is in flight.
    let write = format!("Bearer {}", f.token(r#"{"echo":"write"}"#, 600));
    let key = ("idempotency-key", "k-1");
    let first = f.run("echo", "POST", "/items/1", None, &[("authorization", &write), key], NOW);
    assert!(first.result.is_ok() && first.secret_read);
    let dup = f.run("echo", "POST", "/items/1", None, &[("authorization", &write), key], NOW);
    assert_eq!(dup.result.err().map(|e| e.code()), Some("idempotency_in_flight"));
    assert!(!dup.secret_read, "a duplicate read the credential");
    let other = f.run("echo", "POST", "/items/2", None, &[("authorization", &write), key], NOW);
    assert_eq!(other.result.err().map(|e| e.code()), Some("idempotency_key_reused"));
    assert!(!other.secret_read);

    // A rule held for a human: held, nothing read; a forged approval id refused.
    let admin = format!("Bearer {}", f.token(r#"{"echo":"admin"}"#, 600));
    let held = f.run("echo", "DELETE", "/items/1", None, &[("authorization", &admin)], NOW);
    assert_eq!(held.result.err().map(|e| e.code()), Some("approval_required"));
    assert!(!held.secret_read, "a held request read the credential");
    let forged = f.run("echo", "DELETE", "/items/1", None, &[("authorization", &admin), ("x-airlock-approval", "ap_ffffffffffffffffffffffffffffffff")], NOW);
    assert_eq!(forged.result.err().map(|e| e.code()), Some("approval_invalid"));
    assert!(!forged.secret_read);
}

#[test]
fn an_approved_request_is_admitted_once() {
    let f = fixture();
    let admin = format!("Bearer {}", f.token(r#"{"echo":"admin"}"#, 600));
    let held = f.run("echo", "DELETE", "/items/1", None, &[("authorization", &admin)], NOW);
    let Some(airlock::error::Error::ApprovalRequired { id }) = held.result.err() else { panic!("not held") };
    let decided = f.state.run(airlock::admit::APPROVALS_OBJECT, airlock::state::Command::Decide { id: id.clone(), approve: true, approver: "alice".into() });
    assert!(matches!(decided, airlock::state::Reply::Decided { .. }), "{decided:?}");
    let approval = ("x-airlock-approval", id.as_str());
    let run = f.run("echo", "DELETE", "/items/1", None, &[("authorization", &admin), approval], NOW);
    assert!(run.result.is_ok(), "{:?}", run.result.err());
    assert!(run.secret_read);
    assert_eq!(run.audit.approved_by.as_deref(), Some("alice"));
    let again = f.run("echo", "DELETE", "/items/1", None, &[("authorization", &admin), approval], NOW);
    assert_eq!(again.result.err().map(|e| e.code()), Some("approval_invalid"), "an approval passes once");
    assert!(!again.secret_read);
}

#[test]
fn a_failing_state_refuses_before_the_secret() {
    let f = fixture();
    let auth = format!("Bearer {}", f.token(r#"{"echo":"read"}"#, 600));
    // A session whose record is gone (never created, or lost) is refused.
    let orphan = {
        let body = r#"{"agent":"a","user":"u","tools":{"echo":"read"},"ttl_seconds":60}"#;
        airlock::mint::mint(body.as_bytes(), &f.policy, &f.keys, NOW, [200; 16]).unwrap().token
    };
    let run = f.run("echo", "GET", "/x", None, &[("authorization", &format!("Bearer {orphan}"))], NOW);
    assert_eq!(run.result.err().map(|e| e.code()), Some("session_revoked"));
    assert!(!run.secret_read);
    let ok = f.run("echo", "GET", "/x", None, &[("authorization", &auth)], NOW);
    assert!(ok.result.is_ok());
}
