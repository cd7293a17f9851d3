//! The control-plane commands: a thin HTTP client of the worker's admin API.
//!
//! Must never: take the admin key from a flag or print it; print a token
//! except where `sessions mint` is asked for one.

use std::collections::BTreeMap;
use std::process::ExitCode;
use std::time::Duration;

use airlock::audit::verify_chain;
use serde_json::{json, Value};

const KEY_VAR: &str = "AIRLOCK_ADMIN_KEY";
const URL_VAR: &str = "AIRLOCK_URL";

/// A failure to report: the message, and the exit code (1: the worker
/// refused or the check failed; 2: the command line was wrong).
struct Fail(String, u8);

fn usage(msg: impl Into<String>) -> Fail {
    Fail(msg.into(), 2)
}

pub fn main(args: &[&str], usage_text: &str) -> ExitCode {
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(Fail(msg, code)) => {
            eprintln!("airlock: {msg}");
            if code == 2 {
                eprintln!("{usage_text}");
            }
            ExitCode::from(code)
        }
    }
}

/// The command line after `--url`: positional words and `--flag [value]`s.
struct Args<'a> {
    words: Vec<&'a str>,
    flags: Vec<(&'a str, Option<&'a str>)>,
}

const SWITCHES: &[&str] = &["--egress", "--env", "--json"];

fn parse<'a>(args: &[&'a str]) -> Result<(Option<String>, Args<'a>), Fail> {
    let mut url = None;
    let mut out = Args { words: Vec::new(), flags: Vec::new() };
    let mut it = args.iter().copied();
    while let Some(a) = it.next() {
        if let Some(v) = a.strip_prefix("--url=") {
            url = Some(v.to_string());
        } else if a == "--url" {
            url = Some(it.next().ok_or_else(|| usage("--url needs a value"))?.to_string());
        } else if a.contains("key") && a.starts_with("--") {
            return Err(usage(format!("{a}: the admin key is read from {KEY_VAR} only, never from a flag")));
        } else if SWITCHES.contains(&a) {
            out.flags.push((a, None));
        } else if a.starts_with("--") {
            out.flags.push((a, Some(it.next().ok_or_else(|| usage(format!("{a} needs a value")))?)));
        } else {
            out.words.push(a);
        }
    }
    Ok((url, out))
}

impl<'a> Args<'a> {
    fn one(&self, name: &str) -> Option<&'a str> {
        self.flags.iter().rev().find(|(n, _)| *n == name).and_then(|(_, v)| *v)
    }
    fn all(&self, name: &str) -> Vec<&'a str> {
        self.flags.iter().filter(|(n, _)| *n == name).filter_map(|(_, v)| *v).collect()
    }
    fn has(&self, name: &str) -> bool {
        self.flags.iter().any(|(n, _)| *n == name)
    }
    /// Refuses flags the command does not take, so a typo is not ignored.
    fn only(&self, allowed: &[&str]) -> Result<(), Fail> {
        match self.flags.iter().find(|(n, _)| !allowed.contains(n)) {
            Some((n, _)) => Err(usage(format!("unknown option {n} for this command"))),
            None => Ok(()),
        }
    }
}

fn run(args: &[&str]) -> Result<(), Fail> {
    let (url, a) = parse(args)?;
    let words = a.words.clone();
    // `audit verify FILE` needs no worker.
    if let ["audit", "verify", file] = words.as_slice() {
        a.only(&[])?;
        return verify_file(file);
    }
    let api = Api::new(url)?;
    match words.as_slice() {
        ["sessions", "mint"] => {
            a.only(&["--agent", "--user", "--tool", "--ttl", "--egress", "--env"])?;
            mint(&api, &a)
        }
        ["sessions", "list"] => {
            a.only(&["--agent", "--user", "--status", "--limit", "--json"])?;
            list(&api, &a)
        }
        ["sessions", "show", id] => {
            a.only(&[])?;
            print_json(&api.call("GET", &format!("/v1/sessions/{}", path_id(id)?), None)?);
            Ok(())
        }
        ["sessions", "revoke", id] => {
            a.only(&[])?;
            print_json(&api.call("DELETE", &format!("/v1/sessions/{}", path_id(id)?), None)?);
            Ok(())
        }
        ["sessions", "revoke"] => {
            a.only(&["--agent"])?;
            let agent = a.one("--agent").ok_or_else(|| usage("sessions revoke needs a session id or --agent NAME"))?;
            revoke_agent(&api, agent)
        }
        ["approvals", "list"] => {
            a.only(&[])?;
            print_json(&api.call("GET", "/v1/approvals", None)?);
            Ok(())
        }
        ["approvals", "show", id] => {
            a.only(&[])?;
            print_json(&api.call("GET", &format!("/v1/approvals/{}", path_id(id)?), None)?);
            Ok(())
        }
        ["approvals", verb @ ("approve" | "deny"), id] => {
            a.only(&["--as"])?;
            let approver = match a.one("--as") {
                Some(name) => name.to_string(),
                None => std::env::var("USER").unwrap_or_else(|_| "airlock-cli".into()),
            };
            let body = json!({ "approver": approver });
            print_json(&api.call("POST", &format!("/v1/approvals/{}/{verb}", path_id(id)?), Some(&body))?);
            Ok(())
        }
        ["audit", session] => {
            a.only(&["--json"])?;
            let trail = api.call("GET", &format!("/v1/sessions/{}/audit", path_id(session)?), None)?;
            if a.has("--json") {
                print_json(&trail);
            } else {
                for r in trail["records"].as_array().into_iter().flatten() {
                    println!("{}", r.as_str().unwrap_or_default());
                }
            }
            check_trail(&trail)
        }
        _ => Err(usage("unknown command")),
    }
}

