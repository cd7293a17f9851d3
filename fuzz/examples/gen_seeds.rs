//! Writes the committed seed inputs under `seeds/<target>/`.
//!
//! Run from the `fuzz` directory: `cargo run --example gen_seeds`.
//! The output is deterministic; re-run it when the token format, the claims
//! or the demo policy in `wrangler.toml` change, and commit the result.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use airlock::policy::{Level, Policy};
use airlock::token::{self, Claims, KeyRing};

/// Must match `fuzz_targets/token_verify.rs`.
const RING: &str = "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
const AUD: &str = "aud";
const NOW: u64 = 1_700_000_100;

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let d = dir.join(target);
    fs::create_dir_all(&d).expect("create seed dir");
    fs::write(d.join(name), bytes).expect("write seed");
}

fn claims() -> Claims {
    let mut scp = BTreeMap::new();
    scp.insert("echo".to_string(), Level::Read);
    scp.insert("github".to_string(), Level::Write);
    scp.insert("private".to_string(), Level::Admin);
    Claims {
        sid: "0123456789abcdef0123456789abcdef".into(),
        agt: "agent-1".into(),
        usr: "alice@example.com".into(),
        scp,
        iat: NOW - 100,
        exp: NOW + 500,
        aud: AUD.into(),
        egr: false,
        rps: Default::default(),
    }
}

fn token_seeds(dir: &Path) {
    let ring = KeyRing::parse(RING).expect("ring");
    let good = token::sign(&claims(), &ring);
    assert!(token::verify(&good, &ring, AUD, NOW).is_ok(), "seed token must verify");
    write(dir, "token_verify", "valid_token", good.as_bytes());
    write(dir, "token_verify", "valid_bearer", format!("Bearer {good}").as_bytes());
    let egress = token::sign(&Claims { egr: true, ..claims() }, &ring);
    assert!(token::verify(&egress, &ring, AUD, NOW).is_ok(), "egress seed token must verify");
    write(dir, "token_verify", "valid_token_egress", egress.as_bytes());
    // Raw claims JSON: the shim signs its input as claims too.
    let json = serde_json::to_vec(&claims()).expect("claims serialize");
    write(dir, "token_verify", "claims_json", &json);
    // Signed, but refused for one reason each: near misses for the checks.
    let variants = [
        ("wrong_aud", Claims { aud: "other".into(), ..claims() }),
        ("expired", Claims { exp: NOW - 31, ..claims() }),
        ("future_iat", Claims { iat: NOW + 31, ..claims() }),
    ];
    for (name, c) in variants {
        let t = token::sign(&c, &ring);
        assert!(token::verify(&t, &ring, AUD, NOW).is_err(), "{name} must be refused");
        write(dir, "token_verify", name, t.as_bytes());
    }
}

fn policy_seed(dir: &Path, root: &Path) {
    let toml = fs::read_to_string(root.join("wrangler.toml")).expect("read wrangler.toml");
    let start = toml.find("AIRLOCK_POLICY = '''").expect("AIRLOCK_POLICY in wrangler.toml") + "AIRLOCK_POLICY = '''".len();
    let len = toml[start..].find("'''").expect("end of AIRLOCK_POLICY");
    let policy = toml[start..start + len].trim();
    Policy::parse(policy).expect("demo policy must validate");
    write(dir, "policy_parse", "demo_policy.json", policy.as_bytes());
    // Every optional section and injection kind, in one valid policy.
    let full = r#"{"version":1,"audience":"aud",
"limits":{"max_session_ttl_seconds":600,"max_request_body_bytes":1024,"upstream_timeout_ms":5000,
"max_response_body_bytes":4096,"upstream_idle_timeout_ms":2000},
"tools":{
"q":{"origin":"https://api.example.com/v1","credential":{"secret":"Q_KEY","inject":"query","param":"api_key"},
"allow_path_params":true,"rules":[{"methods":["GET","HEAD","OPTIONS"],"path":"/items/*","level":"read"}]},
"b":{"origin":"https://b.example.com","credential":{"secret":"B_PASS","inject":"basic","username":"bot"},
"forward_headers":["x-request-id","accept-language"],"rules":[{"methods":["POST","PUT","PATCH","DELETE"],"path":"/**","level":"admin"}]},
"h":{"service":"H_BINDING","credential":{"secret":"H_KEY","inject":"header","header":"x-api-key","format":"Key {secret}"},
"rules":[{"methods":["GET"],"path":"/","level":"read"}]},
"n":{"origin":"http://plain.example.com:8080","allow_http":true,"rules":[{"methods":["GET"],"path":"/a/b/**","level":"write"}]}},
"egress":{"hosts":["PyPI.org.","*.pythonhosted.org",{"host":"mirror.example.com","http":true,"ports":[8080,8443]}]}}"#;
    if let Err(e) = Policy::parse(full) {
        panic!("full seed policy must validate: {e}");
    }
    write(dir, "policy_parse", "full_policy.json", full.as_bytes());
}

fn text_seeds(dir: &Path) {
    let paths = [
        "/", "/repos/o/r", "/repos/o/r/", "/a%20b/c", "/caf%C3%A9", "/a;b=c", "/...", "/a%2e%2e/b",
        "/a%252fb", "/a%2fb", "/%c0%ae", "/a//b", "/items/42",
    ];
    for (i, p) in paths.iter().enumerate() {
        write(dir, "path_normalize", &format!("path_{i:02}"), p.as_bytes());
    }
    let hosts = [
        "api.github.com", "API.GitHub.com.", "example.com:8443", "xn--bcher-kva.example.org",
        "0x7f.0.0.1", "127.1", "metadata.google.internal", "a.b-c.d", "[::1]:80", "evil.localhost",
    ];
    for (i, h) in hosts.iter().enumerate() {
        write(dir, "egress_host", &format!("host_{i:02}"), h.as_bytes());
    }
}

fn redact_seeds(dir: &Path) {
    // Layout: see fuzz_targets/redact_stream.rs.
    fn seed(patterns: &[&[u8]], sizes: &[u8], body: &[u8]) -> Vec<u8> {
        let mut v = vec![(patterns.len() - 1) as u8];
        for p in patterns {
            v.push((p.len() - 1) as u8);
            v.extend_from_slice(p);
        }
        v.push(sizes.len() as u8);
        v.extend_from_slice(sizes);
        v.extend_from_slice(body);
        v
    }
    let seeds = [
        seed(&[b"s3cr3t"], &[3, 1, 7], b"{\"authorization\":\"Bearer s3cr3t\",\"x\":\"s3cr3ts3cr3t\",\"t\":\"s3cr\"}"),
        seed(&[b"abcabd", b"cab"], &[1], b"xxabcabcabdyyabcab"),
        seed(&[b"Zq8#kP2!", b"Zq8#kP2!Zq8", b"%5Bx%5D"], &[2, 5, 0, 9], b"Zq8#kP2!Zq8#kP2!Zq8%5Bx%5DZq8#k"),
        seed(&[b"tok_9f8e7d6c5b4a"], &[], b"no secret here at all"),
    ];
    for (i, s) in seeds.iter().enumerate() {
        write(dir, "redact_stream", &format!("seed_{i:02}"), s);
    }
}

fn main() {
    let fuzz_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let root = fuzz_dir.parent().expect("fuzz/ has a parent").to_path_buf();
    let seeds = fuzz_dir.join("seeds");
    token_seeds(&seeds);
    policy_seed(&seeds, &root);
    text_seeds(&seeds);
    redact_seeds(&seeds);
    println!("seeds written to {}", seeds.display());
}
