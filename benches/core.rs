//! Native cost of Airlock's deciding core, printed as figures:
//! - verify + decide + inject per request (µs), the per-call work besides I/O;
//! - streaming redaction throughput (MB/s) with a real credential's patterns.
//!
//! Run: `cargo bench --bench core`. Budgets (from the performance goals):
//! ≤ 10 µs per request and ≥ 500 MB/s; the output says PASS or FAIL.

use std::hint::black_box;
use std::time::Instant;

use airlock::admit::{self, Gated, Received, StateCalls};
use airlock::audit::AuditRecord;
use airlock::authorize;
use airlock::error::Error;
use airlock::inject;
use airlock::inject::{encodings_of, PreparedCredential};
use airlock::mint::mint;
use airlock::policy::Policy;
use airlock::redact::{base64_spellings, Redactor};
use airlock::request::ToolRequest;
use airlock::secret::Secret;
use airlock::state::{Command, Reply};
use airlock::token::KeyRing;

const POLICY: &str = r#"{
  "version": 1, "audience": "bench",
  "tools": {
    "github": {
      "origin": "https://api.github.com",
      "credential": { "secret": "GITHUB_TOKEN", "inject": "bearer" },
      "forward_headers": ["x-github-api-version"],
      "rules": [
        { "methods": ["GET", "HEAD"], "path": "/repos/*/*/**", "level": "read" },
        { "methods": ["POST"], "path": "/repos/*/*/issues", "level": "write" },
        { "methods": ["PATCH"], "path": "/repos/*/*/issues/*", "level": "write" },
        { "methods": ["DELETE"], "path": "/repos/*/*", "level": "admin" },
        { "methods": ["GET"], "path": "/user", "level": "read" },
        { "methods": ["GET"], "path": "/search/**", "level": "read" }
      ]
    },
    "crm": { "origin": "https://crm.example.com", "credential": { "secret": "CRM", "inject": "header", "header": "x-api-key" },
      "rules": [ { "methods": ["GET"], "path": "/**", "level": "read" } ] },
    "s3": { "origin": "https://s3.us-east-1.amazonaws.com",
      "credential": { "kind": "aws_sigv4", "access_key_id_secret": "AWS_ID", "secret_access_key_secret": "AWS_SECRET",
                      "session_token_secret": "AWS_TOKEN", "region": "us-east-1", "service": "s3" },
      "rules": [ { "methods": ["PUT"], "path": "/*/**", "level": "write" } ] }
  }
}"#;
const SECRET: &[u8] = b"ghp_R2d2C3poBb8Luke5kyWalker0Leia1Han";

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

/// A state that admits everything at once: the bench times Airlock's own
/// work per request (the state call is I/O, measured end to end in `bench/`).
struct Admits;

impl StateCalls for Admits {
    async fn call(&self, _object: &str, _command: &Command) -> Result<Reply, Error> {
        Ok(Reply::Admitted { refusal: None, trail: None })
    }
    async fn wait(&self) -> bool {
        false
    }
    fn approval_id(&self) -> Result<String, Error> {
        Ok(String::new())
    }
}

/// Polls a future that never waits to its end.
fn ready<F: std::future::Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

