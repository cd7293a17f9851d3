//! The edge adapter: the only code that touches the Workers runtime.
//!
//! It turns the platform request into plain data once, runs the pipeline
//! phases from the core modules in order, performs the I/O (secrets,
//! bindings, fetch, clock, randomness) and writes exactly one audit record
//! per request. It decides nothing itself.
//!
//! Must never: return an `Err` to the runtime (its text would reach the
//! client), panic on input, log a secret, or buffer a body it does not have
//! to: only bodies that must be hashed (proofs, idempotency keys, approvals,
//! capped by the policy) or stored for replay (capped) are read whole.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use futures_util::future::{select, Either};
use futures_util::stream::{self, StreamExt};
use wasm_bindgen::JsCast;
use worker::wasm_bindgen_futures::JsFuture;
use worker::{console_log, event, ByteStream, Context, Date, Delay, Env, Fetch, Headers, Request, Response, ResponseBody};

mod gate;
mod state;

use gate::{Gated, Received};

use crate::audit::AuditRecord;
use crate::egress;
use crate::mcp;
use crate::error::Error;
use crate::inject::{Outbound, PreparedCredential};
use crate::pipeline::{self, EgressRequest, McpRequest, ToolRequest};
use crate::policy::{Limits, Policy, Target};
use crate::redact::{filter_response_headers, tool_location, BodyFilter, Redactor};
use crate::respond;
use crate::route::{route, split_url, url_host, Route};
use crate::secret::Secret;
use crate::hex::hex;
use crate::mint;
use crate::state::approvals::Decided;
use crate::token::KeyRing;

const POLICY_VAR: &str = "AIRLOCK_POLICY";
const ADMIN_KEY_SECRET: &str = "AIRLOCK_ADMIN_KEY";
const SIGNING_KEYS_SECRET: &str = "AIRLOCK_SIGNING_KEYS";
const REQUEST_ID_HEADER: &str = "x-airlock-request-id";
const UPSTREAM_STATUS_HEADER: &str = "x-airlock-upstream-status";

type Cached<T> = RefCell<Option<(String, Result<Rc<T>, Error>)>>;

thread_local! {
    // Parsed once per isolate; re-parsed only if the raw value changes.
    static POLICY: Cached<Policy> = const { RefCell::new(None) };
    static KEYS: Cached<KeyRing> = const { RefCell::new(None) };
}

fn cached<T>(cell: &'static std::thread::LocalKey<Cached<T>>, raw: String, parse: impl FnOnce(&str) -> Result<T, Error>) -> Result<Rc<T>, Error> {
    cell.with(|c| {
        if let Some((seen, value)) = c.borrow().as_ref() {
            if *seen == raw {
                return value.clone();
            }
        }
        let value = parse(&raw).map(Rc::new);
        *c.borrow_mut() = Some((raw, value.clone()));
        value
    })
}

fn load_policy(env: &Env) -> Result<Rc<Policy>, Error> {
    let raw = match env.var(POLICY_VAR) {
        Ok(v) => v.to_string(),
        // A TOML table in [vars] arrives as an object, not a string.
        Err(_) => match env.object_var::<serde_json::Value>(POLICY_VAR) {
            Ok(v) => v.to_string(),
            Err(_) => return Err(Error::PolicyInvalid(format!("{POLICY_VAR} is not set"))),
        },
    };
    cached(&POLICY, raw, |s| Policy::parse(s).map_err(|e| Error::PolicyInvalid(e.to_string())))
}

fn load_keys(env: &Env) -> Result<Rc<KeyRing>, Error> {
    let raw = env
        .var(SIGNING_KEYS_SECRET)
        .map_err(|_| Error::Misconfigured(format!("secret {SIGNING_KEYS_SECRET} is not set")))?
        .to_string();
    cached(&KEYS, raw, |s| KeyRing::parse(s).map_err(|e| Error::Misconfigured(format!("{SIGNING_KEYS_SECRET}: {e}"))))
}

thread_local! {
    // Credentials with their redaction encodings, per secret name; rebuilt
    // when the platform hands out a different value (rotation).
    static CREDENTIALS: RefCell<Vec<(String, String, Rc<PreparedCredential>)>> = const { RefCell::new(Vec::new()) };
}

fn read_credential(env: &Env, name: &str) -> Option<Rc<PreparedCredential>> {
    let value = env.var(name).ok()?.to_string();
    CREDENTIALS.with(|c| {
        let mut cache = c.borrow_mut();
        if let Some((_, _, prepared)) = cache.iter().find(|(n, v, _)| n == name && *v == value) {
            return Some(prepared.clone());
        }
        cache.retain(|(n, _, _)| n != name);
        let prepared = Rc::new(PreparedCredential::new(Secret::from_string(value.clone())));
        cache.push((name.to_string(), value, prepared.clone()));
        Some(prepared)
    })
}

fn read_secret(env: &Env, name: &str) -> Result<Secret, Error> {
    env.var(name)
        .map(|v| Secret::from_string(v.to_string()))
        .map_err(|_| Error::Misconfigured(format!("secret {name} is not set")))
}

pub(crate) fn random_bytes<const N: usize>() -> Result<[u8; N], Error> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|_| Error::Internal("CSPRNG unavailable".into()))?;
    Ok(buf)
}


fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

fn json_response(status: u16, body: String) -> Response {
    let headers = Headers::new();
    let _ = headers.set("content-type", "application/json");
    let _ = headers.set("cache-control", "no-store");
    Response::builder().with_status(status).with_headers(headers).fixed(body.into_bytes())
}

