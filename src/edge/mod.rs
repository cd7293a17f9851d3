//! The edge adapter: the only code that touches the Workers runtime.
//!
//! It turns the platform request into plain data once, runs the pipeline
//! phases from the core modules in order, performs the I/O (secrets,
//! bindings, fetch, clock, randomness) and writes exactly one audit record
//! per request. It decides nothing itself.
//!
//! Must never: return an `Err` to the runtime (its text would reach the
//! client), panic on input, buffer a tool body, or log a secret.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use futures_util::future::{select, Either};
use futures_util::stream::{self, StreamExt};
use worker::{
    console_log, event, AbortController, ByteStream, Context, Date, Delay, Env, Fetch, Headers,
    Request, RequestInit, RequestRedirect, Response,
};

use crate::audit::AuditRecord;
use crate::egress;
use crate::error::Error;
use crate::inject::{Outbound, PreparedCredential};
use crate::pipeline::{self, EgressRequest, ToolRequest};
use crate::policy::{Limits, Policy, Target};
use crate::redact::{filter_response_headers, tool_location, Redactor};
use crate::route::{route, split_url, url_host, Route};
use crate::secret::Secret;
use crate::session;
use crate::token::KeyRing;

const POLICY_VAR: &str = "AIRLOCK_POLICY";
const ADMIN_KEY_SECRET: &str = "AIRLOCK_ADMIN_KEY";
const SIGNING_KEYS_SECRET: &str = "AIRLOCK_SIGNING_KEYS";
const REQUEST_ID_HEADER: &str = "x-airlock-request-id";
const UPSTREAM_STATUS_HEADER: &str = "x-airlock-upstream-status";

type Cached<T> = RefCell<Option<(String, Rc<Result<T, Error>>)>>;

thread_local! {
    // Parsed once per isolate; re-parsed only if the raw value changes.
    static POLICY: Cached<Policy> = const { RefCell::new(None) };
    static KEYS: Cached<KeyRing> = const { RefCell::new(None) };
}

fn cached<T>(cell: &'static std::thread::LocalKey<Cached<T>>, raw: String, parse: impl FnOnce(&str) -> Result<T, Error>) -> Rc<Result<T, Error>> {
    cell.with(|c| {
        if let Some((seen, value)) = c.borrow().as_ref() {
            if *seen == raw {
                return value.clone();
            }
        }
        let value = Rc::new(parse(&raw));
        *c.borrow_mut() = Some((raw, value.clone()));
        value
    })
}

fn load_policy(env: &Env) -> Result<Rc<Result<Policy, Error>>, Error> {
    let raw = match env.var(POLICY_VAR) {
        Ok(v) => v.to_string(),
        // A TOML table in [vars] arrives as an object, not a string.
        Err(_) => match env.object_var::<serde_json::Value>(POLICY_VAR) {
            Ok(v) => v.to_string(),
            Err(_) => return Err(Error::PolicyInvalid(format!("{POLICY_VAR} is not set"))),
        },
    };
    Ok(cached(&POLICY, raw, |s| Policy::parse(s).map_err(|e| Error::PolicyInvalid(e.to_string()))))
}