/// Ids go into a URL path: only what Airlock hands out is accepted.
fn path_id(id: &str) -> Result<&str, Fail> {
    if !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
        Ok(id)
    } else {
        Err(usage(format!("{id:?} is not an id")))
    }
}

struct Api {
    base: String,
    key: String,
    agent: ureq::Agent,
}

impl Api {
    fn new(url: Option<String>) -> Result<Api, Fail> {
        let base = url.or_else(|| std::env::var(URL_VAR).ok()).ok_or_else(|| usage(format!("give the worker's URL with --url URL or {URL_VAR}")))?;
        let base = base.trim_end_matches('/').to_string();
        if !(base.starts_with("https://") || base.starts_with("http://")) {
            return Err(usage(format!("{base:?}: the URL must start with https:// (or http:// for a local worker)")));
        }
        let key = std::env::var(KEY_VAR).map_err(|_| usage(format!("set {KEY_VAR} to the worker's admin key")))?;
        let config = ureq::Agent::config_builder().http_status_as_error(false).timeout_global(Some(Duration::from_secs(60))).build();
        Ok(Api { base, key, agent: config.into() })
    }

    /// One admin request; a non-2xx answer is a failure naming its code.
    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, Fail> {
        let url = format!("{}{path}", self.base);
        let auth = format!("Bearer {}", self.key);
        let sent = match (method, body) {
            ("POST", Some(b)) => self.agent.post(&url).header("authorization", &auth).content_type("application/json").send(b.to_string()),
            ("POST", None) => self.agent.post(&url).header("authorization", &auth).send_empty(),
            ("DELETE", _) => self.agent.delete(&url).header("authorization", &auth).call(),
            _ => self.agent.get(&url).header("authorization", &auth).call(),
        };
        let mut response = sent.map_err(|e| Fail(format!("{method} {url}: {e}"), 1))?;
        let status = response.status().as_u16();
        let text = response.body_mut().read_to_string().map_err(|e| Fail(format!("{method} {url}: reading the answer: {e}"), 1))?;
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if (200..300).contains(&status) {
            return Ok(value);
        }
        let code = value["error"]["code"].as_str().unwrap_or("?");
        let message = value["error"]["message"].as_str().unwrap_or(text.trim());
        Err(Fail(format!("{method} {path}: {status} {code}: {message}"), 1))
    }
}

fn print_json(v: &Value) {
    println!("{}", serde_json::to_string_pretty(v).unwrap_or_default());
}

fn mint(api: &Api, a: &Args) -> Result<(), Fail> {
    let agent = a.one("--agent").ok_or_else(|| usage("sessions mint needs --agent"))?;
    let user = a.one("--user").ok_or_else(|| usage("sessions mint needs --user"))?;
    let ttl: u64 = a.one("--ttl").unwrap_or("600").parse().map_err(|_| usage("--ttl takes seconds"))?;
    let mut tools = BTreeMap::new();
    for t in a.all("--tool") {
        let (name, level) = t.split_once('=').ok_or_else(|| usage(format!("--tool {t}: expected NAME=read|write|admin")))?;
        tools.insert(name.to_string(), level.to_string());
    }
    let body = json!({ "agent": agent, "user": user, "tools": tools, "ttl_seconds": ttl, "egress": a.has("--egress") });
    let minted = api.call("POST", "/v1/sessions", Some(&body))?;
    if !a.has("--env") {
        print_json(&minted);
        return Ok(());
    }
    let field = |name: &str| minted[name].as_str().map(str::to_string).ok_or_else(|| Fail(format!("the mint answer has no {name}"), 1));
    let (token, session_id) = (field("token")?, field("session_id")?);
    println!("# Airlock session {session_id} for agent {agent}, user {user}; expires at {}", minted["expires_at"]);
    println!("export AIRLOCK_URL={}", shell_quote(&api.base));
    println!("export AIRLOCK_TOKEN={}", shell_quote(&token));
    println!("export AIRLOCK_SESSION_ID={}", shell_quote(&session_id));
    if let Ok(proof_key) = field("proof_key") {
        println!("export AIRLOCK_PROOF_KEY={}", shell_quote(&proof_key));
    }
    for name in tools.keys() {
        println!("export AIRLOCK_TOOL_{}_URL={}", env_name(name), shell_quote(&format!("{}/t/{name}", api.base)));
    }
    if a.has("--egress") {
        println!("export AIRLOCK_EGRESS_URL={}", shell_quote(&format!("{}/e", api.base)));
    }
    Ok(())
}

