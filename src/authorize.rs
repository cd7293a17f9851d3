//! Authorize: default deny, by tool scope, rule and level.
//!
//! Invariant: a [`Permit`] is the only way to reach injection and
//! forwarding, and only [`authorize`] builds one (its fields are private).
//! It carries the verified session, the tool and the matched rule, so later
//! phases cannot act on a request that skipped a check.
//!
//! A method-override query parameter (`?_method=DELETE`) makes many
//! frameworks act on another method than the one sent: it is refused unless
//! the tool allows it, and then the rules must allow both methods and the
//! session must hold the higher of the two levels.

use sha2::Digest;

use crate::audit::AuditRecord;
use crate::authenticate::authenticate;
use crate::egress::{self, EgressPermit};
use crate::error::Error;
use crate::mcp;
use crate::path::{self, NormalizedPath, PathError};
use crate::policy::{is_method_override_name, query_pairs, Level, Method, Policy, Rule, Tool};
use crate::request::{declared_length, header, EgressRequest, McpRequest, ToolRequest};
use crate::state::bucket::Rate;
use crate::token::{KeyRing, VerifiedSession};

/// What the session state must check before a request is admitted, taken
/// from the verified token and the policy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gate {
    pub session_id: String,
    /// The token's expiry, for the audit record of an expired session.
    pub exp: u64,
    /// Key id of the token, from which the proof key is derived.
    pub kid: String,
    pub tool: Option<String>,
    pub proof_required: bool,
    pub session_rate: Option<Rate>,
    pub tool_rate: Option<Rate>,
    /// Level of the matched HTTP rule: idempotency keys apply at `write`
    /// and above.
    pub level: Option<Level>,
    pub approval: bool,
    /// How long a held request waits open for the decision.
    pub approval_wait_s: u64,
    /// The normalized path, as forwarded (request digests use it).
    pub path: String,
    /// The raw query without the session token's parameters: what
    /// approvals record and request digests bind.
    pub query: String,
    /// MCP: a gated or deduplicated tool call binds its JSON-RPC method and
    /// canonical params (without `_meta`) in place of the HTTP method and
    /// body; `path` is then the tool's name.
    pub call: Option<(String, Vec<u8>)>,
    /// MCP: identical calls within this many seconds run once (0: off).
    pub dedupe_s: u64,
    /// MCP: the approval Airlock's own `requestState` named (checked).
    pub presented: Option<String>,
}

impl Gate {
    fn new(policy: &Policy, session: &VerifiedSession, tool: Option<&Tool>, path: String) -> Gate {
        Gate {
            session_id: session.claims().sid.clone(),
            exp: session.claims().exp,
            kid: session.kid().to_string(),
            tool: tool.map(|t| t.name.clone()),
            proof_required: policy.require_proof || tool.is_some_and(|t| t.require_proof),
            session_rate: policy.limits.session_rate,
            tool_rate: tool.and_then(|t| t.rate),
            level: None,
            approval: false,
            approval_wait_s: 0,
            path,
            query: String::new(),
            call: None,
            dedupe_s: 0,
            presented: None,
        }
    }

    /// Whether an `Idempotency-Key` applies to this request.
    pub fn idempotent(&self) -> bool {
        self.level.is_some_and(|l| l >= Level::Write)
    }

    /// The digest binding an approval or an idempotency key to exactly
    /// this request of this session.
    pub fn request_digest(&self, method: &str, query: &str, body_sha256: &str) -> String {
        let tool = self.tool.as_deref().unwrap_or("");
        let canonical = format!("airlock-request-v1\n{}\n{tool}\n{method}\n{}\n{query}\n{body_sha256}", self.session_id, self.path);
        crate::hex::hex(&sha2::Sha256::digest(canonical.as_bytes()))
    }
}