fn load_keys(env: &Env) -> Result<Rc<Result<KeyRing, Error>>, Error> {
    let raw = env
        .var(SIGNING_KEYS_SECRET)
        .map_err(|_| Error::Misconfigured(format!("secret {SIGNING_KEYS_SECRET} is not set")))?
        .to_string();
    Ok(cached(&KEYS, raw, |s| {
        KeyRing::parse(s).map_err(|e| Error::Misconfigured(format!("{SIGNING_KEYS_SECRET}: {e}")))
    }))
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

fn random_bytes<const N: usize>() -> Result<[u8; N], Error> {
    let mut buf = [0u8; N];
    getrandom::fill(&mut buf).map_err(|_| Error::Internal("CSPRNG unavailable".into()))?;
    Ok(buf)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
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

fn error_response(error: &Error) -> Response {
    let response = json_response(error.status(), error.wire_body());
    if let Error::UpstreamError { status, retry_after } = error {
        let _ = response.headers().set(UPSTREAM_STATUS_HEADER, &status.to_string());
        if let Some(value) = retry_after {
            let _ = response.headers().set("retry-after", value);
        }
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
}

impl Drop for AuditSlot {
    fn drop(&mut self) {
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

type SharedAudit = Rc<RefCell<AuditSlot>>;

#[event(fetch)]
pub async fn fetch(req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    let started = Date::now().as_millis();
    let method = req.inner().method();
    let (request_id, id_error) = match random_bytes::<16>() {
        Ok(b) => (hex(&b), None),
        Err(e) => (format!("t{started}"), Some(e)),
    };
    let slot: SharedAudit = Rc::new(RefCell::new(AuditSlot { record: None, started, bytes_out: 0, stream: None }));
    let mut audit = AuditRecord::new(request_id.clone(), &method, started);
    let result = match id_error {
        Some(e) => Err(e),
        None => handle(req, &env, &mut audit, &slot, started).await,
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
async fn handle(req: Request, env: &Env, audit: &mut AuditRecord, slot: &SharedAudit, now_ms: u64) -> Result<Response, Error> {
    // An invalid policy refuses every route, health included: nothing runs
    // on a configuration that was not fully understood.
    let policy = load_policy(env)?;
    let policy = policy.as_ref().as_ref().map_err(Clone::clone)?;
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
            load_keys(env)?.as_ref().as_ref().map_err(Clone::clone)?;
            audit.allow(None);
            Ok(json_response(200, r#"{"status":"ok"}"#.into()))
        }
        Route::Sessions => {
            audit.route = "mint";
            mint_session(req, env, policy, audit, now_ms / 1000).await
        }
        Route::Tool { tool, rest } => {
            audit.route = "tool";
            let keys = load_keys(env)?;
            let keys = keys.as_ref().as_ref().map_err(Clone::clone)?;
            let tool_request = ToolRequest { tool, rest, method: &method, query, headers: &headers };
            let mut outbound = pipeline::prepare(policy, keys, &tool_request, now_ms / 1000, audit, |name| read_credential(env, name))?;
            let redactor = Redactor::shared(std::mem::take(&mut outbound.redactions));
            let Some(tool) = policy.tool(tool) else {
                return Err(Error::Internal("permitted tool missing from policy".into()));
            };
            let upstream = forward(&req, env, &outbound, &redactor, policy.limits.upstream_timeout_ms).await?;
            let rewrite = |location: &str| Some(tool_location(location, &outbound.url, tool));
            respond(upstream, &outbound, redactor, tool.credential.is_some(), rewrite, &policy.limits, audit, slot)
        }
        Route::Egress { authority, rest } => {
            audit.route = "egress";
            let keys = load_keys(env)?;
            let keys = keys.as_ref().as_ref().map_err(Clone::clone)?;
            let own_host = url_host(&url);
            let egress_request = EgressRequest { authority, rest, method: &method, query, headers: &headers };
            let outbound = pipeline::prepare_egress(policy, keys, &egress_request, now_ms / 1000, audit, own_host.as_deref())?;
            let redactor = Redactor::new(Vec::new());
            let upstream = forward(&req, env, &outbound, &redactor, policy.limits.upstream_timeout_ms).await?;
            // Egress answers never carry cookies back, and redirects are
            // rewritten to the egress route or dropped.
            let rewrite = |location: &str| egress::rewrite_location(location, &outbound.url, &policy.egress, own_host.as_deref());
            respond(upstream, &outbound, redactor, true, rewrite, &policy.limits, audit, slot)
        }
        Route::NotFound => Err(Error::NotFound),
    }
}

async fn mint_session(mut req: Request, env: &Env, policy: &Policy, audit: &mut AuditRecord, now: u64) -> Result<Response, Error> {
    if req.inner().method() != "POST" {
        return Err(Error::MethodNotAllowed);
    }
    let admin_key = read_secret(env, ADMIN_KEY_SECRET)?;
    session::check_admin(header(&req, "authorization").as_deref(), &admin_key)?;
    let body = read_capped(&mut req, session::MAX_MINT_BODY).await?;
    let keys = load_keys(env)?;
    let keys = keys.as_ref().as_ref().map_err(Clone::clone)?;
    let minted = session::mint(&body, policy, keys, now, random_bytes::<16>()?)?;
    audit.session_id = Some(minted.session_id.clone());
    audit.agent = Some(minted.agent.clone());
    audit.user = Some(minted.user.clone());
    audit.allow(None);
    let body = serde_json::to_string(&minted).map_err(|_| Error::Internal("encoding mint answer".into()))?;
    Ok(json_response(201, body))
}

/// Reads a small control-plane body, refusing more than `cap` bytes
/// whether or not a length was declared.
async fn read_capped(req: &mut Request, cap: usize) -> Result<Vec<u8>, Error> {
    let too_big = || Error::InvalidRequest(format!("body larger than {cap} bytes"));
    if let Some(len) = header(req, "content-length") {
        if pipeline::parse_content_length(&len)? > cap as u64 {
            return Err(too_big());
        }
    }
    let Ok(mut body) = req.stream() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|_| Error::InvalidRequest("could not read body".into()))?;
        if out.len() + chunk.len() > cap {
            return Err(too_big());
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// Sends the outbound request, without following redirects, bounded by the
/// policy's timeout. The request body streams straight through.
async fn forward(req: &Request, env: &Env, outbound: &Outbound, redactor: &Redactor, timeout_ms: u64) -> Result<Response, Error> {
    let headers = Headers::new();
    for (name, value) in &outbound.headers {
        headers
            .append(name, value)
            .map_err(|_| Error::Misconfigured(format!("header {name} refused by the runtime")))?;
    }
    let mut init = RequestInit::new();
    init.with_method(worker::Method::from(outbound.method.as_str().to_string()))
        .with_headers(headers)
        .with_redirect(RequestRedirect::Manual);
    let overflow = Rc::new(Cell::new(false));
    if outbound.method.allows_body() {
        if let Some(body) = req.inner().body() {
            let body = match outbound.declared_length {
                // The runtime holds a body to its declared length, and the
                // length was checked against the policy: pass it through.
                Some(_) => body.into(),
                // No declared length (chunked): count while streaming and
                // fail the upload at the limit, so a client cannot bypass
                // the cap by omitting Content-Length.
                None => capped(body, outbound.body_limit, overflow.clone()),
            };
            init.with_body(Some(body));
        }
    }
    let upstream_request = Request::new_with_init(&outbound.url, &init)
        .map_err(|_| Error::Internal("building the upstream request".into()))?;

    let controller = AbortController::default();
    let signal = controller.signal();
    let send = async {
        match &outbound.target {
            Target::Public => Fetch::Request(upstream_request).send_with_signal(&signal).await,
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

/// Filter response: status, headers, redirect and body of the origin's
/// answer, as the sandbox may see them.
#[allow(clippy::too_many_arguments)]
fn respond(
    mut upstream: Response,
    outbound: &Outbound,
    redactor: Redactor,
    drop_cookies: bool,
    rewrite_location: impl Fn(&str) -> Option<String>,
    limits: &Limits,
    audit: &mut AuditRecord,
    slot: &SharedAudit,
) -> Result<Response, Error> {
    let status = upstream.status_code();
    audit.upstream_status = Some(status);
    if status >= 500 {
        // The origin's own error body may describe its internals: the
        // sandbox gets Airlock's error, the status and any Retry-After.
        let retry_after = upstream
            .headers()
            .get("retry-after")
            .ok()
            .flatten()
            .filter(|v| v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b" ,:-".contains(&b)));
        return Err(Error::UpstreamError { status, retry_after });
    }
    let upstream_headers: Vec<(String, String)> = upstream.headers().entries().collect();
    let mut filtered = filter_response_headers(&upstream_headers, &redactor, drop_cookies);
    if (300..400).contains(&status) {
        filtered = filtered
            .into_iter()
            .filter_map(|(name, value)| match name.as_str() {
                "location" => rewrite_location(&value).map(|v| (name, v)),
                _ => Some((name, value)),
            })
            .collect();
    }
    let headers = Headers::new();
    for (name, value) in &filtered {
        // A value the runtime refuses is dropped rather than failing the call.
        let _ = headers.append(name, value);
    }
    let null_body = outbound.method.as_str() == "HEAD" || matches!(status, 101 | 204 | 205 | 304);
    let response = match upstream.stream() {
        Ok(body) if !null_body => {
            slot.borrow_mut().stream = Some("complete");
            let limits = BodyLimits { max_bytes: limits.max_response_body_bytes, idle_ms: limits.upstream_idle_timeout_ms };
            Response::from_stream(filtered_body(body, redactor, limits, slot.clone()))
                .map_err(|_| Error::Internal("building response stream".into()))?
        }
        _ => Response::builder().empty(),
    };
    audit.allow(Some(status));
    Ok(response.with_status(status).with_headers(headers))
}

/// Streams a request body through a byte counter that errors the upload
/// once more than `limit` bytes have passed, and records that it did.
fn capped(body: web_sys::ReadableStream, limit: u64, overflow: Rc<Cell<bool>>) -> wasm_bindgen::JsValue {
    let mut seen: u64 = 0;
    let counted = ByteStream::from(body).map(move |chunk| {
        let chunk = chunk.map_err(|_| wasm_bindgen::JsValue::from_str("request body failed"))?;
        seen = seen.saturating_add(chunk.len() as u64);
        if seen > limit {
            overflow.set(true);
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

/// The origin's body as the sandbox receives it: every chunk through the
/// redactor, cut off with an error when the origin fails mid-stream, sends
/// more than the cap, or goes quiet past the idle timeout. The stream holds
/// the audit slot, so the record is written when the stream ends — however
/// it ends, including the client going away.
fn filtered_body(body: ByteStream, redactor: Redactor, limits: BodyLimits, slot: SharedAudit) -> impl futures_util::Stream<Item = worker::Result<Vec<u8>>> {
    struct State {
        body: ByteStream,
        redactor: Redactor,
        limits: BodyLimits,
        received: u64,
        slot: SharedAudit,
        done: bool,
    }
    impl State {
        fn end(&mut self, how: &'static str) {
            self.done = true;
            self.slot.borrow_mut().stream = Some(how);
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
                self.slot.borrow_mut().stream = Some("cancelled");
            }
        }
    }
    let state = State { body, redactor, limits, received: 0, slot, done: false };
    stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            let next = st.body.next();
            let idle = Delay::from(Duration::from_millis(st.limits.idle_ms));
            futures_util::pin_mut!(idle);
            let chunk = match select(next, idle).await {
                Either::Left((chunk, _)) => chunk,
                Either::Right(_) => return st.fail("idle_timeout"),
            };
            match chunk {
                Some(Ok(chunk)) => {
                    st.received = st.received.saturating_add(chunk.len() as u64);
                    if st.received > st.limits.max_bytes {
                        return st.fail("too_large");
                    }
                    let out = st.redactor.push(&chunk);
                    if !out.is_empty() {
                        st.sent(&out);
                        return Some((Ok(out), st));
                    }
                }
                Some(Err(_)) => return st.fail("upstream_error"),
                None => {
                    st.end("complete");
                    let tail = st.redactor.finish();
                    st.sent(&tail);
                    return if tail.is_empty() { None } else { Some((Ok(tail), st)) };
                }
            }
        }
    })
}
