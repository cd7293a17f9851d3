//! The `airlock` command line: policy check and key generation.

use std::process::Command;

fn airlock(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_airlock")).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into(), String::from_utf8_lossy(&out.stderr).into())
}

fn temp(name: &str, text: &str) -> String {
    let dir = std::env::temp_dir().join(format!("airlock-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_string_lossy().into_owned()
}

#[test]
fn the_shipped_demo_policy_is_valid() {
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/wrangler.toml");
    let (code, out, err) = airlock(&["policy", "check", manifest]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("policy OK"), "{out}");
}

#[test]
fn policy_check_shows_the_tool_after_its_preset() {
    let file = temp(
        "preset.json",
        r#"{"version":1,"audience":"a","tools":{
            "claude":{"preset":"anthropic","credential":{"secret":"ANTHROPIC_KEY"}},
            "repo":{"preset":"git","credential":{"secret":"GH_TOKEN"},"session_token":{"query":["key"]}}}}"#,
    );
    let (code, out, err) = airlock(&["policy", "check", &file]);
    assert_eq!(code, 0, "{out}{err}");
    for want in [
        "claude (preset anthropic): https://api.anthropic.com, secret ANTHROPIC_KEY as x-api-key: <secret>",
        "POST,PUT,PATCH /** -> write",
        "forwards anthropic-version, anthropic-beta",
        "timeout 600000 ms",
        "origin 5xx answers passed through",
        "repo (preset git): https://github.com, secret GH_TOKEN as Authorization: Basic x-access-token:<secret>",
        "GET /*/*/info/refs?service=git-receive-pack -> write",
        "session token also in ?key=",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
}

#[test]
fn an_invalid_policy_names_the_field() {
    let file = temp(
        "bad.json",
        r#"{"version":1,"audience":"a","tools":{"gh":{"origin":"https://api.github.com","rules":[{"methods":["GET"],"path":"/","level":"superuser"}]}}}"#,
    );
    let (code, _, err) = airlock(&["policy", "check", &file]);
    assert_eq!(code, 1);
    assert!(err.contains("tools.gh.rules[0].level"), "{err}");

    let file =
        temp("bad.toml", "[vars]\nAIRLOCK_POLICY = '''{\"version\":1,\"audience\":\"a\",\"tools\":{\"gh\":{\"origin\":\"http://x\",\"rules\":[]}}}'''\n");
    let (code, _, err) = airlock(&["policy", "check", &file]);
    assert_eq!(code, 1);
    assert!(err.contains("tools.gh.origin"), "{err}");

    let file = temp("novars.toml", "name = \"x\"\n");
    let (code, _, err) = airlock(&["policy", "check", &file]);
    assert_eq!(code, 1);
    assert!(err.contains("AIRLOCK_POLICY"), "{err}");
}

#[test]
fn usage_and_keygen() {
    assert_eq!(airlock(&[]).0, 2);
    assert_eq!(airlock(&["policy", "check", "/nonexistent/file.json"]).0, 2);
    let (code, out, _) = airlock(&["keygen", "k9"]);
    assert_eq!(code, 0);
    let entry = out.trim();
    assert!(entry.starts_with("k9:"));
    // The entry is accepted by the same parser the worker uses.
    assert!(airlock::token::KeyRing::parse(entry).is_ok());
    let (_, again, _) = airlock(&["keygen", "k9"]);
    assert_ne!(again.trim(), entry, "keys must be random");
    assert_eq!(airlock(&["keygen", "bad kid"]).0, 2);
}

#[test]
fn the_control_plane_takes_the_admin_key_from_the_environment_only() {
    let (code, _, err) = airlock(&["--url", "http://127.0.0.1:9", "sessions", "list", "--admin-key", "secret-secret-secret"]);
    assert_eq!(code, 2);
    assert!(err.contains("AIRLOCK_ADMIN_KEY only") && !err.contains("secret-secret-secret"), "{err}");
    let out =
        Command::new(env!("CARGO_BIN_EXE_airlock")).args(["--url", "http://127.0.0.1:9", "sessions", "list"]).env_remove("AIRLOCK_ADMIN_KEY").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("set AIRLOCK_ADMIN_KEY"));
    let out = Command::new(env!("CARGO_BIN_EXE_airlock")).args(["sessions", "list"]).env("AIRLOCK_ADMIN_KEY", "k").env_remove("AIRLOCK_URL").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--url"));
}