/// A tool request that passed parse, authenticate and authorize.
pub struct Authorized<'p> {
    pub(crate) permit: Permit<'p>,
    pub gate: Gate,
    /// The declared body length, already checked against the policy;
    /// `None` (no `Content-Length`) means the body is counted while it streams.
    pub(crate) declared_length: Option<u64>,
    pub(crate) body_limit: u64,
}

/// Parse, authenticate and authorize a tool request.
pub fn tool<'p>(policy: &'p Policy, keys: &KeyRing, req: &ToolRequest<'_>, now: u64, audit: &mut AuditRecord) -> Result<Authorized<'p>, Error> {
    // parse
    audit.tool = Some(req.tool.chars().take(64).collect());
    let path = path::normalize(req.rest).map_err(Error::InvalidPath)?;
    audit.path = Some(path.encoded());

    // authenticate
    let tool = policy.tool(req.tool);
    let slots = tool.map(|t| &t.session_token);
    // An AWS tool's `Authorization` is the sandbox's SigV4 signature
    // (verified by `inject::aws`), not a place for the token, which its SDK
    // sends as its session token. A presigned URL is refused outright: it
    // carries its token where no SDK is told to put it.
    let signed_headers: Vec<(String, String)>;
    let headers = match tool.and_then(|t| t.aws()) {
        Some(_) if crate::sigv4::is_presigned(req.query.unwrap_or_default()) => return Err(Error::SigV4(crate::error::SigV4Error::Presigned)),
        Some(_) => {
            signed_headers = req.headers.iter().filter(|(n, _)| !n.eq_ignore_ascii_case("authorization")).cloned().collect();
            &signed_headers[..]
        }
        None => req.headers,
    };
    let session = authenticate(policy, keys, headers, req.query, slots, now, audit)?;

    // authorize (the method-override parameters of the query included)
    let permit = authorize_request(policy, session, req.tool, req.method, path, req.query)?;
    audit.rule = permit.rule().map(|r| r.path.as_str().to_string());
    if permit.path().has_params() && !permit.tool().allow_path_params {
        return Err(Error::InvalidPath(PathError::PathParameter));
    }
    let body_limit = policy.limits.max_request_body_bytes;
    let declared_length = declared_length(req.headers, body_limit)?;
    let mut gate = Gate::new(policy, permit.session(), Some(permit.tool()), permit.path().encoded());
    gate.level = permit.rule().map(|r| r.level);
    gate.approval = permit.approval();
    gate.approval_wait_s = permit.rule().map_or(0, |r| r.approval_wait_s);
    gate.query = crate::authenticate::without_token_params(req.query, Some(&permit.tool().session_token));
    Ok(Authorized { permit, gate, declared_length, body_limit })
}

/// An MCP request that passed parse, authenticate and authorize: the
/// server, and for a POST the message.
pub struct McpAuthorized<'p> {
    pub(crate) permit: Permit<'p>,
    pub gate: Gate,
    /// The decision on the POSTed message (`None` for GET and DELETE).
    pub(crate) verdict: Option<mcp::Verdict>,
    pub granted: Level,
}

