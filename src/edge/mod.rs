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
use crate::error::Error;
use crate::inject::Outbound;
use crate::pipeline::{self, ToolRequest};
use crate::policy::{Policy, Target};
use crate::redact::{filter_response_headers, Redactor};
use crate::route::{route, split_url, Route};
use crate::secret::Secret;
use crate::session;
use crate::token::KeyRing;

const POLICY_VAR: &str = "AIRLOCK_POLICY";
const ADMIN_KEY_SECRET: &str = "AIRLOCK_ADMIN_KEY";
const SIGNING_KEYS_SECRET: &str = "AIRLOCK_SIGNING_KEYS";
const REQUEST_ID_HEADER: &str = "x-airlock-request-id";

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
    json_response(error.status(), error.wire_body())
}

#[event(fetch)]
pub async fn fetch(req: Request, env: Env, _ctx: Context) -> worker::Result<Response> {
    let started = Date::now().as_millis();
    let method = req.inner().method();
    let (request_id, id_error) = match random_bytes::<16>() {
        Ok(b) => (hex(&b), None),
        Err(e) => (format!("t{started}"), Some(e)),
    };
    let mut audit = AuditRecord::new(request_id.clone(), &method, started);
    let result = match id_error {
        Some(e) => Err(e),
        None => handle(req, &env, &mut audit, started).await,
    };
    let mut response = match result {
        Ok(response) => response,
        Err(error) => {
            audit.fail(&error);
            error_response(&error)
        }
    };
    audit.finish(Date::now().as_millis(), started);
    console_log!("{}", audit.to_json());
    let _ = response.headers_mut().set(REQUEST_ID_HEADER, &request_id);
    Ok(response)
}

/// Parse, then dispatch by route.
async fn handle(req: Request, env: &Env, audit: &mut AuditRecord, now_ms: u64) -> Result<Response, Error> {
    // An invalid policy refuses every route, health included: nothing runs
    // on a configuration that was not fully understood.
    let policy = load_policy(env)?;
    let policy = policy.as_ref().as_ref().map_err(Clone::clone)?;
    let url = req.inner().url();
    let (raw_path, query) = split_url(&url).ok_or_else(|| Error::InvalidRequest("unparseable request URL".into()))?;
    match route(raw_path) {
        Route::Health => {
            audit.route = "health";
            if !matches!(req.inner().method().as_str(), "GET" | "HEAD") {
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
            broker(req, env, policy, tool, rest, query, audit, now_ms / 1000).await
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
        if len.trim().parse::<u64>().map_err(|_| Error::InvalidRequest("invalid Content-Length".into()))? > cap as u64 {
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

/// The tool pipeline: the deciding phases (see [`pipeline::prepare`]), then
/// forward and filter response.
#[allow(clippy::too_many_arguments)]
async fn broker(
    req: Request,
    env: &Env,
    policy: &Policy,
    tool: &str,
    rest: &str,
    query: Option<&str>,
    audit: &mut AuditRecord,
    now: u64,
) -> Result<Response, Error> {
    let keys = load_keys(env)?;
    let keys = keys.as_ref().as_ref().map_err(Clone::clone)?;
    let method = req.inner().method();
    let headers: Vec<(String, String)> = req.headers().entries().collect();
    let tool_request = ToolRequest { tool, rest, method: &method, query, headers: &headers };
    let mut outbound = pipeline::prepare(policy, keys, &tool_request, now, audit, |name| read_secret(env, name).ok())?;
    let credentialed = policy.tool(tool).is_some_and(|t| t.credential.is_some());
    let redactor = Redactor::new(std::mem::take(&mut outbound.redactions));

    // forward
    let head_only = outbound.method.as_str() == "HEAD";
    let mut upstream = forward(&req, env, &outbound, &redactor, policy.limits.upstream_timeout_ms).await?;

    // filter response
    let status = upstream.status_code();
    let upstream_headers: Vec<(String, String)> = upstream.headers().entries().collect();
    let filtered = filter_response_headers(&upstream_headers, &redactor, credentialed);
    let headers = Headers::new();
    for (name, value) in &filtered {
        // A value the runtime refuses is dropped rather than failing the call.
        let _ = headers.append(name, value);
    }
    let null_body = head_only || matches!(status, 101 | 204 | 205 | 304);
    let response = match upstream.stream() {
        Ok(body) if !null_body => Response::from_stream(redacting(body, redactor))
            .map_err(|_| Error::Internal("building response stream".into()))?,
        _ => Response::builder().empty(),
    };
    audit.allow(Some(status));
    Ok(response.with_status(status).with_headers(headers))
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
            // Runtime error text can quote the URL, and with it an injected
            // query credential: scrub before it reaches the audit record.
            let text = e.to_string();
            let text = text.split('?').next().unwrap_or_default();
            let scrubbed = String::from_utf8_lossy(&redactor.redact(text.as_bytes())).chars().take(200).collect();
            if let Target::Service { binding } = &outbound.target {
                if env.service(binding).is_err() {
                    return Err(Error::Misconfigured(format!("service binding {binding} is not bound")));
                }
            }
            Err(Error::UpstreamUnavailable { detail: scrubbed })
        }
        Either::Right(_) => {
            controller.abort();
            Err(Error::UpstreamTimeout { after_ms: timeout_ms })
        }
    }
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

/// Wraps the origin's body so every chunk passes through the redactor. An
/// upstream error mid-stream ends the sandbox's stream with an error
/// (truncated, never silently completed).
fn redacting(body: ByteStream, redactor: Redactor) -> impl futures_util::Stream<Item = worker::Result<Vec<u8>>> {
    struct State {
        body: ByteStream,
        redactor: Redactor,
        done: bool,
    }
    stream::unfold(State { body, redactor, done: false }, |mut st| async move {
        if st.done {
            return None;
        }
        loop {
            match st.body.next().await {
                Some(Ok(chunk)) => {
                    let out = st.redactor.push(&chunk);
                    if !out.is_empty() {
                        return Some((Ok(out), st));
                    }
                }
                Some(Err(_)) => {
                    st.done = true;
                    return Some((Err(worker::Error::RustError("upstream body failed".into())), st));
                }
                None => {
                    st.done = true;
                    let tail = st.redactor.finish();
                    return if tail.is_empty() { None } else { Some((Ok(tail), st)) };
                }
            }
        }
    })
}