/// The headers of an error answer beyond its JSON content type.
fn error_headers(error: &Error) -> Vec<(String, String)> {
    let mut out = Vec::new();
    match error {
        Error::UpstreamError { status, retry_after } => {
            out.push((UPSTREAM_STATUS_HEADER.to_string(), status.to_string()));
            if let Some(value) = retry_after {
                out.push(("retry-after".to_string(), value.clone()));
            }
        }
        Error::RateLimited { retry_after_s, .. } => out.push(("retry-after".to_string(), (*retry_after_s).min(86_400).to_string())),
        Error::IdempotencyNotStored { status } => out.push(("x-airlock-original-status".to_string(), status.to_string())),
        Error::ApprovalRequired { id } => out.push(("x-airlock-approval-id".to_string(), id.clone())),
        _ => {}
    }
    out
}

fn error_response(error: &Error) -> Response {
    let response = json_response(error.status(), error.wire_body());
    for (name, value) in error_headers(error) {
        let _ = response.headers().set(&name, &value);
    }
    response
}

/// The request's audit record, written exactly once: when the last holder
/// lets go of it. That is the end of `fetch` for a plain answer, and the
/// end of the body stream (complete, failed, cut off or cancelled) for a
/// streamed one.
struct AuditSlot {
    record: Option<AuditRecord>,
    started: u64,
    bytes_out: u64,
    stream: Option<&'static str>,
    /// The body stream reached its end (complete, failed or cut off).
    ended: bool,
}

impl AuditSlot {
    fn write(&mut self) {
        if let Some(mut record) = self.record.take() {
            if self.stream.is_some() {
                record.bytes_out = Some(self.bytes_out);
                record.stream = self.stream;
            }
            record.finish(Date::now().as_millis(), self.started);
            console_log!("{}", record.to_json());
        }
    }
}

impl Drop for AuditSlot {
    fn drop(&mut self) {
        self.write();
    }
}

/// Keeps the request alive (`waitUntil`) until its audit record is written.
/// A body stream the client abandoned may never be dropped by the runtime;
/// when the stream makes no progress for longer than the idle timeout (which
/// would have ended a stalled origin), the record is written as `cancelled`.
/// Holds the slot weakly, so it never delays the normal write.
async fn audit_watchdog(slot: std::rc::Weak<RefCell<AuditSlot>>, idle_ms: u64) {
    let tick = (idle_ms / 2).clamp(250, 5_000);
    let mut last = u64::MAX;
    let mut still = 0;
    loop {
        Delay::from(Duration::from_millis(tick)).await;
        let Some(slot) = slot.upgrade() else { return };
        let mut slot = slot.borrow_mut();
        if slot.record.is_none() && slot.ended {
            return;
        }
        if slot.ended {
            slot.write();
            return;
        }
        if slot.bytes_out == last {
            still += tick;
            if still > idle_ms + tick {
                slot.stream = Some("cancelled");
                slot.ended = true;
                slot.write();
                return;
            }
        } else {
            last = slot.bytes_out;
            still = 0;
        }
    }
}

type SharedAudit = Rc<RefCell<AuditSlot>>;

#[event(fetch)]
pub async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let started = Date::now().as_millis();
    let method = req.inner().method();
    let (request_id, id_error) = match random_bytes::<16>() {
        Ok(b) => (hex(&b), None),
        Err(e) => (format!("t{started}"), Some(e)),
    };
    let slot: SharedAudit = Rc::new(RefCell::new(AuditSlot { record: None, started, bytes_out: 0, stream: None, ended: false }));
    let mut audit = AuditRecord::new(request_id.clone(), &method, started);
    let result = match id_error {
        Some(e) => Err(e),
        None => handle(req, &env, &ctx, &mut audit, &slot, started).await,
    };
    let mut response = match result {
        Ok(response) => response,
        Err(error) => {
            audit.fail(&error);
            error_response(&error)
        }
    };
    let _ = response.headers_mut().set(REQUEST_ID_HEADER, &request_id);
    slot.borrow_mut().record = Some(audit);
    // Dropping `slot` here writes the record unless a body stream holds it.
    Ok(response)
}