/// A tool name as part of a variable name: upper case, `_` for the rest.
fn env_name(tool: &str) -> String {
    tool.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_uppercase() } else { '_' }).collect()
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn list(api: &Api, a: &Args) -> Result<(), Fail> {
    let mut sessions = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        for name in ["agent", "user", "status", "limit"] {
            if let Some(v) = a.one(&format!("--{name}")) {
                q.append_pair(name, v);
            }
        }
        if let Some(c) = &cursor {
            q.append_pair("cursor", c);
        }
        let page = api.call("GET", &format!("/v1/sessions?{}", q.finish()), None)?;
        sessions.extend(page["sessions"].as_array().cloned().unwrap_or_default());
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    if a.has("--json") {
        print_json(&json!({ "sessions": sessions }));
        return Ok(());
    }
    println!("{:<32}  {:<7}  {:<20}  {:<24}  {:>10}  tools", "session", "status", "agent", "user", "expires_at");
    for s in &sessions {
        let tools: Vec<String> = s["tools"].as_object().into_iter().flatten().map(|(t, l)| format!("{t}={}", l.as_str().unwrap_or("?"))).collect();
        println!(
            "{:<32}  {:<7}  {:<20}  {:<24}  {:>10}  {}",
            s["session_id"].as_str().unwrap_or("?"),
            s["status"].as_str().unwrap_or("?"),
            s["agent"].as_str().unwrap_or("?"),
            s["user"].as_str().unwrap_or("?"),
            s["expires_at"],
            tools.join(",")
        );
    }
    eprintln!("{} session(s)", sessions.len());
    Ok(())
}

/// Revokes all of an agent's sessions, repeating while the worker says
/// there are more.
fn revoke_agent(api: &Api, agent: &str) -> Result<(), Fail> {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("agent", agent);
    let path = format!("/v1/sessions?{}", q.finish());
    let mut total = 0;
    loop {
        let answer = api.call("DELETE", &path, None)?;
        total += answer["revoked"].as_u64().unwrap_or(0);
        if answer["more"] != Value::Bool(true) {
            break;
        }
    }
    print_json(&json!({ "agent": agent, "revoked": total }));
    Ok(())
}

/// Verifies a trail and its head; prints the outcome to stderr.
fn check_trail(trail: &Value) -> Result<(), Fail> {
    let records: Vec<&str> = match trail.get("records").unwrap_or(trail).as_array() {
        Some(list) => list.iter().map(|r| r.as_str().ok_or_else(|| Fail("a record is not a string (the stored line)".into(), 1))).collect::<Result<_, _>>()?,
        None => return Err(Fail("no records in the trail".into(), 1)),
    };
    match verify_chain(&records) {
        Err(i) => Err(Fail(format!("audit chain broken at record {i} of {}: a record was removed, altered or moved", records.len()), 1)),
        Ok(head) => match trail.get("head") {
            Some(served) if served.as_str() != head.as_deref() => {
                Err(Fail(format!("audit chain head differs: computed {head:?}, served {served}: the last record was altered or removed"), 1))
            }
            _ => {
                eprintln!("audit chain verified: {} record(s), head {}", records.len(), head.as_deref().unwrap_or("(none)"));
                Ok(())
            }
        },
    }
}

fn verify_file(file: &str) -> Result<(), Fail> {
    let text = if file == "-" {
        std::io::read_to_string(std::io::stdin()).map_err(|e| Fail(format!("stdin: {e}"), 2))?
    } else {
        std::fs::read_to_string(file).map_err(|e| Fail(format!("{file}: {e}"), 2))?
    };
    let trail: Value = serde_json::from_str(&text).map_err(|e| Fail(format!("{file}: not JSON: {e}"), 1))?;
    check_trail(&trail)
}