/// Parse, authenticate and authorize an MCP request: the server, then the
/// message (a refused message is a verdict, answered after admission).
pub fn mcp<'p>(policy: &'p Policy, keys: &KeyRing, req: &McpRequest<'_>, now: u64, audit: &mut AuditRecord) -> Result<McpAuthorized<'p>, Error> {
    // parse
    audit.tool = Some(req.server.chars().take(64).collect());

    // authenticate
    let slots = policy.tool(req.server).map(|t| &t.session_token);
    let session = authenticate(policy, keys, req.headers, None, slots, now, audit)?;

    // authorize: the server, then the message
    let (permit, granted) = authorize_mcp(policy, session, req.server, req.method)?;
    let mut gate = Gate::new(policy, permit.session(), Some(permit.tool()), permit.path().encoded());
    let Some(rules) = permit.tool().mcp.as_ref() else {
        return Err(Error::ToolNotAllowed { tool: req.server.to_string() });
    };
    let verdict = match req.body {
        Some(body) => {
            // A charset the origin would honour and serde would not
            // (utf-7, latin1) means the sandbox meant other text.
            mcp::check_content_type(header(req.headers, "content-type")).map_err(Error::McpInvalid)?;
            let verdict = mcp::inspect_request(body, req.headers, rules, granted).map_err(Error::McpInvalid)?;
            let verdict = gate_call(verdict, rules, keys, req.server, &mut gate, now);
            let call = verdict.call();
            audit.mcp_era = Some(call.era.as_str());
            audit.mcp_method = call.method.clone();
            audit.mcp_target = call.target.clone();
            audit.mcp_args = (!call.arg_names.is_empty()).then(|| call.arg_names.clone());
            Some(verdict)
        }
        None => {
            // 2026-07-28 has no GET stream and no session to DELETE.
            let era = mcp::era::header_era(req.headers);
            audit.mcp_era = Some(era.as_str());
            if era == mcp::Era::Stateless {
                return Err(Error::MethodNotAllowed);
            }
            None
        }
    };
    Ok(McpAuthorized { permit, gate, verdict, granted })
}

/// A forwarded call to a gated or deduplicated MCP tool: Airlock's own
/// `requestState` checked (a state that does not check out, or one for a
/// tool Airlock does not gate, refuses the call), and the gate told what to
/// bind, hold and deduplicate.
fn gate_call(verdict: mcp::Verdict, rules: &mcp::McpRules, keys: &KeyRing, server: &str, gate: &mut Gate, now: u64) -> mcp::Verdict {
    let mcp::Verdict::Forward { mut call, body } = verdict else { return verdict };
    let (Some(bound), Some(tool)) = (&mut call.bound, &call.target) else {
        return mcp::Verdict::Forward { call, body };
    };
    let cfg = rules.gate(tool).unwrap_or_default();
    if let Some(state) = &bound.state {
        let at = mcp::gate::CallRef { session_id: &gate.session_id, server, tool, params: &bound.params };
        match mcp::gate::verify_state(keys, state, &at, now) {
            Ok(id) if cfg.approval => gate.presented = Some(id),
            checked => {
                let reason = checked.err().unwrap_or("mcp_state_invalid");
                let (response, status) = mcp::gate::state_refusal(&call);
                return mcp::Verdict::Refuse { call, response, reason, status };
            }
        }
    }
    gate.approval = cfg.approval;
    gate.approval_wait_s = cfg.wait_s;
    gate.dedupe_s = cfg.dedupe_s;
    gate.path = tool.clone();
    // The params move to the gate: what admission binds and the answer names.
    gate.call = Some(("tools/call".into(), std::mem::take(&mut bound.params)));
    mcp::Verdict::Forward { call, body }
}

/// An egress request that passed parse, authenticate and authorize.
pub struct EgressAuthorized {
    pub(crate) permit: EgressPermit,
    pub(crate) method: Method,
    pub(crate) path: NormalizedPath,
    pub gate: Gate,
    pub(crate) declared_length: Option<u64>,
    pub(crate) body_limit: u64,
}