/// Parse, then dispatch by route.
async fn handle(mut req: Request, env: &Env, ctx: &Context, audit: &mut AuditRecord, slot: &SharedAudit, now_ms: u64) -> Result<Response, Error> {
    // An invalid policy refuses every route, health included: nothing runs
    // on a configuration that was not fully understood.
    let policy = load_policy(env)?;
    let url = req.inner().url();
    let headers: Vec<(String, String)> = req.headers().entries().collect();
    pipeline::check_sizes(&url, &headers)?;
    let (raw_path, query) = split_url(&url).ok_or_else(|| Error::InvalidRequest("unparseable request URL".into()))?;
    let method = req.inner().method();
    match route(raw_path) {
        Route::Health => {
            audit.route = "health";
            if !matches!(method.as_str(), "GET" | "HEAD") {
                return Err(Error::MethodNotAllowed);
            }
            load_keys(env)?;
            audit.allow(None);
            Ok(json_response(200, r#"{"status":"ok"}"#.into()))
        }
        Route::Sessions => {
            audit.route = "mint";
            mint_session(req, env, &policy, audit, now_ms / 1000).await
        }
        Route::Session { id } => {
            audit.route = "session";
            audit.session_id = Some(id.to_string());
            admin(&req, env)?;
            let command = match method.as_str() {
                "GET" => state::Command::Get,
                "DELETE" => state::Command::Revoke,
                _ => return Err(Error::MethodNotAllowed),
            };
            match state::call(env, &gate::session_object(id), &command).await? {
                state::Reply::Session { session: Some(view) } => {
                    audit.allow(None);
                    Ok(json_response(200, to_json(&view)?))
                }
                state::Reply::Session { session: None } => Err(Error::SessionNotFound),
                _ => Err(Error::StateUnavailable("state object: unexpected answer".into())),
            }
        }
        Route::Approvals => {
            audit.route = "approvals";
            admin(&req, env)?;
            if method != "GET" {
                return Err(Error::MethodNotAllowed);
            }
            match state::call(env, gate::APPROVALS_OBJECT, &state::Command::Pending).await? {
                state::Reply::Pending { approvals } => {
                    audit.allow(None);
                    Ok(json_response(200, to_json(&serde_json::json!({ "approvals": approvals }))?))
                }
                _ => Err(Error::StateUnavailable("state object: unexpected answer".into())),
            }
        }
        Route::Approval { id, action } => {
            audit.route = "approvals";
            audit.approval_id = Some(id.to_string());
            admin(&req, env)?;
            let command = match (method.as_str(), action) {
                ("GET", None) => state::Command::Approval { id: id.to_string() },
                ("POST", Some(approve)) => {
                    let body = read_capped(&mut req, 4096).await?;
                    let approver = mint::approver(&body)?;
                    audit.approved_by = Some(approver.clone());
                    state::Command::Decide { id: id.to_string(), approve, approver }
                }
                _ => return Err(Error::MethodNotAllowed),
            };
            let approval = match state::call(env, gate::APPROVALS_OBJECT, &command).await? {
                state::Reply::Approval { approval: Some(a) } | state::Reply::Decided { decided: Decided::Done(a) } => a,
                state::Reply::Approval { approval: None } | state::Reply::Decided { decided: Decided::NotFound } => return Err(Error::ApprovalNotFound),
                state::Reply::Decided { decided: Decided::AlreadyDecided(a) } => {
                    return Err(Error::ApprovalDecided { status: a.status.as_str() });
                }
                _ => return Err(Error::StateUnavailable("state object: unexpected answer".into())),
            };
            audit.session_id = Some(approval.session_id.clone());
            audit.allow(None);
            Ok(json_response(200, to_json(&approval)?))
        }
        Route::Tool { tool, rest } => {
            audit.route = "tool";
            let keys = load_keys(env)?;
            let tool_request = ToolRequest { tool, rest, method: &method, query, headers: &headers };
            let mut outbound = pipeline::prepare(&policy, &keys, &tool_request, now_ms / 1000, audit, |name| read_credential(env, name))?;
            let received = Received { method: &method, raw_path, query: query.unwrap_or(""), headers: &headers };
            let (body, claim) = match gate::gate(&mut req, env, &policy, &keys, &outbound, &received, None, audit, now_ms).await? {
                Gated::Replay(answer) => return Ok(replayed(answer, audit)),
                Gated::Pass { body, claim } => (body, claim),
            };
            let redactor = Redactor::shared(std::mem::take(&mut outbound.redactions));
            let Some(tool) = policy.tool(tool) else {
                return Err(Error::Internal("permitted tool missing from policy".into()));
            };
            let source = match &body {
                Some(bytes) => Body::Bytes(bytes),
                None => Body::Inbound(&req),
            };
            let rewrite = |location: &str| Some(tool_location(location, &outbound.url, tool));
            let head = match forward(source, env, &outbound, &redactor, policy.limits.upstream_timeout_ms).await {
                Ok(upstream) => response_head(upstream, &redactor, HeadRules::tool(tool), rewrite, audit),
                Err(e) => Err(e),
            };
            match (head, claim) {
                (Ok((status, headers, upstream)), None) => {
                    finish_response(upstream, status, headers, &outbound, Box::new(redactor), &policy.limits, audit, slot, ctx).await
                }
                (Ok((status, headers, upstream)), Some(claim)) => {
                    let parts = Parts { outbound: &outbound, limits: &policy.limits, slot, ctx };
                    finish_idempotent(upstream, status, headers, Box::new(redactor), parts, claim, env, audit).await
                }
                (Err(e), Some(claim)) => Err(store_error(claim, env, e, audit).await),
                (Err(e), None) => Err(e),
            }
        }
        Route::Egress { authority, rest } => {
            audit.route = "egress";
            let keys = load_keys(env)?;
            let own_host = url_host(&url);
            let egress_request = EgressRequest { authority, rest, method: &method, query, headers: &headers };
            let outbound = pipeline::prepare_egress(&policy, &keys, &egress_request, now_ms / 1000, audit, own_host.as_deref())?;
            let received = Received { method: &method, raw_path, query: query.unwrap_or(""), headers: &headers };
            let body = match gate::gate(&mut req, env, &policy, &keys, &outbound, &received, None, audit, now_ms).await? {
                Gated::Pass { body, .. } => body,
                Gated::Replay(_) => return Err(Error::Internal("idempotent replay on the egress route".into())),
            };
            let source = match &body {
                Some(bytes) => Body::Bytes(bytes),
                None => Body::Inbound(&req),
            };
            let redactor = Redactor::new(Vec::new());
            let upstream = forward(source, env, &outbound, &redactor, policy.limits.upstream_timeout_ms).await?;
            // Egress answers never carry cookies back, and redirects are
            // rewritten to the egress route or dropped.
            let rewrite = |location: &str| egress::rewrite_location(location, &outbound.url, &policy.egress, own_host.as_deref());
            let rules = HeadRules { drop_cookies: true, inspect: false, credentialed: false, allow_range: true };
            let (status, headers, upstream) = response_head(upstream, &redactor, rules, rewrite, audit)?;
            finish_response(upstream, status, headers, &outbound, Box::new(redactor), &policy.limits, audit, slot, ctx).await
        }
        Route::Mcp { server } => {
            audit.route = "mcp";
            let keys = load_keys(env)?;
            let body = match method.as_str() {
                "POST" => Some(read_capped(&mut req, mcp::MAX_MESSAGE).await.map_err(|_| Error::McpInvalid(mcp::McpError::TooLarge))?),
                _ => None,
            };
            let mcp_request = McpRequest { server, method: &method, headers: &headers, body: body.as_deref() };
            let prepared = pipeline::prepare_mcp(&policy, &keys, &mcp_request, now_ms / 1000, audit, |name| read_credential(env, name))?;
            let received = Received { method: &method, raw_path, query: query.unwrap_or(""), headers: &headers };
            let known = Some(body.as_deref().unwrap_or_default());
            if let Gated::Replay(_) = gate::gate(&mut req, env, &policy, &keys, &prepared.outbound, &received, known, audit, now_ms).await? {
                return Err(Error::Internal("idempotent replay on the MCP route".into()));
            }
            let (call, canonical) = match prepared.verdict {
                Some(mcp::Verdict::Refuse { response, reason, .. }) => {
                    // Answered by Airlock as the JSON-RPC error an MCP client
                    // expects; the origin sees nothing.
                    audit.deny_mcp(reason);
                    let headers = Headers::new();
                    let _ = headers.set("content-type", "application/json");
                    return Ok(Response::builder().with_status(200).with_headers(headers).fixed(response));
                }
                // The origin gets the canonical bytes of what was authorized.
                Some(mcp::Verdict::Forward { call, body }) => (Some(call), Some(body)),
                None => (None, None),
            };
            let mut outbound = prepared.outbound;
            let redactor = Redactor::shared(std::mem::take(&mut outbound.redactions));
            let Some(tool) = policy.tool(server) else {
                return Err(Error::Internal("permitted server missing from policy".into()));
            };
            let upstream = match &canonical {
                Some(bytes) => forward(Body::Bytes(bytes.as_bytes()), env, &outbound, &redactor, policy.limits.upstream_timeout_ms).await?,
                None => forward(Body::Inbound(&req), env, &outbound, &redactor, policy.limits.upstream_timeout_ms).await?,
            };
            let (status, mut headers, mut upstream) = response_head(upstream, &redactor, HeadRules::tool(tool), |_| None, audit)?;
            // The origin's MCP session id goes out bound to this session.
            if let Some(i) = headers.iter().position(|(n, _)| n == "mcp-session-id") {
                let (_, origin_sid) = headers.remove(i);
                let bound = mcp::bind_session_id(&origin_sid, &prepared.session_id, &keys)
                    .ok_or_else(|| Error::UpstreamUnavailable { detail: "origin sent an unusable Mcp-Session-Id".into() })?;
                headers.push(("mcp-session-id".into(), bound));
            }
            let content_type = headers.iter().find(|(n, _)| n == "content-type").map(|(_, v)| v.to_ascii_lowercase()).unwrap_or_default();
            let rules = prepared.rules.clone();
            let granted = prepared.granted;
            if content_type.starts_with("text/event-stream") {
                let filter = mcp::EventFilter::new(redactor, call, rules, granted);
                finish_response(upstream, status, headers, &outbound, Box::new(filter), &policy.limits, audit, slot, ctx).await
            } else if outbound.method.as_str() == "HEAD" || matches!(status, 202 | 204 | 205 | 304) {
                finish_response(upstream, status, headers, &outbound, Box::new(redactor), &policy.limits, audit, slot, ctx).await
            } else {
                // Every other answer is read whole and filtered by shape: a
                // list result passes filtered whatever its id says, and what
                // cannot be read strictly is replaced, never passed.
                let mut body = Vec::new();
                if let Ok(mut stream) = upstream.stream() {
                    while let Some(chunk) = stream.next().await {
                        let chunk = chunk.map_err(|_| Error::UpstreamUnavailable { detail: "MCP answer body failed".into() })?;
                        if body.len() + chunk.len() > 16 * mcp::MAX_MESSAGE {
                            return Err(Error::UpstreamUnavailable { detail: "MCP answer body too large".into() });
                        }
                        body.extend_from_slice(&chunk);
                    }
                }
                let id = call.as_ref().and_then(|c| c.id.as_ref());
                let filtered = redactor.redact(&mcp::filter_origin_message(&body, id, &rules, granted));
                let out = Headers::new();
                for (name, value) in &headers {
                    // The filtered body is UTF-8 JSON whatever charset the origin named.
                    if name == "content-type" && content_type.starts_with("application/json") {
                        let _ = out.append(name, mcp::CANONICAL_CONTENT_TYPE);
                    } else {
                        let _ = out.append(name, value);
                    }
                }
                audit.allow(Some(status));
                Ok(Response::builder().with_status(status).with_headers(out).fixed(filtered))
            }
        }
        Route::NotFound => Err(Error::NotFound),
    }
}

async fn mint_session(mut req: Request, env: &Env, policy: &Policy, audit: &mut AuditRecord, now: u64) -> Result<Response, Error> {
    if req.inner().method() != "POST" {
        return Err(Error::MethodNotAllowed);
    }
    let admin_key = read_secret(env, ADMIN_KEY_SECRET)?;
    mint::check_admin(header(&req, "authorization").as_deref(), &admin_key)?;
    let body = read_capped(&mut req, mint::MAX_MINT_BODY).await?;
    let keys = load_keys(env)?;
    let minted = mint::mint(&body, policy, &keys, now, random_bytes::<16>()?)?;
    audit.session_id = Some(minted.session_id.clone());
    audit.agent = Some(minted.record.agent.clone());
    audit.user = Some(minted.record.user.clone());
    // No token leaves before its record exists: revocation must find it.
    let object = gate::session_object(&minted.session_id);
    match state::call(env, &object, &state::Command::Create { record: minted.record.clone() }).await? {
        state::Reply::Created { created: true } => {}
        _ => return Err(Error::StateUnavailable("session record not created".into())),
    }
    audit.allow(None);
    let body = serde_json::to_string(&minted).map_err(|_| Error::Internal("encoding mint answer".into()))?;
    Ok(json_response(201, body))
}

fn admin(req: &Request, env: &Env) -> Result<(), Error> {
    let admin_key = read_secret(env, ADMIN_KEY_SECRET)?;
    mint::check_admin(header(req, "authorization").as_deref(), &admin_key)
}

fn to_json<T: serde::Serialize>(value: &T) -> Result<String, Error> {
    serde_json::to_string(value).map_err(|_| Error::Internal("encoding answer".into()))
}

/// A request body read whole (to be hashed), refused past `limit` bytes.
async fn read_body(req: &mut Request, limit: u64) -> Result<Vec<u8>, Error> {
    let too_big = |declared| Error::BodyTooLarge { limit, declared };
    if let Some(len) = header(req, "content-length") {
        let declared = pipeline::parse_content_length(&len)?;
        if declared > limit {
            return Err(too_big(Some(declared)));
        }
    }
    let Ok(mut body) = req.stream() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|_| Error::InvalidRequest("could not read body".into()))?;
        if (out.len() + chunk.len()) as u64 > limit {
            return Err(too_big(None));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Keeps Airlock's own error as the answer of a claimed idempotency key
/// and returns it. The request was sent, so the origin may have acted: the
/// failure is the answer, replayed like any other.
async fn store_error(claim: gate::Claim, env: &Env, error: Error, audit: &mut AuditRecord) -> Error {
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    headers.extend(error_headers(&error));
    claim.complete(env, error.status(), &headers, Some(error.wire_body().as_bytes()), audit).await;
    error
}

/// The stored answer of an earlier request with the same idempotency key.
fn replayed(answer: state::StoredAnswer, audit: &mut AuditRecord) -> Response {
    let headers = Headers::new();
    for (name, value) in &answer.headers {
        let _ = headers.append(name, value);
    }
    let _ = headers.set("x-airlock-idempotent-replay", "true");
    audit.allow(None);
    Response::builder().with_status(answer.status).with_headers(headers).fixed(gate::replay_body(&answer))
}

/// Reads a small control-plane body, refusing more than `cap` bytes
/// whether or not a length was declared.
async fn read_capped(req: &mut Request, cap: usize) -> Result<Vec<u8>, Error> {
    read_body(req, cap as u64).await.map_err(|e| match e {
        Error::BodyTooLarge { .. } => Error::InvalidRequest(format!("body larger than {cap} bytes")),
        other => other,
    })
}

/// What the upstream request carries as its body.
enum Body<'a> {
    /// The sandbox's own body, streamed through.
    Inbound(&'a Request),
    /// A body Airlock already read (an MCP message).
    Bytes(&'a [u8]),
}

/// Sends the outbound request, without following redirects, bounded by the
/// policy's timeout. The request body streams straight through.
async fn forward(body: Body<'_>, env: &Env, outbound: &Outbound, redactor: &Redactor, timeout_ms: u64) -> Result<Response, Error> {
    let internal = |what: &str| Error::Internal(format!("building the upstream request: {what}"));
    let headers = web_sys::Headers::new().map_err(|_| internal("headers"))?;
    for (name, value) in &outbound.headers {
        headers
            .append(name, value)
            .map_err(|_| Error::Misconfigured(format!("header {name} refused by the runtime")))?;
    }
    // One abort signal inside the Request itself, so it applies to public
    // fetches and service bindings alike: a timeout, or an upload that fails
    // or passes the limit, aborts the upstream request instead of letting the
    // runtime finish it as if the body were complete.
    let controller = web_sys::AbortController::new().map_err(|_| internal("abort controller"))?;
    let init = web_sys::RequestInit::new();
    init.set_method(outbound.method.as_str());
    init.set_headers(&headers);
    init.set_redirect(web_sys::RequestRedirect::Manual);
    init.set_signal(Some(&controller.signal()));
    let overflow = Rc::new(Cell::new(false));
    if outbound.method.allows_body() {
        match body {
            Body::Inbound(req) => {
                if let Some(stream) = req.inner().body() {
                    let stream = match outbound.declared_length {
                        // The runtime holds a body to its declared length, and
                        // the length was checked against the policy.
                        Some(_) => stream.into(),
                        // No declared length (chunked): count while streaming,
                        // so omitting Content-Length cannot bypass the cap.
                        None => capped(stream, outbound.body_limit, overflow.clone(), controller.clone()),
                    };
                    init.set_body(&stream);
                }
            }
            Body::Bytes(bytes) => init.set_body(&js_sys::Uint8Array::from(bytes).into()),
        }
    }
    let upstream_request: Request = web_sys::Request::new_with_str_and_init(&outbound.url, &init)
        .map_err(|_| internal("request"))?
        .into();

    let send = async {
        match &outbound.target {
            Target::Public => Fetch::Request(upstream_request).send().await,
            Target::Service { binding } => match env.service(binding) {
                Ok(service) => service.fetch_request(upstream_request).await,
                Err(_) => Err(worker::Error::RustError(format!("service binding {binding} is not bound"))),
            },
        }
    };
    let timeout = Delay::from(Duration::from_millis(timeout_ms));
    futures_util::pin_mut!(send);
    futures_util::pin_mut!(timeout);
    match select(send, timeout).await {
        Either::Left(_) if overflow.get() => Err(Error::BodyTooLarge { limit: outbound.body_limit, declared: None }),
        Either::Left((Ok(response), _)) => Ok(response),
        Either::Left((Err(e), _)) => {
            if let Target::Service { binding } = &outbound.target {
                if env.service(binding).is_err() {
                    return Err(Error::Misconfigured(format!("service binding {binding} is not bound")));
                }
            }
            // Runtime error text can quote the URL, and with it an injected
            // query credential: cut at '?' and scrub before it is audited.
            let text = e.to_string();
            let text = text.split('?').next().unwrap_or_default();
            let scrubbed = String::from_utf8_lossy(&redactor.redact(text.as_bytes())).chars().take(200).collect();
            Err(Error::UpstreamUnavailable { detail: scrubbed })
        }
        Either::Right(_) => {
            controller.abort();
            Err(Error::UpstreamTimeout { after_ms: timeout_ms })
        }
    }
}

/// Status, filtered headers, and the origin's response (for its body).
type Head = (u16, Vec<(String, String)>, Response);

/// What the response-head rules need to know of the tool.
#[derive(Clone, Copy)]
struct HeadRules {
    /// Set-Cookie is dropped (the credential's identity, or egress).
    drop_cookies: bool,
    /// The answer must be one Airlock can fully inspect: only decoded
    /// codings, and no slices from a credentialed origin.
    inspect: bool,
    credentialed: bool,
    allow_range: bool,
}

impl HeadRules {
    fn tool(tool: &crate::policy::Tool) -> HeadRules {
        let credentialed = tool.credential.is_some();
        HeadRules { drop_cookies: credentialed, inspect: credentialed || tool.mcp.is_some(), credentialed, allow_range: tool.allow_range }
    }
}

/// Filter response, first half: the status and headers the sandbox may
/// see. An origin 5xx, an impossible status, or an answer Airlock could not
/// inspect ends here as an error, before a byte of its body is read.
fn response_head(
    upstream: Response,
    redactor: &Redactor,
    rules: HeadRules,
    rewrite_location: impl Fn(&str) -> Option<String>,
    audit: &mut AuditRecord,
) -> Result<Head, Error> {
    let status = upstream.status_code();
    // The runtime cannot build a response outside 200-599 (it would panic):
    // such an origin answer is malformed, and has no status to record.
    if !(200..=599).contains(&status) {
        return Err(Error::UpstreamUnavailable { detail: format!("origin answered status {status}") });
    }
    audit.upstream_status = Some(status);
    let upstream_headers: Vec<(String, String)> = upstream.headers().entries().collect();
    if status >= 500 {
        // The origin's own error body may describe its internals: the
        // sandbox gets Airlock's error, the status and a Retry-After that is
        // a number or a date and holds nothing Airlock injected.
        let retry_after = pipeline::header(&upstream_headers, "retry-after")
            .and_then(respond::retry_after)
            .filter(|v| !redactor.contains_any(v.as_bytes()));
        return Err(Error::UpstreamError { status, retry_after });
    }
    if rules.inspect {
        let uninspectable = |why| Error::UpstreamUninspectable { status, why };
        let codings = upstream_headers.iter().filter(|(n, _)| n.eq_ignore_ascii_case("content-encoding")).map(|(_, v)| v.as_str());
        respond::check_encoding(codings).map_err(uninspectable)?;
        respond::check_partial(status, rules.credentialed, rules.allow_range).map_err(uninspectable)?;
    }
    // A Location is rewritten first and scrubbed with every other value
    // after: nothing Airlock returns is changed after its scrub.
    let rewritten: Vec<(String, String)> = upstream_headers
        .into_iter()
        .filter_map(|(name, value)| {
            if (300..400).contains(&status) && name.eq_ignore_ascii_case("location") {
                rewrite_location(&value).map(|v| (name, v))
            } else {
                Some((name, value))
            }
        })
        .collect();
    let filtered = filter_response_headers(&rewritten, redactor, rules.drop_cookies);
    Ok((status, filtered, upstream))
}

/// Filter response, second half: the body, streamed through `filter`, cut
/// off at the policy's size and idle limits; the audit record follows the
/// stream to its end.
/// Bodies up to this declared length are read whole instead of streamed.
const SMALL_BODY: u64 = 64 * 1024;

/// A whole body, read by the runtime in one call
/// (`new Response(body).arrayBuffer()`). workers-rs' own `bytes()` and
/// `text()` pull a body chunk by chunk through a stream reader, crossing
/// between JavaScript and Wasm twice per chunk and locking a reader per
/// body, which cost more than a small body itself.
pub(crate) async fn body_bytes(response: &Response) -> Result<Vec<u8>, ()> {
    let stream = match response.body() {
        ResponseBody::Stream(stream) => stream,
        ResponseBody::Body(bytes) => return Ok(bytes.clone()),
        ResponseBody::Empty => return Ok(Vec::new()),
    };
    let whole = web_sys::Response::new_with_opt_readable_stream(Some(stream)).map_err(drop)?;
    let buffer = JsFuture::from(whole.array_buffer().map_err(drop)?).await.map_err(drop)?;
    Ok(js_sys::Uint8Array::new(&buffer).to_vec())
}

/// Reads a small body of declared length in one call, bounded by the idle
/// timeout.
async fn read_small(upstream: &Response, idle_ms: u64) -> Result<Vec<u8>, ()> {
    let read = body_bytes(upstream);
    let timeout = Delay::from(Duration::from_millis(idle_ms));
    futures_util::pin_mut!(read);
    futures_util::pin_mut!(timeout);
    match select(read, timeout).await {
        Either::Left((Ok(bytes), _)) if bytes.len() as u64 <= SMALL_BODY => Ok(bytes),
        _ => Err(()),
    }
}

#[allow(clippy::too_many_arguments)]
async fn finish_response(
    upstream: Response,
    status: u16,
    filtered: Vec<(String, String)>,
    outbound: &Outbound,
    filter: Box<dyn BodyFilter>,
    limits: &Limits,
    audit: &mut AuditRecord,
    slot: &SharedAudit,
    ctx: &Context,
) -> Result<Response, Error> {
    let headers = Headers::new();
    for (name, value) in &filtered {
        // A value the runtime refuses is dropped rather than failing the call.
        let _ = headers.append(name, value);
    }
    let null_body = outbound.method.as_str() == "HEAD" || matches!(status, 101 | 204 | 205 | 304);
    let small = upstream
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| pipeline::parse_content_length(&v).ok())
        .filter(|&len| len <= SMALL_BODY && len <= limits.max_response_body_bytes);
    let streamed = matches!(upstream.body(), worker::ResponseBody::Stream(_));
    let response = match upstream.body() {
        _ if streamed && !null_body && small.is_some() => {
            // A small body of declared length is read in one call and
            // scrubbed whole: a stream costs more than the body itself.
            let bytes = read_small(&upstream, limits.upstream_idle_timeout_ms).await;
            let mut filter = filter;
            let out = match bytes.map(|b| filter.push(&b).map(|mut out| {
                out.extend(filter.finish());
                out
            })) {
                Ok(Ok(out)) => out,
                Ok(Err(_)) | Err(_) => return Err(Error::UpstreamUnavailable { detail: "origin body failed or stalled".into() }),
            };
            let mut record = slot.borrow_mut();
            record.bytes_out = out.len() as u64;
            record.stream = Some("complete");
            record.ended = true;
            drop(record);
            Response::builder().fixed(out)
        }
        worker::ResponseBody::Stream(body) if !null_body => {
            let body = body.clone();
            let limits = BodyLimits { max_bytes: limits.max_response_body_bytes, idle_ms: limits.upstream_idle_timeout_ms };
            ctx.wait_until(audit_watchdog(Rc::downgrade(slot), limits.idle_ms));
            Response::from_stream(filtered_body(body, filter, limits, slot.clone()))
                .map_err(|_| Error::Internal("building response stream".into()))?
        }
        _ => Response::builder().empty(),
    };
    audit.allow(Some(status));
    Ok(response.with_status(status).with_headers(headers))
}

/// What finishing a response needs besides the response itself.
struct Parts<'a> {
    outbound: &'a Outbound,
    limits: &'a Limits,
    slot: &'a SharedAudit,
    ctx: &'a Context,
}

/// Filter response for a request that claimed an idempotency key: the body
/// is read through the filter and stored with the status and headers, then
/// sent. A body larger than the store's cap is streamed on instead, and the
/// key is kept as answered without a replayable body.
#[allow(clippy::too_many_arguments)]
async fn finish_idempotent(
    upstream: Response,
    status: u16,
    filtered: Vec<(String, String)>,
    mut filter: Box<dyn BodyFilter>,
    parts: Parts<'_>,
    claim: gate::Claim,
    env: &Env,
    audit: &mut AuditRecord,
) -> Result<Response, Error> {
    let null_body = parts.outbound.method.as_str() == "HEAD" || matches!(status, 101 | 204 | 205 | 304);
    let raw = match upstream.body() {
        worker::ResponseBody::Stream(body) if !null_body => Some(body.clone()),
        _ => None,
    };
    let headers = Headers::new();
    for (name, value) in &filtered {
        let _ = headers.append(name, value);
    }
    let Some(raw) = raw else {
        claim.complete(env, status, &filtered, Some(&[]), audit).await;
        audit.allow(Some(status));
        return Ok(Response::builder().with_status(status).with_headers(headers).empty());
    };
    let cap = claim.max_body;
    let limits = BodyLimits { max_bytes: parts.limits.max_response_body_bytes, idle_ms: parts.limits.upstream_idle_timeout_ms };
    let mut source = Source::new(raw);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    let mut received: u64 = 0;
    loop {
        let result = {
            let read = source.read(&mut buf);
            let idle = Delay::from(Duration::from_millis(limits.idle_ms));
            futures_util::pin_mut!(read);
            futures_util::pin_mut!(idle);
            match select(read, idle).await {
                Either::Left((Ok(n), _)) => Some(n),
                _ => None,
            }
        };
        let n = match result {
            Some(n) => n,
            None => {
                let e = Error::UpstreamUnavailable { detail: "origin body failed or stalled".into() };
                return Err(store_error(claim, env, e, audit).await);
            }
        };
        if n == 0 {
            out.extend(filter.finish());
            claim.complete(env, status, &filtered, Some(&out), audit).await;
            let mut slot = parts.slot.borrow_mut();
            slot.bytes_out = out.len() as u64;
            slot.stream = Some("complete");
            slot.ended = true;
            drop(slot);
            audit.allow(Some(status));
            return Ok(Response::builder().with_status(status).with_headers(headers).fixed(out));
        }
        received = received.saturating_add(n as u64);
        if received > limits.max_bytes {
            let e = Error::UpstreamUnavailable { detail: "origin body larger than the policy allows".into() };
            return Err(store_error(claim, env, e, audit).await);
        }
        match filter.push(&buf[..n]) {
            Ok(piece) => out.extend(piece),
            Err(_) => {
                let e = Error::UpstreamUnavailable { detail: "origin body refused by the filter".into() };
                return Err(store_error(claim, env, e, audit).await);
            }
        }
        if out.len() as u64 > cap {
            // Too large to keep: answered once, streamed on from here.
            claim.complete(env, status, &filtered, None, audit).await;
            parts.ctx.wait_until(audit_watchdog(Rc::downgrade(parts.slot), limits.idle_ms));
            let body = filtered_source(source, out, received, filter, limits, parts.slot.clone());
            let response = Response::from_stream(body).map_err(|_| Error::Internal("building response stream".into()))?;
            audit.allow(Some(status));
            return Ok(response.with_status(status).with_headers(headers));
        }
    }
}

/// Streams a request body through a byte counter that errors the upload —
/// and aborts the upstream request — once more than `limit` bytes have
/// passed or the sandbox's upload fails, and records an overflow.
fn capped(body: web_sys::ReadableStream, limit: u64, overflow: Rc<Cell<bool>>, abort: web_sys::AbortController) -> wasm_bindgen::JsValue {
    let mut seen: u64 = 0;
    let counted = ByteStream::from(body).map(move |chunk| {
        let Ok(chunk) = chunk else {
            // The sandbox's upload broke off: abort, so the origin never
            // sees a truncated body as a complete request.
            abort.abort();
            return Err(wasm_bindgen::JsValue::from_str("request body failed"));
        };
        seen = seen.saturating_add(chunk.len() as u64);
        if seen > limit {
            overflow.set(true);
            abort.abort();
            return Err(wasm_bindgen::JsValue::from_str("request body larger than the policy allows"));
        }
        Ok(js_sys::Uint8Array::from(chunk.as_slice()).into())
    });
    wasm_streams::ReadableStream::from_stream(counted).into_raw().into()
}

#[derive(Clone, Copy)]
struct BodyLimits {
    max_bytes: u64,
    idle_ms: u64,
}

/// The idle timeout is observed in this many ticks: a stream is cut off
/// after between `IDLE_TICKS - 1` and `IDLE_TICKS` quarters of silence.
const IDLE_TICKS: u32 = 4;

/// Size of the buffer an origin body is read into: each read crosses from
/// the runtime into Wasm once, so larger reads mean fewer crossings.
const READ_BUFFER: usize = 64 * 1024;

/// The origin's body: read into one reusable buffer through a BYOB reader
/// when the runtime offers a byte stream, chunk by chunk otherwise.
enum Source {
    Bytes(wasm_streams::readable::IntoAsyncRead<'static>),
    Chunks(wasm_streams::readable::IntoStream<'static>),
}

impl Source {
    fn new(raw: web_sys::ReadableStream) -> Source {
        match wasm_streams::ReadableStream::from_raw(raw.unchecked_into()).try_into_async_read() {
            Ok(read) => Source::Bytes(read),
            Err((_, stream)) => Source::Chunks(stream.into_stream()),
        }
    }

    /// Reads the next piece into `buf`; `Ok(0)` at the end.
    async fn read(&mut self, buf: &mut Vec<u8>) -> Result<usize, ()> {
        match self {
            Source::Bytes(read) => {
                if buf.len() != READ_BUFFER {
                    buf.resize(READ_BUFFER, 0);
                }
                futures_util::AsyncReadExt::read(read, buf).await.map_err(|_| ())
            }
            Source::Chunks(stream) => match stream.next().await {
                None => Ok(0),
                Some(Err(_)) => Err(()),
                Some(Ok(chunk)) => {
                    let chunk: js_sys::Uint8Array = chunk.unchecked_into();
                    buf.resize(chunk.length() as usize, 0);
                    chunk.copy_to(buf);
                    Ok(buf.len())
                }
            },
        }
    }
}

/// The origin's body as the sandbox receives it: every piece through the
/// filter, cut off with an error when the origin fails mid-stream, sends
/// more than the cap, or goes quiet past the idle timeout. The stream holds
/// the audit slot, so the record is written when the stream ends — however
/// it ends, including the client going away.
fn filtered_body(body: web_sys::ReadableStream, filter: Box<dyn BodyFilter>, limits: BodyLimits, slot: SharedAudit) -> impl futures_util::Stream<Item = worker::Result<Vec<u8>>> {
    filtered_source(Source::new(body), Vec::new(), 0, filter, limits, slot)
}

/// [`filtered_body`] for a source already partly read: `prefix` (already
/// filtered) goes out first, and `received` bytes count against the cap.
fn filtered_source(
    source: Source,
    prefix: Vec<u8>,
    received: u64,
    filter: Box<dyn BodyFilter>,
    limits: BodyLimits,
    slot: SharedAudit,
) -> impl futures_util::Stream<Item = worker::Result<Vec<u8>>> {
    struct State {
        prefix: Vec<u8>,
        source: Source,
        buf: Vec<u8>,
        filter: Box<dyn BodyFilter>,
        limits: BodyLimits,
        received: u64,
        /// A ticking timer (a quarter of the idle timeout), armed once per
        /// pull rather than per read; the runtime's clock only moves with
        /// I/O, so quiet time is counted in ticks rather than read from it.
        tick: Option<std::pin::Pin<Box<Delay>>>,
        quiet_ticks: u32,
        slot: SharedAudit,
        done: bool,
    }
    impl State {
        fn end(&mut self, how: &'static str) {
            self.done = true;
            let mut slot = self.slot.borrow_mut();
            slot.stream = Some(how);
            slot.ended = true;
        }
        fn sent(&mut self, out: &[u8]) {
            self.slot.borrow_mut().bytes_out += out.len() as u64;
        }
        fn fail(mut self, how: &'static str) -> Option<(worker::Result<Vec<u8>>, State)> {
            self.end(how);
            Some((Err(worker::Error::RustError(format!("upstream body: {how}"))), self))
        }
    }
    impl Drop for State {
        fn drop(&mut self) {
            // Dropped before the end: the sandbox cancelled the stream.
            if !self.done {
                let mut slot = self.slot.borrow_mut();
                slot.stream = Some("cancelled");
                slot.ended = true;
            }
        }
    }
    let state = State {
        prefix,
        source,
        buf: Vec::new(),
        filter,
        limits,
        received,
        tick: None,
        quiet_ticks: 0,
        slot,
        done: false,
    };
    stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        if !st.prefix.is_empty() {
            let out = std::mem::take(&mut st.prefix);
            st.sent(&out);
            return Some((Ok(out), st));
        }
        // A timer wakes the task that first polled it: each pull is its own
        // task, so each pull arms its own timer.
        st.tick = None;
        loop {
            let read = {
                let State { source, buf, tick, quiet_ticks, limits, .. } = &mut st;
                let period = (limits.idle_ms / IDLE_TICKS as u64).max(1);
                let read = source.read(buf);
                futures_util::pin_mut!(read);
                loop {
                    let timer = tick.get_or_insert_with(|| Box::pin(Delay::from(Duration::from_millis(period))));
                    match select(read.as_mut(), timer.as_mut()).await {
                        Either::Left((result, _)) => break Some(result),
                        Either::Right(_) => {
                            *tick = None;
                            *quiet_ticks += 1;
                            if *quiet_ticks >= IDLE_TICKS {
                                break None;
                            }
                        }
                    }
                }
            };
            let n = match read {
                None => return st.fail("idle_timeout"),
                Some(Err(())) => return st.fail("upstream_error"),
                Some(Ok(n)) => n,
            };
            if n == 0 {
                st.end("complete");
                let tail = st.filter.finish();
                st.sent(&tail);
                return if tail.is_empty() { None } else { Some((Ok(tail), st)) };
            }
            st.quiet_ticks = 0;
            st.received = st.received.saturating_add(n as u64);
            if st.received > st.limits.max_bytes {
                return st.fail("too_large");
            }
            let out = match st.filter.push(&st.buf[..n]) {
                Ok(out) => out,
                Err(how) => return st.fail(how),
            };
            if !out.is_empty() {
                st.sent(&out);
                return Some((Ok(out), st));
            }
        }
    })
}
