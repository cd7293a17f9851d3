//! Filter response at the edge: the origin's status and headers through
//! the pure rules of [`crate::respond`], then its body through the redactor
//! (or the MCP filter), streamed or read whole, and for an idempotent
//! request stored for replays.
//!
//! Must never: pass a body the filter did not see, or change a header value
//! after it was scrubbed.

use std::rc::Rc;
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use futures_util::future::{select, Either};
use futures_util::stream::StreamExt;
use worker::{Context, Delay, Env, Headers, Response, ResponseBody};

use super::admit::{store, store_error};
use super::audit::{audit_watchdog, SharedAudit};
use super::body::{filtered_body, filtered_source, read_whole, BodyLimits, Source};
use super::deadline;
use crate::admit::Claim;
use crate::audit::AuditRecord;
use crate::authorize::McpAuthorized;
use crate::error::{Error, Uninspectable};
use crate::index::{self, Links};
use crate::inject::{McpExchange, Outbound};
use crate::mcp::{self, gate};
use crate::policy::Limits;
use crate::redact::{BodyFilter, Redactor};
use crate::request;
use crate::respond;
use crate::state::session::StoredAnswer;
use crate::token::KeyRing;

/// Status, filtered headers, and the origin's response (for its body).
pub type Head = (u16, Vec<(String, String)>, Response);

/// Filter response, first half: the status and headers the sandbox may
/// see. An origin 5xx, an impossible status, or an answer Airlock could not
/// inspect ends here as an error, before a byte of its body is read.
pub fn response_head(
    upstream: Response,
    outbound: &Outbound,
    redactor: &Redactor,
    egress_location: impl Fn(&str) -> Option<String>,
    audit: &mut AuditRecord,
) -> Result<Head, Error> {
    let status = upstream.status_code();
    // The runtime cannot build a response outside 200-599 (it would panic):
    // such an origin answer is malformed, and has no status to record.
    if !(200..=599).contains(&status) {
        return Err(Error::UpstreamUnavailable { detail: format!("origin answered status {status}") });
    }
    audit.upstream_status = Some(status);
    let headers = super::http::header_pairs(upstream.headers()).map_err(|_| Error::UpstreamUnavailable { detail: "unreadable response headers".into() })?;
    let filtered = respond::head(status, headers, outbound.response(), outbound.url(), redactor, egress_location)?;
    Ok((status, filtered, upstream))
}

/// Filter response for a tool: the head, then the body streamed through the
/// redactor, or for a request that claimed an idempotency key read, stored
/// and sent (an error after forwarding is stored as the answer too).
pub async fn finish_tool(
    upstream: Result<Response, Error>,
    redactor: Redactor,
    parts: Parts<'_>,
    claim: Option<Claim>,
    env: &Env,
    audit: &mut AuditRecord,
) -> Result<Response, Error> {
    let head = upstream.and_then(|upstream| response_head(upstream, parts.outbound, &redactor, |_| None, audit));
    match (head, claim) {
        (Ok((status, headers, upstream)), None) => {
            finish_response(upstream, status, headers, parts.outbound, Box::new(redactor), parts.limits, audit, parts.slot, parts.ctx).await
        }
        (Ok((status, headers, upstream)), Some(claim)) => finish_idempotent(upstream, status, headers, Box::new(redactor), parts, claim, env, audit).await,
        (Err(e), Some(claim)) => Err(store_error(claim, env, e, audit).await),
        (Err(e), None) => Err(e),
    }
}

/// A refused MCP message, answered by Airlock as the JSON-RPC error an MCP
/// client expects; the origin sees nothing.
pub fn mcp_refusal(response: Vec<u8>, reason: &'static str, status: u16, audit: &mut AuditRecord) -> Response {
    audit.deny_mcp(reason);
    let headers = Headers::new();
    let _ = headers.set("content-type", "application/json");
    Response::builder().with_status(status).with_headers(headers).fixed(response)
}