#[test]
fn audit_verify_checks_a_saved_trail() {
    use airlock::audit::{chain_hash, chain_link, GENESIS};
    let mut prev = GENESIS.to_string();
    let records: Vec<String> = (0..3)
        .map(|seq| {
            let r = chain_link(&format!(r#"{{"kind":"airlock.audit","request_id":"r{seq}"}}"#), seq, &prev).unwrap();
            prev = chain_hash(&r);
            r
        })
        .collect();
    let trail = |records: &[String], head: &str| temp("trail.json", &serde_json::json!({ "records": records, "head": head }).to_string());
    let (code, _, err) = airlock(&["audit", "verify", &trail(&records, &prev)]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains(&format!("audit chain verified: 3 record(s), head {prev}")), "{err}");
    let removed = [records[0].clone(), records[2].clone()];
    let (code, _, err) = airlock(&["audit", "verify", &trail(&removed, &prev)]);
    assert_eq!(code, 1);
    assert!(err.contains("broken at record 1 of 2"), "{err}");
    let (code, _, err) = airlock(&["audit", "verify", &trail(&records[..2], &prev)]);
    assert_eq!(code, 1, "the last record cut: the head differs");
    assert!(err.contains("head differs"), "{err}");
}

#[test]
fn policy_check_names_secrets_store_bindings_and_refuses_a_root_bound_to_the_worker() {
    let policy = r#"{"version":1,"audience":"a","tools":{
        "echo":{"origin":"https://echo.example","credential":{"secret":"ECHO_TOKEN","inject":"bearer"},"rules":[{"methods":["GET"],"path":"/**","level":"read"}]},
        "crm":{"origin":"https://crm.example","credential":{"kind":"oauth_client_credentials","secret":"CRM_SECRET","token_url":"https://crm.example/token","client_id":"c","inject":"bearer"},"rules":[{"methods":["GET"],"path":"/**","level":"read"}]}}}"#;
    let binding = |name: &str, secret: &str| format!("[[secrets_store_secrets]]\nbinding = \"{name}\"\nstore_id = \"store1\"\nsecret_name = \"{secret}\"\n");
    let base = format!(
        "name = \"airlock\"\n{}{}[vars]\nAIRLOCK_POLICY = '''{policy}'''\n",
        binding("ECHO_TOKEN", "echo-token"),
        binding("AIRLOCK_ADMIN_KEY", "admin")
    );
    let file = temp("store.toml", &base);
    let (code, out, err) = airlock(&["policy", "check", &file]);
    assert_eq!(code, 0, "{out}{err}");
    for want in [
        "AIRLOCK_ADMIN_KEY: from Secrets Store (secret admin in store store1)",
        "secret ECHO_TOKEN (Secrets Store: secret echo-token in store store1) as Authorization: Bearer <secret>",
    ] {
        assert!(out.contains(want), "missing {want:?} in:\n{out}");
    }
    assert!(!out.contains("AIRLOCK_SIGNING_KEYS"), "{out}");
    // A minted kind's root bound to the worker is never read there.
    let wrong = temp("store-root.toml", &format!("{}{base}", binding("CRM_SECRET", "crm")));
    let (code, out, err) = airlock(&["policy", "check", &wrong]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.contains("the root secret CRM_SECRET is a Secrets Store binding of this worker"), "{out}");
    assert!(err.contains("not usable where it is"), "{err}");
}

#[test]
fn output_into_a_closed_pipe_ends_quietly() {
    use std::io::Read;
    use std::process::Stdio;
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/wrangler.toml");
    let mut child =
        Command::new(env!("CARGO_BIN_EXE_airlock")).args(["policy", "check", manifest]).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    // The reader goes away before the command has written its report.
    drop(child.stdout.take());
    let mut err = String::new();
    child.stderr.take().unwrap().read_to_string(&mut err).unwrap();
    let status = child.wait().unwrap();
    assert!(!err.contains("panicked"), "{err}");
    assert!(status.code() == Some(141) || status.success(), "{status:?} {err}");
}