fn per_request() -> f64 {
    let policy = Policy::parse(POLICY).unwrap();
    let keys = KeyRing::parse("k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap();
    let now = 1_800_000_000;
    let token =
        mint(br#"{"agent":"coder","user":"alice@example.com","tools":{"github":"write","crm":"read"},"ttl_seconds":900}"#, &policy, &keys, now, [9; 16])
            .unwrap()
            .token;
    let headers: Vec<(String, String)> = [
        ("authorization", format!("Bearer {token}")),
        ("accept", "application/vnd.github+json".into()),
        ("user-agent", "agent/1.0".into()),
        ("x-github-api-version", "2022-11-28".into()),
        ("cookie", "a=b".into()),
        ("x-forwarded-for", "10.0.0.1".into()),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v))
    .collect();
    let req = ToolRequest { tool: "github", rest: "/repos/acme/app/issues/42", method: "PATCH", query: Some("per_page=50&page=2"), headers: &headers };
    let credential = std::rc::Rc::new(PreparedCredential::new(Secret::new(SECRET.to_vec())));
    let iters: u32 = std::env::var("AIRLOCK_BENCH_ITERS").ok().and_then(|v| v.parse().ok()).unwrap_or(20_000);
    let mut samples = Vec::new();
    for _ in 0..9 {
        let start = Instant::now();
        for _ in 0..iters {
            let mut audit = AuditRecord::new(String::new(), "PATCH", 0);
            let authorized = authorize::tool(&policy, &keys, black_box(&req), now, &mut audit).unwrap();
            let received = Received { method: req.method, raw_path: req.rest, query: req.query.unwrap_or(""), headers: req.headers };
            let Ok(Gated::Admitted(admitted)) = ready(admit::run(&Admits, &authorized.gate, &received, b"", &keys, &policy.limits, now, &mut audit)) else {
                panic!("not admitted")
            };
            let mut out = inject::tool(authorized, &admitted, black_box(&req), |_| Some(credential.clone())).unwrap();
            // The response filter each request takes (a copy of the one
            // built for the credential's first request).
            black_box(out.take_filter());
        }
        samples.push(start.elapsed().as_secs_f64() * 1e6 / iters as f64);
    }
    median(samples)
}

/// An S3 PUT of `body` as an AWS SDK signs it with the session's keys
/// (`hashed`: the body's SHA-256 as its payload hash, else
/// `UNSIGNED-PAYLOAD`), then verify + decide + admit + sign again with the
/// real key, per request (µs).
fn aws_request(body: &[u8], hashed: bool) -> f64 {
    use airlock::sigv4;
    let policy = Policy::parse(POLICY).unwrap();
    let keys = KeyRing::parse("k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap();
    let now = 1_800_000_000;
    let minted = mint(br#"{"agent":"coder","user":"alice@example.com","tools":{"s3":"write"},"ttl_seconds":900}"#, &policy, &keys, now, [9; 16]).unwrap();
    let k = &minted.aws.as_ref().unwrap()["s3"];
    let payload = if hashed { sigv4::sha256_hex(body) } else { sigv4::UNSIGNED_PAYLOAD.to_string() };
    let amz_date = sigv4::format_amz_date(now);
    let mut headers: Vec<(String, String)> = [
        ("host", "airlock.example.workers.dev"),
        ("content-type", "text/plain"),
        ("x-amz-content-sha256", &payload),
        ("x-amz-date", &amz_date),
        ("x-amz-security-token", &minted.token),
    ]
    .into_iter()
    .map(|(n, v)| (n.to_string(), v.to_string()))
    .collect();
    let signed = ["content-type", "host", "x-amz-content-sha256", "x-amz-date", "x-amz-security-token"];
    let creq = sigv4::canonical_request("PUT", "/t/s3/bucket/reports/q3.csv", "", &headers, &signed, &payload).unwrap();
    let scope = sigv4::scope(&amz_date[..8], "us-east-1", "s3");
    let key = sigv4::signing_key(k["secret_access_key"].as_str().unwrap().as_bytes(), &amz_date[..8], "us-east-1", "s3").unwrap();
    let sig = sigv4::signature(&key, &sigv4::string_to_sign(&amz_date, &scope, &creq)).unwrap();
    headers.push(("authorization".into(), sigv4::authorization(k["access_key_id"].as_str().unwrap(), &scope, &signed, &sig)));
    let req = ToolRequest { tool: "s3", rest: "/bucket/reports/q3.csv", method: "PUT", query: None, headers: &headers };
    let real = |v: &[u8]| std::rc::Rc::new(PreparedCredential::new(Secret::new(v.to_vec())));
    let (id, secret, token) = (real(b"AKIAIOSFODNN7EXAMPLE"), real(b"wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"), real(b"FwoGZXIvYXdzEXAMPLETOKEN"));
    time_us(5_000, || {
        let mut audit = AuditRecord::new(String::new(), "PUT", 0);
        let authorized = authorize::tool(&policy, &keys, black_box(&req), now, &mut audit).unwrap();
        let verified = inject::aws::presented(&authorized, &req, &keys, now).unwrap().unwrap().verify(Some(black_box(body))).unwrap();
        let received = Received { method: req.method, raw_path: req.rest, query: "", headers: req.headers };
        let Ok(Gated::Admitted(admitted)) = ready(admit::run(&Admits, &authorized.gate, &received, body, &keys, &policy.limits, now, &mut audit)) else {
            panic!("not admitted")
        };
        let secrets = |name: &str| {
            Some(match name {
                "AWS_ID" => id.clone(),
                "AWS_SECRET" => secret.clone(),
                _ => token.clone(),
            })
        };
        let mut out = inject::aws::tool(authorized, &admitted, &req, verified, secrets, now).unwrap();
        black_box(out.take_filter());
    })
}

/// Times `f` per call (median of 9 runs of `iters`), in µs.
fn time_us(iters: u32, mut f: impl FnMut()) -> f64 {
    let mut samples = Vec::new();
    for _ in 0..9 {
        let start = Instant::now();
        for _ in 0..iters {
            f();
        }
        samples.push(start.elapsed().as_secs_f64() * 1e6 / iters as f64);
    }
    median(samples)
}

/// Where a request's time goes, phase by phase.
fn breakdown() {
    let policy = Policy::parse(POLICY).unwrap();
    let keys = KeyRing::parse("k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap();
    let now = 1_800_000_000;
    let token =
        mint(br#"{"agent":"coder","user":"alice@example.com","tools":{"github":"write","crm":"read"},"ttl_seconds":900}"#, &policy, &keys, now, [9; 16])
            .unwrap()
            .token;
    let verify = time_us(20_000, || {
        black_box(airlock::token::verify(black_box(&token), &keys, "bench", now).unwrap());
    });
    let normalize = time_us(20_000, || {
        black_box(airlock::path::normalize(black_box("/repos/acme/app/issues/42")).unwrap());
    });
    let encodings = time_us(20_000, || {
        black_box(encodings_of(black_box(SECRET)));
    });
    let audit = time_us(20_000, || {
        black_box(AuditRecord::new(String::new(), "PATCH", black_box(1_800_000_000_000)));
    });
    println!("  breakdown: verify {verify:.2} µs, normalize {normalize:.2} µs, credential encodings {encodings:.2} µs, audit record {audit:.2} µs");
}

/// What the MCP 2026-07-28 request metadata check and a gated tool call add
/// to Airlock's own work: the same `tools/call` inspected as a handshake-era
/// message and as a 2026-07-28 one with its `Mcp-Method`/`Mcp-Name`/
/// `Mcp-Param-*` headers; the check alone; Airlock's `requestState` minted
/// and verified; and the admission plan of a deduplicated call (the call's
/// digest and key) next to a plain one. The state object's round trip is
/// I/O, timed in workerd by `miniflare-tests/mcp-gates.test.mjs`.
fn mcp_figures() {
    use airlock::level::Level;
    use airlock::mcp::{self, gate, McpRules};
    let mut rules = McpRules::default();
    rules.tools.insert("book_slot".into(), Level::Write);
    let args = r#""arguments":{"slot":"9am","room":"Ada Lovelace","attendees":["a@example.com","b@example.com"],"region":"eu-west1"}"#;
    let old = format!(r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"book_slot",{args}}}}}"#);
    let new = format!(
        r#"{{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{{"name":"book_slot",{args},"_meta":{{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{{}}}}}}}}"#
    );
    let h = |n: &str, v: &str| (n.to_string(), v.to_string());
    let headers = vec![
        h("content-type", "application/json"),
        h("mcp-protocol-version", "2026-07-28"),
        h("mcp-method", "tools/call"),
        h("mcp-name", "book_slot"),
        h("mcp-param-region", "eu-west1"),
    ];
    let handshake = time_us(20_000, || {
        black_box(mcp::inspect(black_box(old.as_bytes()), &rules, Level::Write).unwrap());
    });
    let stateless = time_us(20_000, || {
        black_box(mcp::inspect_request(black_box(new.as_bytes()), &headers, &rules, Level::Write).unwrap());
    });
    let value: serde_json::Value = serde_json::from_str(&new).unwrap();
    let params = value["params"].as_object();
    let check = time_us(50_000, || {
        black_box(mcp::era::check_headers(black_box(&headers), "tools/call", params, Some("name")).unwrap());
    });
    println!(
        "  MCP tools/call: inspected {handshake:.2} µs (2025-11-25), {stateless:.2} µs (2026-07-28 with its headers); the header check alone {check:.2} µs"
    );
    let keys = KeyRing::parse("k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap();
    let p = br#"{"arguments":{"slot":"9am"},"name":"book_slot"}"#;
    let at = gate::CallRef { session_id: "5f0c9a7e1b2d4c6e8f0a1b2c3d4e5f60", server: "docs", tool: "book_slot", params: p };
    let state = gate::mint_state(&keys, "ap_0123456789abcdef0123456789abcdef", 2_000, &at);
    let mint = time_us(20_000, || {
        black_box(gate::mint_state(&keys, "ap_0123456789abcdef0123456789abcdef", 2_000, black_box(&at)));
    });
    let verify = time_us(20_000, || {
        black_box(gate::verify_state(&keys, black_box(&state), &at, 1_000).unwrap());
    });
    let policy = Policy::parse(POLICY).unwrap();
    let received = Received { method: "POST", raw_path: "/mcp/docs", query: "", headers: &[] };
    let plain = authorize::Gate { session_id: at.session_id.into(), tool: Some("docs".into()), path: "/".into(), ..Default::default() };
    let dedupe = authorize::Gate { call: Some(("tools/call".into(), p.to_vec())), dedupe_s: 60, path: "book_slot".into(), ..plain.clone() };
    let plan =
        |g: &authorize::Gate| time_us(20_000, || drop(black_box(admit::plan(g, &received, black_box(new.as_bytes()), &keys, &policy.limits, 1_000).unwrap())));
    let (plain_us, dedupe_us) = (plan(&plain), plan(&dedupe));
    println!(
        "  MCP gates: requestState minted {mint:.2} µs, verified {verify:.2} µs; admission plan {plain_us:.2} µs, {dedupe_us:.2} µs for a deduplicated call (digest and key)"
    );
}

/// What a bearer credential is scrubbed with: the secret, `Bearer <secret>`,
/// and the base64 spellings of both (as `inject` builds them).
fn credential_patterns() -> Vec<Vec<u8>> {
    let bearer: Vec<u8> = b"Bearer ".iter().chain(SECRET).copied().collect();
    let mut out = encodings_of(SECRET);
    out.extend(base64_spellings(&bearer));
    out.push(bearer);
    out
}

fn redaction(body: &[u8], label: &str) -> f64 {
    let chunk = 16 * 1024;
    let rounds = 8;
    let mut samples = Vec::new();
    for _ in 0..5 {
        let patterns: Vec<Secret> = credential_patterns().into_iter().map(Secret::new).collect();
        let mut r = Redactor::new(patterns);
        let start = Instant::now();
        let mut out = 0usize;
        for _ in 0..rounds {
            for c in body.chunks(chunk) {
                out += r.push(black_box(c)).len();
            }
        }
        out += r.finish().len();
        black_box(out);
        let secs = start.elapsed().as_secs_f64();
        samples.push((body.len() * rounds) as f64 / secs / 1e6);
    }
    let mbps = median(samples);
    println!("redaction ({label}, 16 KiB chunks): {mbps:.0} MB/s");
    mbps
}

fn main() {
    // `cargo bench --bench core -- request` runs only the per-request part
    // (short enough to run under a profiler).
    if std::env::args().any(|a| a == "mcp") {
        mcp_figures();
        return;
    }
    if std::env::args().any(|a| a == "request") {
        let us = per_request();
        println!("verify + decide + inject (+ build redactor): {us:.2} µs/request");
        return;
    }
    println!("Airlock native core ({} patterns per credential)", credential_patterns().len());
    let us = per_request();
    println!("verify + decide + inject (+ build redactor): {us:.2} µs/request  [{}: budget ≤ 10 µs]", if us <= 10.0 { "PASS" } else { "FAIL" });
    breakdown();
    mcp_figures();
    let body = vec![b'x'; 4096];
    let unsigned = aws_request(&body, false);
    let hashed = aws_request(&body, true);
    println!(
        "AWS SigV4 (S3 PUT, 4 KiB): verify + decide + sign again: {unsigned:.2} µs/request UNSIGNED-PAYLOAD, {hashed:.2} µs/request hashed; added over a bearer tool: {:.2} / {:.2} µs",
        unsigned - us,
        hashed - us
    );

    // JSON-like text (an API response), binary-ish data, and text dense
    // with the credential's first bytes (worst case for candidate checks).
    let json: Vec<u8> = br#"{"id":123456,"node_id":"MDU6SXNzdWUx","title":"Bug in the login flow","user":{"login":"octocat","gh_avatar":"https://avatars.githubusercontent.com/u/1?v=4"},"labels":[],"state":"open","body":"Steps: 1. open the page 2. click ghost button"},"#
        .iter()
        .cycle()
        .take(8 << 20)
        .copied()
        .collect();
    let mut seed = 0x2545F4914F6CDD1Du64;
    let random: Vec<u8> = (0..8 << 20)
        .map(|_| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed as u8
        })
        .collect();
    let dense: Vec<u8> = b"ghp_ gh Z2hw gh% ".iter().cycle().take(8 << 20).copied().collect();
    // Escapes everywhere, most of them spelling the credential's first
    // bytes (or its base64's) and then missing: every position is a
    // candidate and many readings run several bytes deep.
    let escapes: Vec<u8> = br#"%67%68%70%5fR2x \u0067\u0068p_R2d2C3pX \/\"\\ %2F%2b%3D+ Z2hwX1\u0032kM Qm%56hcmVy gh\u0070_R2d2C%33poBb8LukX "#
        .iter()
        .cycle()
        .take(8 << 20)
        .copied()
        .collect();
    let a = redaction(&json, "JSON text");
    let b = redaction(&random, "random bytes");
    let c = redaction(&dense, "adversarial: dense prefixes");
    let d = redaction(&escapes, "adversarial: escapes and near misses");
    let worst = a.min(b).min(c).min(d);
    println!("redaction, worst of four: {worst:.0} MB/s  [{}: budget ≥ 500 MB/s]", if worst >= 500.0 { "PASS" } else { "FAIL" });
}