/// A gated or deduplicated MCP tool call refused at admission, answered in
/// MCP terms: the approval to ask for (an `input_required` result in
/// 2026-07-28, else a JSON-RPC error with the approval id and URL), or the
/// gate's refusal as a JSON-RPC error. Any other refusal stays an error.
pub fn mcp_gated(
    error: Error,
    authorized: &McpAuthorized<'_>,
    keys: &KeyRing,
    server: &str,
    base: Option<&str>,
    now_s: u64,
    audit: &mut AuditRecord,
) -> Result<Response, Error> {
    let (Some(mcp::Verdict::Forward { call, .. }), Some((_, params))) = (&authorized.verdict, &authorized.gate.call) else { return Err(error) };
    let Some(tool) = &call.target else { return Err(error) };
    let at = gate::CallRef { session_id: &authorized.gate.session_id, server, tool, params };
    match gate::answer(&error, call, authorized.gate.presented.as_deref(), keys, &at, base.unwrap_or_default(), now_s) {
        Some((response, status)) => {
            audit.detail = Some(error.detail());
            Ok(mcp_refusal(response, error.code(), status, audit))
        }
        None => Err(error),
    }
}

/// The stored result of an identical earlier call to a deduplicated tool,
/// with this call's JSON-RPC id.
pub fn mcp_replayed(answer: StoredAnswer, authorized: &McpAuthorized<'_>, audit: &mut AuditRecord) -> Response {
    let id = authorized.verdict.as_ref().and_then(|v| v.call().id.clone()).unwrap_or_default();
    let stored = answer.body.as_deref().and_then(|b| STANDARD.decode(b).ok()).unwrap_or_default();
    let (status, body) = gate::replay(answer.status, &stored, &id);
    audit.allow(None);
    audit.mcp_replay = Some(true);
    let headers = Headers::new();
    let _ = headers.set("content-type", mcp::CANONICAL_CONTENT_TYPE);
    let _ = headers.set("x-airlock-idempotent-replay", "true");
    Response::builder().with_status(status).with_headers(headers).fixed(body)
}

/// Filter response for an MCP exchange: the origin's session id handed out
/// bound to this session; event streams filtered event by event; every
/// other answer read whole and filtered by shape (a list result passes
/// filtered whatever its id says, and what cannot be read strictly is
/// replaced, never passed). The answer of a deduplicated call (`claim`) is
/// read whole, whatever its type, and stored for identical calls; a
/// failure after forwarding is stored as its answer (the origin may have
/// acted).
pub async fn finish_mcp(
    upstream: Result<Response, Error>,
    exchange: McpExchange<'_>,
    redactor: Redactor,
    at: McpParts<'_>,
    claim: Option<Claim>,
    audit: &mut AuditRecord,
) -> Result<Response, Error> {
    if claim.is_some() {
        audit.mcp_replay = Some(false);
    }
    match mcp_answer(upstream, exchange, redactor, &at, claim.as_ref(), audit).await {
        Err(e) => Err(match claim {
            Some(claim) => store_error(claim, at.env, e, audit).await,
            None => e,
        }),
        answered => answered,
    }
}

/// What finishing an MCP answer needs besides the exchange itself.
#[derive(Clone, Copy)]
pub struct McpParts<'a> {
    pub keys: &'a KeyRing,
    pub limits: &'a Limits,
    pub slot: &'a SharedAudit,
    pub ctx: &'a Context,
    pub env: &'a Env,
}

