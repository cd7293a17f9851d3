//! Airlock's command-line companion.
//!
//! `airlock policy check FILE` validates a policy before it is deployed and
//! names the offending field. FILE is a JSON policy, or a `wrangler.toml`
//! whose `[vars]` holds `AIRLOCK_POLICY`.
//!
//! `airlock keygen [KID]` prints a fresh signing-key entry for
//! `AIRLOCK_SIGNING_KEYS`.
//!
//! `airlock sessions …`, `airlock approvals …` and `airlock audit …` talk to
//! a deployed or local worker's control plane (`--url URL` or `AIRLOCK_URL`);
//! the admin key is read from the environment variable `AIRLOCK_ADMIN_KEY`
//! only, never from a flag, so it stays out of shell history and process
//! listings. The HTTP client is a native-only dependency: none of this is in
//! the worker's Wasm.

use std::process::ExitCode;

#[cfg(not(target_arch = "wasm32"))]
fn main() -> ExitCode {
    // Output piped into a reader that stops early (`| head`) ends the
    // command quietly, as for any Unix tool, instead of with a panic.
    let report = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info.payload().downcast_ref::<String>().map(String::as_str).unwrap_or_default();
        if message.contains("Broken pipe") {
            std::process::exit(141);
        }
        report(info);
    }));
    cli::main()
}

#[cfg(target_arch = "wasm32")]
fn main() -> ExitCode {
    ExitCode::FAILURE
}

#[cfg(not(target_arch = "wasm32"))]
#[path = "airlock/control.rs"]
mod control;

#[cfg(not(target_arch = "wasm32"))]
mod cli {
    use std::process::ExitCode;

    use airlock::policy::{Placement, Policy, Target, Tool};
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;

    use super::control;

    const USAGE: &str = "usage:
  airlock policy check FILE   validate a policy (JSON, or wrangler.toml with [vars] AIRLOCK_POLICY)
  airlock keygen [KID]        print a new entry for AIRLOCK_SIGNING_KEYS
control plane (--url URL or AIRLOCK_URL; the admin key from AIRLOCK_ADMIN_KEY):
  airlock sessions mint --agent A --user U --tool NAME=LEVEL... [--ttl S] [--egress] [--env]
  airlock sessions list [--agent A] [--user U] [--status active|revoked|expired] [--limit N] [--json]
  airlock sessions show ID
  airlock sessions revoke ID | --agent A
  airlock approvals list | show ID | approve ID [--as NAME] | deny ID [--as NAME]
  airlock audit SESSION [--json]    the session's audit trail, its hash chain verified
  airlock audit verify FILE         verify a saved trail (the JSON of GET /v1/sessions/{id}/audit; - for stdin)";

    pub fn main() -> ExitCode {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        match args.as_slice() {
            ["policy", "check", file] => check(file),
            ["keygen"] => keygen("k1"),
            ["keygen", kid] => keygen(kid),
            [first, ..] if ["sessions", "approvals", "audit"].contains(first) || first.starts_with("--url") => control::main(&args, USAGE),
            _ => {
                eprintln!("{USAGE}");
                ExitCode::from(2)
            }
        }
    }

    /// Extracts the policy JSON from a file: JSON as is, or TOML `[vars]`.
    fn policy_text(file: &str, text: &str) -> Result<String, String> {
        if !file.ends_with(".toml") {
            return Ok(text.to_string());
        }
        let doc: toml::Table = toml::from_str(text).map_err(|e| format!("not valid TOML: {e}"))?;
        let value = doc.get("vars").and_then(|v| v.get("AIRLOCK_POLICY")).ok_or("no [vars] AIRLOCK_POLICY in this file")?;
        match value {
            toml::Value::String(s) => Ok(s.clone()),
            other => serde_json::to_string(other).map_err(|e| e.to_string()),
        }
    }

