//! Shared fixture: a policy with a credentialed public tool, a private tool
//! and an egress allowlist; a key ring; a way to run requests through the
//! deciding pipeline while recording whether any secret was read.

#![allow(dead_code)]

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

use airlock::admit::{self, Gated, Received, StateCalls};
use airlock::audit::AuditRecord;
use airlock::authorize::{self, Gate};
use airlock::error::Error;
use airlock::inject::{self, McpOutbound, Outbound, PreparedCredential};
use airlock::mint::mint;
use airlock::policy::Policy;
use airlock::request::{EgressRequest, McpRequest, ToolRequest};
use airlock::secret::Secret;
use airlock::state::store::MemStore;
use airlock::state::{self, Command, Reply};
use airlock::token::KeyRing;

pub const POLICY: &str = r#"{
  "version": 1,
  "audience": "airlock-test",
  "limits": { "max_session_ttl_seconds": 900, "max_request_body_bytes": 1000 },
  "tools": {
    "echo": {
      "origin": "https://echo.example.com/api",
      "credential": { "secret": "ECHO_TOKEN", "inject": "bearer" },
      "forward_headers": ["x-extra"],
      "rules": [
        { "methods": ["GET", "HEAD"], "path": "/**", "level": "read" },
        { "methods": ["POST", "PUT"], "path": "/items/**", "level": "write" },
        { "methods": ["DELETE"], "path": "/items/*", "level": "admin" }
      ]
    },
    "docs": {
      "origin": "https://mcp.example.com/mcp",
      "credential": { "secret": "ECHO_TOKEN", "inject": "bearer" },
      "mcp": {
        "tools": { "search": "read", "create_page": "write", "delete_space": "admin" },
        "resources": [ { "prefix": "docs://public/", "level": "read" } ],
        "prompts": { "summarize": "read" }
      }
    },
    "gemini": {
      "preset": "google-genai",
      "credential": { "secret": "ECHO_TOKEN" },
      "session_token": { "query": ["key"] }
    },
    "git": {
      "preset": "git",
      "origin": "https://git.example.com",
      "credential": { "secret": "ECHO_TOKEN" }
    },
    "private": {
      "service": "PRIVATE_ORIGIN",
      "credential": { "secret": "PRIVATE_KEY", "inject": "header", "header": "x-api-key", "format": "Key {secret}" },
      "rules": [ { "methods": ["GET"], "path": "/**", "level": "read" } ]
    }
  },
  "egress": { "hosts": ["pypi.org", "*.pythonhosted.org", { "host": "mirror.example.com", "http": true, "ports": [8080] }] }
}"#;
pub const KEYS: &str = "k1:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=";
pub const OTHER_KEYS: &str = "k1:ZmVkY2JhOTg3NjU0MzIxMGZlZGNiYTk4NzY1NDMyMTA=";
pub const NOW: u64 = 1_800_000_000;
pub const ECHO_SECRET: &str = "echo-secret-value-123";
pub const OWN_HOST: &str = "airlock.example.workers.dev";

/// The session state in memory: one store per state object, run by the
/// same state machines as the Durable Objects.
#[derive(Default)]
pub struct MemState {
    stores: RefCell<BTreeMap<String, MemStore>>,
    /// How many commands reached the state.
    pub calls: Cell<usize>,
}

impl MemState {
    pub fn run(&self, object: &str, command: Command) -> Reply {
        self.calls.set(self.calls.get() + 1);
        let mut stores = self.stores.borrow_mut();
        let store = stores.entry(object.to_string()).or_default();
        state::run(store, command, NOW * 1000)
    }
}

impl StateCalls for MemState {
    async fn call(&self, object: &str, command: &Command) -> Result<Reply, Error> {
        match self.run(object, command.clone()) {
            Reply::Failed => Err(Error::StateUnavailable("store failed".into())),
            reply => Ok(reply),
        }
    }
    async fn wait(&self) -> bool {
        false
    }
    fn approval_id(&self) -> Result<String, Error> {
        Ok("ap_00000000000000000000000000000000".into())
    }
}

/// Runs a future that never waits on I/O (the in-memory state) to its end.
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = future.as_mut().poll(&mut cx) {
            return out;
        }
    }
}

/// A secret reader that counts its calls.
pub fn counting_secret(reads: &Cell<usize>) -> impl FnOnce(&str) -> Option<Rc<PreparedCredential>> + '_ {
    move |name| {
        reads.set(reads.get() + 1);
        match name {
            "ECHO_TOKEN" => Some(Rc::new(PreparedCredential::new(Secret::new(ECHO_SECRET.as_bytes().to_vec())))),
            "PRIVATE_KEY" => Some(Rc::new(PreparedCredential::new(Secret::new(b"private-key-456".to_vec())))),
            _ => None,
        }
    }
}

/// The deciding phases of a tool request, in order: parse, authenticate and
/// authorize, admit (against `state`), inject (reading the secret).
pub fn drive_tool(
    policy: &Policy,
    keys: &KeyRing,
    state: &MemState,
    req: &ToolRequest<'_>,
    now: u64,
    audit: &mut AuditRecord,
    secret: impl FnOnce(&str) -> Option<Rc<PreparedCredential>>,
) -> (Result<Outbound, Error>, Option<Gate>) {
    let authorized = match authorize::tool(policy, keys, req, now, audit) {
        Ok(a) => a,
        Err(e) => return (Err(e), None),
    };
    let gate = authorized.gate.clone();
    let received = Received { method: req.method, raw_path: req.rest, query: req.query.unwrap_or(""), headers: req.headers };
    let result = match block_on(admit::run(state, &gate, &received, b"", keys, &policy.limits, now, audit)) {
        Ok(Gated::Admitted(admitted)) => inject::tool(authorized, &admitted, req, secret),
        Ok(Gated::Replay(_)) => Err(Error::Internal("replay".into())),
        Err(e) => Err(e),
    };
    (result, Some(gate))
}