async fn mcp_answer(
    upstream: Result<Response, Error>,
    exchange: McpExchange<'_>,
    redactor: Redactor,
    at: &McpParts<'_>,
    claim: Option<&Claim>,
    audit: &mut AuditRecord,
) -> Result<Response, Error> {
    let McpParts { keys, limits, slot, ctx, env } = *at;
    let (status, mut headers, upstream) = response_head(upstream?, &exchange.outbound, &redactor, |_| None, audit)?;
    let stateless = exchange.call.as_ref().is_some_and(|c| c.era == mcp::Era::Stateless);
    // 2026-07-28 has no sessions: an origin's id is not handed out.
    if let Some(i) = headers.iter().position(|(n, _)| n == "mcp-session-id") {
        let (_, origin_sid) = headers.remove(i);
        if !stateless {
            let bound = mcp::bind_session_id(&origin_sid, &exchange.session_id, keys)
                .ok_or_else(|| Error::UpstreamUnavailable { detail: "origin sent an unusable Mcp-Session-Id".into() })?;
            headers.push(("mcp-session-id".into(), bound));
        }
    }
    let content_type = headers.iter().find(|(n, _)| n == "content-type").map(|(_, v)| v.to_ascii_lowercase()).unwrap_or_default();
    let McpExchange { outbound, call, rules, granted, .. } = exchange;
    let parts = Parts { outbound: &outbound, limits, slot, ctx };
    let stream = content_type.starts_with("text/event-stream");
    if claim.is_none() && (stream || outbound.method().as_str() == "HEAD" || matches!(status, 202 | 204 | 205 | 304)) {
        let filter: Box<dyn BodyFilter> = if stream { Box::new(mcp::EventFilter::new(redactor, call, rules.clone(), granted)) } else { Box::new(redactor) };
        return finish_response(upstream, status, headers, parts.outbound, filter, parts.limits, audit, parts.slot, parts.ctx).await;
    }
    let mut body = Vec::new();
    let mut upstream = upstream;
    if let Ok(mut stream) = upstream.stream() {
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| Error::UpstreamUnavailable { detail: "MCP answer body failed".into() })?;
            if body.len() + chunk.len() > 16 * mcp::MAX_MESSAGE {
                return Err(Error::UpstreamUnavailable { detail: "MCP answer body too large".into() });
            }
            body.extend_from_slice(&chunk);
        }
    }
    let filtered = match call {
        // A deduplicated call's event stream, filtered and scrubbed whole.
        call if stream => {
            let mut filter = mcp::EventFilter::new(redactor, call, rules.clone(), granted);
            let mut out = filter.push(&body).map_err(|_| Error::UpstreamUnavailable { detail: "MCP event too large".into() })?;
            out.extend(filter.finish());
            out
        }
        Some(call) => redactor.redact(&mcp::filter_message(&body, &call, rules, granted)),
        None => redactor.redact(&mcp::filter_origin_message(&body, None, rules, granted)),
    };
    if let Some(claim) = claim {
        // Too large to keep: answered once; identical calls get an error.
        let kept = (filtered.len() as u64 <= claim.max_body).then_some(filtered.as_slice());
        store(env, claim, status, &[], kept, audit).await;
    }
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

/// Filter response for a package index's page: an index document is read
/// whole (capped), its links rewritten onto the egress route, and answered
/// in place of the origin's body; it is refused rather than passed when it
/// cannot be read or rewritten. Any other answer is returned as it is.
pub async fn index_page(
    upstream: Response,
    (status, headers): (u16, &[(String, String)]),
    method: &str,
    links: &Links<'_>,
    limits: &Limits,
) -> Result<Response, Error> {
    let rewritten = async {
        let Some(format) = index::format(method, status, headers)? else {
            return Ok(upstream);
        };
        let cap = index::MAX_BODY.min(limits.max_response_body_bytes);
        let body = read_whole(&upstream, cap, limits.upstream_idle_timeout_ms).await.map_err(|_| Uninspectable::Index("body failed or stalled"))?;
        let mut out = links.rewrite(format, &body.ok_or(Uninspectable::Index("larger than the cap"))?)?;
        let page = web_sys::Response::new_with_opt_u8_array(Some(&mut out)).map_err(|_| Uninspectable::Index("unbuildable"))?;
        Ok(Response::from(page))
    };
    rewritten.await.map_err(|why| Error::UpstreamUninspectable { status, why })
}

/// Bodies up to this declared length are read whole instead of streamed.
const SMALL_BODY: u64 = 64 * 1024;

/// Reads a small body of declared length in one call, bounded by the idle
/// timeout.
async fn read_small(upstream: &Response, idle_ms: u64) -> Result<Vec<u8>, ()> {
    let bytes = match upstream.body() {
        ResponseBody::Stream(stream) => deadline::read_all(stream, idle_ms).await?,
        ResponseBody::Body(bytes) => bytes.clone(),
        ResponseBody::Empty => Vec::new(),
    };
    Some(bytes).filter(|b| b.len() as u64 <= SMALL_BODY).ok_or(())
}