/// Parse, authenticate and authorize an egress request. `own_host` is the
/// worker's own hostname, which is never a destination.
pub fn egress(
    policy: &Policy,
    keys: &KeyRing,
    req: &EgressRequest<'_>,
    now: u64,
    audit: &mut AuditRecord,
    own_host: Option<&str>,
) -> Result<EgressAuthorized, Error> {
    // parse: malformed hosts are refused here; a well-formed host in a
    // never-reachable class (an IP literal) is refused after authentication,
    // so the denial is attributed to its session in the audit record.
    let parsed = egress::parse_authority(req.authority);
    if let Err(e) = &parsed {
        if !e.is_forbidden_class() {
            return Err(e.clone().into_error(req.authority));
        }
    }
    let path = path::normalize(req.rest).map_err(Error::InvalidPath)?;
    if path.has_params() {
        return Err(Error::InvalidPath(PathError::PathParameter));
    }
    audit.path = Some(path.encoded());

    // authenticate
    let session = authenticate(policy, keys, req.headers, None, None, now, audit)?;
    let dest = parsed.map_err(|e| e.into_error(req.authority))?;
    audit.host = Some(dest.host.clone());

    // authorize
    let method = Method::parse(req.method).ok_or_else(|| Error::RouteNotAllowed { tool: "egress".into(), method: req.method.to_string() })?;
    let gate = Gate::new(policy, &session, None, path.encoded());
    let permit = egress::authorize(&policy.egress, session, &dest, own_host)?;
    let body_limit = policy.limits.max_request_body_bytes;
    let declared_length = declared_length(req.headers, body_limit)?;
    Ok(EgressAuthorized { permit, method, path, gate, declared_length, body_limit })
}

/// Proof that a request passed authentication and authorization.
#[derive(Debug)]
pub struct Permit<'p> {
    session: VerifiedSession,
    tool: &'p Tool,
    /// The HTTP rule that allowed the request; `None` for an MCP server,
    /// where the decision is taken per JSON-RPC message.
    rule: Option<&'p Rule>,
    /// Whether any rule that allowed the request (the real method's or the
    /// override's) asks for a human approval.
    approval: bool,
    method: Method,
    path: NormalizedPath,
}

impl<'p> Permit<'p> {
    pub fn session(&self) -> &VerifiedSession {
        &self.session
    }
    pub fn tool(&self) -> &'p Tool {
        self.tool
    }
    /// The rule with the highest level among those that allowed the request.
    pub fn rule(&self) -> Option<&'p Rule> {
        self.rule
    }
    pub fn approval(&self) -> bool {
        self.approval
    }
    pub fn method(&self) -> Method {
        self.method
    }
    pub fn path(&self) -> &NormalizedPath {
        &self.path
    }
}

/// Decides whether `session` may send `method` to `path` of `tool_name`.
///
/// Unknown tools and tools outside the session's scope fail identically, so
/// a sandbox cannot probe which tools exist.
pub fn authorize<'p>(policy: &'p Policy, session: VerifiedSession, tool_name: &str, method: &str, path: NormalizedPath) -> Result<Permit<'p>, Error> {
    authorize_request(policy, session, tool_name, method, path, None)
}

/// [`authorize`] for a request with its raw `query` (without `?`): a
/// method-override parameter in it is refused unless the tool has
/// `allow_method_override`, and then each override method must be allowed
/// like the real one; the permit carries the highest level needed.
pub fn authorize_request<'p>(
    policy: &'p Policy,
    session: VerifiedSession,
    tool_name: &str,
    method: &str,
    path: NormalizedPath,
    query: Option<&str>,
) -> Result<Permit<'p>, Error> {
    let (Some(tool), Some(granted)) = (policy.tool(tool_name), session.level_for(tool_name)) else {
        return Err(Error::ToolNotAllowed { tool: tool_name.to_string() });
    };
    let pairs = query_pairs(query);
    let overrides = method_overrides(&pairs);
    if !overrides.is_empty() && !tool.allow_method_override {
        return Err(Error::MethodOverride { tool: tool_name.to_string() });
    }
    let real = Method::parse(method).ok_or_else(|| Error::RouteNotAllowed { tool: tool_name.to_string(), method: method.to_string() })?;
    let mut chosen = allowing_rule(tool, granted, real, path.segments(), &pairs)?;
    let mut approval = chosen.approval;
    for value in overrides {
        // The value is not named in the error: it is the sandbox's text.
        let overridden = value.ok_or_else(|| Error::RouteNotAllowed { tool: tool_name.to_string(), method: "(unrecognized method override)".into() })?;
        let rule = allowing_rule(tool, granted, overridden, path.segments(), &pairs)?;
        approval |= rule.approval;
        if rule.level > chosen.level {
            chosen = rule;
        }
    }
    Ok(Permit { session, tool, rule: Some(chosen), approval, method: real, path })
}