    fn check(file: &str) -> ExitCode {
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("{file}: {e}");
                return ExitCode::from(2);
            }
        };
        let json = match policy_text(file, &text) {
            Ok(j) => j,
            Err(e) => {
                eprintln!("{file}: {e}");
                return ExitCode::FAILURE;
            }
        };
        let store = store_bindings(file, &text);
        match Policy::parse(&json) {
            Ok(policy) => {
                println!("{file}: policy OK (audience {:?})", policy.audience);
                for name in ["AIRLOCK_SIGNING_KEYS", "AIRLOCK_ADMIN_KEY"] {
                    if let Some(at) = store.iter().find(|(b, _)| b == name) {
                        println!("  {name}: from Secrets Store ({})", at.1);
                    }
                }
                let mut bad = false;
                for tool in policy.tools() {
                    print_tool(tool, &store, &mut bad);
                }
                if bad {
                    eprintln!("{file}: a minted credential's root secret is not usable where it is (see above)");
                    return ExitCode::FAILURE;
                }
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{file}: invalid policy: {e}");
                ExitCode::FAILURE
            }
        }
    }

    /// The `[[secrets_store_secrets]]` bindings of a wrangler file: (binding
    /// name, "secret NAME in store ID").
    fn store_bindings(file: &str, text: &str) -> Vec<(String, String)> {
        if !file.ends_with(".toml") {
            return Vec::new();
        }
        let Ok(doc) = toml::from_str::<toml::Table>(text) else { return Vec::new() };
        let Some(list) = doc.get("secrets_store_secrets").and_then(|v| v.as_array()) else { return Vec::new() };
        list.iter()
            .filter_map(|b| {
                let field = |k: &str| b.get(k).and_then(|v| v.as_str()).unwrap_or("?").to_string();
                Some((b.get("binding")?.as_str()?.to_string(), format!("secret {} in store {}", field("secret_name"), field("store_id"))))
            })
            .collect()
    }

    /// One tool as Airlock will run it: after its preset is applied.
    fn print_tool(tool: &Tool, store: &[(String, String)], bad_root: &mut bool) {
        let from_store = |name: &str| store.iter().find(|(b, _)| b == name).map_or(String::new(), |(_, at)| format!(" (Secrets Store: {at})"));
        let target = match &tool.origin.target {
            Target::Public => format!("{}{}", tool.origin.base, tool.origin.base_path),
            Target::Service { binding } => format!("service {binding}"),
        };
        let preset = tool.preset.map_or(String::new(), |p| format!(" (preset {p})"));
        let secret = match &tool.credential {
            None => "no credential".to_string(),
            Some(c) => {
                let place = match &c.placement {
                    Placement::Bearer => "Authorization: Bearer <secret>".to_string(),
                    Placement::Header { name, prefix, suffix } => format!("{name}: {prefix}<secret>{suffix}"),
                    Placement::Basic { username: Some(u) } => format!("Authorization: Basic {u}:<secret>"),
                    Placement::Basic { username: None } => "Authorization: Basic <secret>:".to_string(),
                    Placement::Query { param } => format!("?{param}=<secret>"),
                    Placement::AwsSigV4(a) => format!(
                        "an AWS SigV4 signature ({} in {}; access key id {}{}{})",
                        a.service,
                        a.region,
                        a.access_key_id_secret,
                        from_store(&a.access_key_id_secret),
                        a.session_token_secret.as_ref().map_or(String::new(), |t| format!(", session token {t}{}", from_store(t)))
                    ),
                };
                match &c.upstream {
                    None => format!("secret {}{} as {place}", c.secret, from_store(&c.secret)),
                    Some(u) => {
                        // Bound to the worker, a root is never read: minting
                        // runs in the airlock-state script.
                        if store.iter().any(|(b, _)| *b == c.secret) {
                            *bad_root = true;
                            println!(
                                "  {}: -- the root secret {} is a Secrets Store binding of this worker, which never reads it: bind it in the airlock-state script (wrangler.state.toml)",
                                tool.name, c.secret
                            );
                        }
                        // The root is a secret of the airlock-state script; if it
                        // is in this environment, its shape is checked now.
                        let shape = match std::env::var(&c.secret) {
                            Err(_) => String::new(),
                            Ok(v) => match airlock::upstream::check_root(&u.kind, v.as_bytes()) {
                                Ok(()) => " (its shape checked)".into(),
                                Err(why) => {
                                    *bad_root = true;
                                    format!(" -- INVALID: {why}")
                                }
                            },
                        };
                        format!("{} token minted from secret {}{shape}, as {}", u.kind.name(), c.secret, place.replace("<secret>", "<token>"))
                    }
                }
            }
        };
        println!("  {}{preset}: {target}, {secret}", tool.name);
        if let Some(m) = &tool.mcp {
            println!(
                "      MCP server at /mcp/{} ({} tool(s), {} prompt(s), {} resource prefix(es))",
                tool.name,
                m.tools.len(),
                m.prompts.len(),
                m.resources.len()
            );
        }
        for rule in &tool.rules {
            let methods: Vec<&str> = rule.methods.iter().map(|m| m.as_str()).collect();
            let query: String = rule.query.iter().map(|(k, v)| format!("{}{k}={v}", if k == &rule.query[0].0 { "?" } else { "&" })).collect();
            let approval = if rule.approval { ", approval" } else { "" };
            println!("      {} {}{query} -> {}{approval}", methods.join(","), rule.path.as_str(), rule.level.as_str());
        }
        if !tool.forward_headers.is_empty() {
            println!("      forwards {}", tool.forward_headers.join(", "));
        }
        let slots: Vec<String> = tool.session_token.headers.iter().cloned().chain(tool.session_token.query.iter().map(|q| format!("?{q}="))).collect();
        if !slots.is_empty() {
            println!("      session token also in {}", slots.join(", "));
        }
        if let Some(ms) = tool.timeout_ms {
            println!("      timeout {ms} ms");
        }
        if let Some(ms) = tool.idle_timeout_ms {
            println!("      idle timeout {ms} ms");
        }
        if tool.pass_server_errors {
            println!("      origin 5xx answers passed through (scrubbed)");
        }
    }

    fn keygen(kid: &str) -> ExitCode {
        if kid.is_empty() || kid.len() > 32 || !kid.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            eprintln!("key id must be 1-32 of [A-Za-z0-9_-]");
            return ExitCode::from(2);
        }
        let mut key = [0u8; 32];
        if getrandom::fill(&mut key).is_err() {
            eprintln!("the operating system's random source failed");
            return ExitCode::FAILURE;
        }
        println!("{kid}:{}", STANDARD.encode(key));
        ExitCode::SUCCESS
    }
}