/// Creates a minted session's record in `state`, as the session's object
/// does when it mints.
pub fn create_session(state: &MemState, record: airlock::state::session::SessionRecord) {
    let object = admit::session_object(&record.session_id);
    let mut stores = state.stores.borrow_mut();
    assert_eq!(airlock::state::session::create(stores.entry(object).or_default(), &record), Ok(true));
}

pub struct Fixture {
    pub policy: Policy,
    pub keys: KeyRing,
    pub state: MemState,
    minted: Cell<u8>,
}

/// What a run produced: the result, whether a secret was read, the audit record.
pub struct Run {
    pub result: Result<Outbound, Error>,
    pub secret_read: bool,
    pub audit: AuditRecord,
    /// What admission was asked to check (`None` when refused before).
    pub gate: Option<Gate>,
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture { policy: Policy::parse(POLICY).unwrap(), keys: KeyRing::parse(KEYS).unwrap(), state: MemState::default(), minted: Cell::new(0) }
    }

    /// Mints a session; `extra` is spliced into the JSON body (e.g. `"egress":true`).
    pub fn token_with(&self, tools: &str, ttl: u64, extra: &str) -> String {
        let body = format!(r#"{{"agent":"agent-7","user":"bob","tools":{tools},"ttl_seconds":{ttl}{extra}}}"#);
        // Each token its own session, with its record in the state.
        let n = self.minted.get().wrapping_add(1);
        self.minted.set(n);
        let minted = mint(body.as_bytes(), &self.policy, &self.keys, NOW, [n; 16]).unwrap();
        create_session(&self.state, minted.record.clone());
        minted.token
    }

    /// Revokes the session of the token minted last.
    pub fn revoke_last(&self) {
        let object = admit::session_object(&airlock::hex::hex(&[self.minted.get(); 16]));
        assert!(matches!(self.state.run(&object, Command::Revoke), Reply::Session { session: Some(_) }));
    }

    pub fn token(&self, tools: &str, ttl: u64) -> String {
        self.token_with(tools, ttl, "")
    }

    pub fn run(&self, tool: &str, method: &str, rest: &str, query: Option<&str>, headers: &[(&str, &str)], now: u64) -> Run {
        let headers = owned(headers);
        let req = ToolRequest { tool, rest, method, query, headers: &headers };
        let reads = Cell::new(0);
        let mut audit = AuditRecord::new("rid".into(), method, 0);
        let (result, gate) = drive_tool(&self.policy, &self.keys, &self.state, &req, now, &mut audit, counting_secret(&reads));
        finish(result, reads.get() > 0, audit, gate)
    }

    /// The deciding phases of an MCP request; the bool: whether a secret was read.
    pub fn run_mcp(&self, server: &str, method: &str, headers: &[(&str, &str)], body: Option<&str>) -> (Result<McpOutbound<'_>, Error>, bool, AuditRecord) {
        let headers = owned(headers);
        let req = McpRequest { server, method, headers: &headers, body: body.map(str::as_bytes) };
        let reads = Cell::new(0);
        let mut audit = AuditRecord::new("rid".into(), method, 0);
        let received = Received { method, raw_path: "/", query: "", headers: &headers };
        let result = authorize::mcp(&self.policy, &self.keys, &req, NOW, &mut audit).and_then(|authorized| {
            let known = req.body.unwrap_or_default();
            match block_on(admit::run(&self.state, &authorized.gate, &received, known, &self.keys, &self.policy.limits, NOW, &mut audit))? {
                Gated::Admitted(admitted) => inject::mcp(authorized, &admitted, &req, &self.keys, counting_secret(&reads)),
                Gated::Replay(_) => Err(Error::Internal("replay".into())),
            }
        });
        (result, reads.get() > 0, audit)
    }

    pub fn run_egress(&self, authority: &str, method: &str, rest: &str, query: Option<&str>, headers: &[(&str, &str)]) -> Run {
        let headers = owned(headers);
        let req = EgressRequest { authority, rest, method, query, headers: &headers };
        let mut audit = AuditRecord::new("rid".into(), method, 0);
        let received = Received { method, raw_path: rest, query: query.unwrap_or(""), headers: &headers };
        let mut gate = None;
        let result = authorize::egress(&self.policy, &self.keys, &req, NOW, &mut audit, Some(OWN_HOST)).and_then(|authorized| {
            gate = Some(authorized.gate.clone());
            match block_on(admit::run(&self.state, &authorized.gate, &received, b"", &self.keys, &self.policy.limits, NOW, &mut audit))? {
                Gated::Admitted(admitted) => Ok(inject::egress(authorized, &admitted, &req)),
                Gated::Replay(_) => Err(Error::Internal("replay".into())),
            }
        });
        finish(result, false, audit, gate)
    }
}

pub fn owned(headers: &[(&str, &str)]) -> Vec<(String, String)> {
    headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
}

pub fn finish(result: Result<Outbound, Error>, secret_read: bool, mut audit: AuditRecord, gate: Option<Gate>) -> Run {
    match &result {
        Ok(_) => audit.allow(None),
        Err(e) => audit.fail(e),
    }
    Run { result, secret_read, audit, gate }
}