/// The first rule that allows `method` on `path` at the `granted` level.
fn allowing_rule<'p>(tool: &'p Tool, granted: Level, method: Method, path: &[String], query: &[(Vec<u8>, Vec<u8>)]) -> Result<&'p Rule, Error> {
    let mut needed = None;
    for rule in tool.rules.iter().filter(|r| r.matches(method, path, query)) {
        if rule.level <= granted {
            return Ok(rule);
        }
        needed = Some(needed.map_or(rule.level, |n: Level| n.min(rule.level)));
    }
    match needed {
        Some(required) => Err(Error::LevelInsufficient { tool: tool.name.clone(), required, granted }),
        None => Err(Error::RouteNotAllowed { tool: tool.name.clone(), method: method.as_str().to_string() }),
    }
}

/// The method-override parameters among a query's decoded pairs
/// ([`query_pairs`] splits on `;` as well as `&`, as older Rack and Python
/// parsers do). Each value is the method it names (upper-cased, as
/// frameworks do before using it), or `None` when it names none Airlock
/// knows.
fn method_overrides(pairs: &[(Vec<u8>, Vec<u8>)]) -> Vec<Option<Method>> {
    pairs
        .iter()
        .filter(|(key, _)| is_method_override_name(key))
        .map(|(_, value)| {
            let value = String::from_utf8_lossy(value);
            let upper: String = value.trim().chars().map(|c| if c == '\u{131}' { 'I' } else { c.to_ascii_uppercase() }).collect();
            Method::parse(&upper)
        })
        .collect()
}

