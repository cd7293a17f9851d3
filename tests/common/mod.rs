//! Shared fixture: a policy with a credentialed public tool, a private tool
//! and an egress allowlist; a key ring; a way to run requests through the
//! deciding pipeline while recording whether any secret was read.

#![allow(dead_code)]

use std::cell::Cell;
use std::rc::Rc;

use airlock::audit::AuditRecord;
use airlock::error::Error;
use airlock::inject::{Outbound, PreparedCredential};
use airlock::pipeline::{prepare, prepare_egress, EgressRequest, ToolRequest};
use airlock::policy::Policy;
use airlock::secret::Secret;
use airlock::mint::mint;
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

pub struct Fixture {
    pub policy: Policy,
    pub keys: KeyRing,
}

/// What a run produced: the result, whether a secret was read, the audit record.
pub struct Run {
    pub result: Result<Outbound, Error>,
    pub secret_read: bool,
    pub audit: AuditRecord,
}

impl Fixture {
    pub fn new() -> Fixture {
        Fixture { policy: Policy::parse(POLICY).unwrap(), keys: KeyRing::parse(KEYS).unwrap() }
    }

    /// Mints a session; `extra` is spliced into the JSON body (e.g. `"egress":true`).
    pub fn token_with(&self, tools: &str, ttl: u64, extra: &str) -> String {
        let body = format!(r#"{{"agent":"agent-7","user":"bob","tools":{tools},"ttl_seconds":{ttl}{extra}}}"#);
        mint(body.as_bytes(), &self.policy, &self.keys, NOW, [7; 16]).unwrap().token
    }

    pub fn token(&self, tools: &str, ttl: u64) -> String {
        self.token_with(tools, ttl, "")
    }

    pub fn run(&self, tool: &str, method: &str, rest: &str, query: Option<&str>, headers: &[(&str, &str)], now: u64) -> Run {
        let headers = owned(headers);
        let req = ToolRequest { tool, rest, method, query, headers: &headers };
        let read = Cell::new(false);
        let mut audit = AuditRecord::new("rid".into(), method, 0);
        let result = prepare(&self.policy, &self.keys, &req, now, &mut audit, |name| {
            read.set(true);
            match name {
                "ECHO_TOKEN" => Some(Rc::new(PreparedCredential::new(Secret::new(ECHO_SECRET.as_bytes().to_vec())))),
                "PRIVATE_KEY" => Some(Rc::new(PreparedCredential::new(Secret::new(b"private-key-456".to_vec())))),
                _ => None,
            }
        });
        finish(result, read.get(), audit)
    }

    pub fn run_mcp(&self, server: &str, method: &str, headers: &[(&str, &str)], body: Option<&str>) -> (Result<airlock::pipeline::McpPrepared<'_>, Error>, bool, AuditRecord) {
        let headers = owned(headers);
        let req = airlock::pipeline::McpRequest { server, method, headers: &headers, body: body.map(str::as_bytes) };
        let read = Cell::new(false);
        let mut audit = AuditRecord::new("rid".into(), method, 0);
        let result = airlock::pipeline::prepare_mcp(&self.policy, &self.keys, &req, NOW, &mut audit, |_| {
            read.set(true);
            Some(Rc::new(PreparedCredential::new(Secret::new(ECHO_SECRET.as_bytes().to_vec()))))
        });
        (result, read.get(), audit)
    }

    pub fn run_egress(&self, authority: &str, method: &str, rest: &str, query: Option<&str>, headers: &[(&str, &str)]) -> Run {
        let headers = owned(headers);
        let req = EgressRequest { authority, rest, method, query, headers: &headers };
        let mut audit = AuditRecord::new("rid".into(), method, 0);
        let result = prepare_egress(&self.policy, &self.keys, &req, NOW, &mut audit, Some(OWN_HOST));
        finish(result, false, audit)
    }
}

fn owned(headers: &[(&str, &str)]) -> Vec<(String, String)> {
    headers.iter().map(|(n, v)| (n.to_string(), v.to_string())).collect()
}

fn finish(result: Result<Outbound, Error>, secret_read: bool, mut audit: AuditRecord) -> Run {
    match &result {
        Ok(_) => audit.allow(None),
        Err(e) => audit.fail(e),
    }
    Run { result, secret_read, audit }
}