/// Filter response, second half: the body, streamed through `filter`, cut
/// off at the policy's size and idle limits; the audit record follows the
/// stream to its end.
#[allow(clippy::too_many_arguments)]
pub async fn finish_response(
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
    let idle_ms = outbound.idle_timeout_ms(limits.upstream_idle_timeout_ms);
    let null_body = outbound.method().as_str() == "HEAD" || matches!(status, 101 | 204 | 205 | 304);
    let small = upstream
        .headers()
        .get("content-length")
        .ok()
        .flatten()
        .and_then(|v| request::parse_content_length(&v).ok())
        .filter(|&len| len <= SMALL_BODY && len <= limits.max_response_body_bytes);
    let streamed = matches!(upstream.body(), worker::ResponseBody::Stream(_));
    let response = match upstream.body() {
        _ if streamed && !null_body && small.is_some() => {
            // A small body of declared length is read in one call and
            // scrubbed whole: a stream costs more than the body itself.
            let bytes = read_small(&upstream, idle_ms).await;
            let mut filter = filter;
            let out = match bytes.map(|b| {
                filter.push(&b).map(|mut out| {
                    out.extend(filter.finish());
                    out
                })
            }) {
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
            let limits = BodyLimits { max_bytes: limits.max_response_body_bytes, idle_ms };
            ctx.wait_until(audit_watchdog(Rc::downgrade(slot), limits.idle_ms));
            Response::from_stream(filtered_body(body, filter, limits, slot.clone())).map_err(|_| Error::Internal("building response stream".into()))?
        }
        _ => Response::builder().empty(),
    };
    audit.allow(Some(status));
    Ok(response.with_status(status).with_headers(headers))
}

/// What finishing a response needs besides the response itself.
pub struct Parts<'a> {
    pub outbound: &'a Outbound,
    pub limits: &'a Limits,
    pub slot: &'a SharedAudit,
    pub ctx: &'a Context,
}

/// Filter response for a request that claimed an idempotency key: the body
/// is read through the filter and stored with the status and headers, then
/// sent. A body larger than the store's cap is streamed on instead, and the
/// key is kept as answered without a replayable body.
#[allow(clippy::too_many_arguments)]
pub async fn finish_idempotent(
    upstream: Response,
    status: u16,
    filtered: Vec<(String, String)>,
    mut filter: Box<dyn BodyFilter>,
    parts: Parts<'_>,
    claim: Claim,
    env: &Env,
    audit: &mut AuditRecord,
) -> Result<Response, Error> {
    let null_body = parts.outbound.method().as_str() == "HEAD" || matches!(status, 101 | 204 | 205 | 304);
    let raw = match upstream.body() {
        worker::ResponseBody::Stream(body) if !null_body => Some(body.clone()),
        _ => None,
    };
    let headers = Headers::new();
    for (name, value) in &filtered {
        let _ = headers.append(name, value);
    }
    let Some(raw) = raw else {
        store(env, &claim, status, &filtered, Some(&[]), audit).await;
        audit.allow(Some(status));
        return Ok(Response::builder().with_status(status).with_headers(headers).empty());
    };
    let cap = claim.max_body;
    let limits = BodyLimits { max_bytes: parts.limits.max_response_body_bytes, idle_ms: parts.outbound.idle_timeout_ms(parts.limits.upstream_idle_timeout_ms) };
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
            store(env, &claim, status, &filtered, Some(&out), audit).await;
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
            store(env, &claim, status, &filtered, None, audit).await;
            parts.ctx.wait_until(audit_watchdog(Rc::downgrade(parts.slot), limits.idle_ms));
            let body = filtered_source(source, out, received, filter, limits, parts.slot.clone());
            let response = Response::from_stream(body).map_err(|_| Error::Internal("building response stream".into()))?;
            audit.allow(Some(status));
            return Ok(response.with_status(status).with_headers(headers));
        }
    }
}