/// Decides whether `session` may talk to the MCP server `server` at all
/// (POST messages, GET its event stream, DELETE its session). What each
/// message may do is decided by [`crate::mcp::inspect`] with the returned
/// level. Unknown servers, servers outside the scope and plain tools fail
/// identically.
pub fn authorize_mcp<'p>(policy: &'p Policy, session: VerifiedSession, server: &str, method: &str) -> Result<(Permit<'p>, Level), Error> {
    let (Some(tool), Some(granted)) = (policy.tool(server).filter(|t| t.mcp.is_some()), session.level_for(server)) else {
        return Err(Error::ToolNotAllowed { tool: server.to_string() });
    };
    let method = match method {
        "POST" => Method::Post,
        "GET" => Method::Get,
        "DELETE" => Method::Delete,
        _ => return Err(Error::MethodNotAllowed),
    };
    let path = crate::path::normalize("/").map_err(Error::InvalidPath)?;
    Ok((Permit { session, tool, rule: None, approval: false, method, path }, granted))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::path::normalize;
    use crate::token::{sign, verify, Claims, KeyRing};

    const POLICY: &str = r#"{
      "version": 1, "audience": "t",
      "tools": {
        "gh": { "origin": "https://api.github.com", "rules": [
          { "methods": ["GET", "HEAD"], "path": "/repos/*/*/**", "level": "read" },
          { "methods": ["POST", "PATCH"], "path": "/repos/*/*/issues/**", "level": "write" },
          { "methods": ["DELETE"], "path": "/repos/*/*", "level": "admin" }
        ] },
        "other": { "origin": "https://example.com", "rules": [
          { "methods": ["GET"], "path": "/**", "level": "read" }
        ] }
      }
    }"#;

    fn session(scope: &[(&str, Level)]) -> VerifiedSession {
        let ring = KeyRing::parse("k:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap();
        let claims = Claims {
            sid: "s".into(),
            agt: "a".into(),
            usr: "u".into(),
            scp: scope.iter().map(|(t, l)| (t.to_string(), *l)).collect(),
            iat: 10,
            exp: 100,
            aud: "t".into(),
            egr: false,
            rps: Default::default(),
        };
        verify(&sign(&claims, &ring), &ring, "t", 50).unwrap()
    }

    /// Scope level for `gh`, tool, method, path, and the expected rule level
    /// or error code.
    type Row = (Level, &'static str, &'static str, &'static str, Result<Level, &'static str>);

    #[test]
    fn decision_table() {
        let policy = Policy::parse(POLICY).unwrap();
        use Level::*;
        let table: &[Row] = &[
            (Read, "gh", "GET", "/repos/o/r", Ok(Read)),
            (Read, "gh", "HEAD", "/repos/o/r/pulls/1", Ok(Read)),
            (Read, "gh", "POST", "/repos/o/r/issues", Err("level_insufficient")),
            (Write, "gh", "POST", "/repos/o/r/issues", Ok(Write)),
            (Write, "gh", "PATCH", "/repos/o/r/issues/7", Ok(Write)),
            (Write, "gh", "DELETE", "/repos/o/r", Err("level_insufficient")),
            (Admin, "gh", "DELETE", "/repos/o/r", Ok(Admin)),
            (Admin, "gh", "GET", "/repos/o/r", Ok(Read)),
            (Admin, "gh", "PUT", "/repos/o/r", Err("route_not_allowed")),
            (Admin, "gh", "GET", "/user", Err("route_not_allowed")),
            (Admin, "gh", "GET", "/repos/o", Err("route_not_allowed")),
            (Admin, "gh", "DELETE", "/repos/o/r/x", Err("route_not_allowed")),
            (Admin, "gh", "TRACE", "/repos/o/r", Err("route_not_allowed")),
            (Admin, "gh", "get", "/repos/o/r", Err("route_not_allowed")),
            (Admin, "gh", "CONNECT", "/repos/o/r", Err("route_not_allowed")),
            (Admin, "other", "GET", "/x", Err("tool_not_allowed")),
            (Admin, "missing", "GET", "/x", Err("tool_not_allowed")),
        ];
        for (lvl, tool, method, path, want) in table {
            let s = session(&[("gh", *lvl), ("missing", Admin)]);
            let got = authorize(&policy, s, tool, method, normalize(path).unwrap());
            match (got, want) {
                (Ok(p), Ok(l)) => {
                    assert_eq!(p.rule().map(|r| r.level), Some(*l), "{lvl:?} {tool} {method} {path}");
                    assert_eq!(p.tool().name, *tool);
                    assert_eq!(p.path().encoded(), *path);
                }
                (Err(e), Err(code)) => assert_eq!(e.code(), *code, "{lvl:?} {tool} {method} {path}"),
                (got, want) => panic!("{lvl:?} {tool} {method} {path}: got {got:?}, want {want:?}"),
            }
        }
    }

    #[test]
    fn unknown_and_unscoped_tools_are_indistinguishable() {
        let policy = Policy::parse(POLICY).unwrap();
        let a = authorize(&policy, session(&[("gh", Level::Read)]), "other", "GET", normalize("/").unwrap()).unwrap_err();
        let b = authorize(&policy, session(&[("gh", Level::Read)]), "nonexistent", "GET", normalize("/").unwrap()).unwrap_err();
        assert_eq!(a.wire_body(), b.wire_body());
        assert_eq!(a.status(), b.status());
    }

    #[test]
    fn method_override_needs_the_option_and_both_methods() {
        let mut v: serde_json::Value = serde_json::from_str(POLICY).unwrap();
        v["tools"]["gh"]["rules"][1]["approval"] = serde_json::json!(true);
        v["tools"]["other"]["allow_method_override"] = serde_json::json!(true);
        v["tools"]["other"]["rules"] = serde_json::json!([
            { "methods": ["GET"], "path": "/**", "level": "read" },
            { "methods": ["POST"], "path": "/**", "level": "write" },
            { "methods": ["PUT"], "path": "/**", "level": "write", "approval": true },
            { "methods": ["DELETE"], "path": "/**", "level": "admin" }
        ]);
        let policy = Policy::parse(&v.to_string()).unwrap();
        use Level::*;
        // Rows as in `decision_table`, with the query in place of the path
        // (`/repos/o/r`) and the scope level given to both tools.
        let table: &[Row] = &[
            (Admin, "gh", "GET", "_method=DELETE", Err("method_override_not_allowed")),
            (Admin, "gh", "GET", "a=1&_METHOD=get", Err("method_override_not_allowed")),
            (Admin, "gh", "GET", "%5Fmethod=DELETE", Err("method_override_not_allowed")),
            (Admin, "gh", "GET", "a=1;x-http-method-override=PUT", Err("method_override_not_allowed")),
            (Admin, "gh", "GET", "+_method=DELETE", Err("method_override_not_allowed")),
            (Admin, "gh", "GET", "_method", Err("method_override_not_allowed")),
            (Admin, "gh", "GET", "method=flickr.photos.search", Ok(Read)),
            (Admin, "gh", "GET", "q=_method%3DDELETE", Ok(Read)),
            (Write, "other", "POST", "_method=DELETE", Err("level_insufficient")),
            (Admin, "other", "POST", "_method=DELETE", Ok(Admin)),
            (Admin, "other", "POST", "_method=delete", Ok(Admin)),
            (Write, "other", "POST", "_method=GET", Ok(Write)),
            (Read, "other", "GET", "_method=POST", Err("level_insufficient")),
            (Write, "other", "POST", "_method=TRACE", Err("route_not_allowed")),
            (Write, "other", "POST", "_method=", Err("route_not_allowed")),
            (Admin, "other", "POST", "_method=PATCH", Err("route_not_allowed")),
            (Write, "other", "POST", "_method=GET&_method=DELETE", Err("level_insufficient")),
            (Admin, "other", "HEAD", "_method=GET", Err("route_not_allowed")),
        ];
        for (lvl, tool, method, query, want) in table {
            let s = session(&[("gh", *lvl), ("other", *lvl)]);
            let got = authorize_request(&policy, s, tool, method, normalize("/repos/o/r").unwrap(), Some(query));
            match (got, want) {
                (Ok(p), Ok(l)) => {
                    assert_eq!(p.rule().map(|r| r.level), Some(*l), "{lvl:?} {tool} {method} ?{query}");
                    assert_eq!(p.method().as_str(), *method, "the real method is what is sent");
                }
                (Err(e), Err(code)) => assert_eq!(e.code(), *code, "{lvl:?} {tool} {method} ?{query}"),
                (got, want) => panic!("{lvl:?} {tool} {method} ?{query}: got {got:?}, want {want:?}"),
            }
        }
        // An override whose rule asks for approval makes the request need one.
        let p = authorize_request(&policy, session(&[("other", Write)]), "other", "POST", normalize("/x").unwrap(), Some("_method=PUT")).unwrap();
        assert!(p.approval());
        let p = authorize_request(&policy, session(&[("other", Write)]), "other", "POST", normalize("/x").unwrap(), None).unwrap();
        assert!(!p.approval());
        // The refusal never names the sandbox's override value.
        let e = authorize_request(&policy, session(&[("other", Admin)]), "other", "POST", normalize("/x").unwrap(), Some("_method=secret-value")).unwrap_err();
        assert!(!e.detail().contains("secret-value") && !e.wire_body().contains("secret-value"));
    }

    #[test]
    fn level_error_names_the_lowest_matching_level() {
        let policy = Policy::parse(POLICY).unwrap();
        let e = authorize(&policy, session(&[("gh", Level::Read)]), "gh", "PATCH", normalize("/repos/o/r/issues/1").unwrap()).unwrap_err();
        assert_eq!(e, Error::LevelInsufficient { tool: "gh".into(), required: Level::Write, granted: Level::Read });
    }
}
