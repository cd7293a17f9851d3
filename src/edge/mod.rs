//! The edge adapter: the only code that touches the Workers runtime.
//!
//! It turns the platform request into plain data once, then runs each
//! route as its phase sequence — parse → authenticate → authorize → admit
//! → inject → forward → filter response → audit — calling the deciding
//! core for every decision and doing only the I/O itself: secrets,
//! bindings, the state objects, fetch, the clock and randomness. Exactly
//! one audit record is written per request.
//!
//! | phase | decides (core) | runs (edge) |
//! |---|---|---|
//! | parse | `request`, `path`, `route` | [`fetch`], `body` |
//! | authenticate, authorize | `authenticate`, `authorize` | — |
//! | admit | `admit` | `admit`, `state`, `deadline` |
//! | inject | `inject`, `upstream` | `config` (credentials), `upstream` (minted tokens) |
//! | forward | — | `forward`, `deadline` |
//! | filter response | `respond`, `redact`, `mcp`, `index` | `respond`, `body`, `deadline` |
//! | audit | `audit` | `audit` |
//!
//! Must never: return an `Err` to the runtime (its text would reach the
//! client), panic on input, log a secret, or buffer a body it does not have
//! to: only bodies that must be hashed (proofs, idempotency keys, approvals,
//! capped by the policy), stored for replay (capped) or rewritten (a
//! package index's pages, capped) are read whole.

use std::cell::RefCell;
use std::rc::Rc;

use worker::{event, Context, Env, Request, Response};

mod admit;
mod approve;
mod audit;
mod body;
mod config;
mod control;
mod deadline;
mod forward;
mod http;
mod respond;
mod secrets;
mod state;
mod upstream;

use self::admit::{admit, release, replayed};
use self::audit::{AuditSlot, SharedAudit};
use self::config::{load_keys, load_policy, random_bytes};
use self::forward::{forward, Body};
use self::http::{error_response, REQUEST_ID_HEADER};
use self::respond::{finish_mcp, finish_response, finish_tool, index_page, mcp_gated, mcp_refusal, mcp_replayed, response_head, McpParts, Parts};
use crate::admit::{Gated, Received};
use crate::audit::AuditRecord;
use crate::authorize;
use crate::egress;
use crate::error::Error;
use crate::hex::hex;
use crate::index;
use crate::inject::{self, McpOutbound};
use crate::mcp;
use crate::redact::Redactor;
use crate::request::{check_sizes, EgressRequest, McpRequest, ToolRequest};
use crate::route::{route, split_url, url_host, Route};

#[event(fetch)]
pub async fn fetch(req: Request, env: Env, ctx: Context) -> worker::Result<Response> {
    let started = http::now_ms();
    let method = req.inner().method();
    let (request_id, id_error) = match random_bytes::<16>() {
        Ok(b) => (hex(&b), None),
        Err(e) => (format!("t{started}"), Some(e)),
    };
    let text_errors = crate::error::wants_text(req.headers().get("user-agent").ok().flatten().as_deref());
    let slot: SharedAudit = Rc::new(RefCell::new(AuditSlot::new(started)));
    slot.borrow_mut().env = Some(env.clone());
    let mut audit = AuditRecord::new(request_id.clone(), &method, started);
    let result = match id_error {
        Some(e) => Err(e),
        None => handle(req, &env, &ctx, &mut audit, &slot, started).await,
    };
    let mut response = match result {
        Ok(response) => response,
        Err(error) => {
            audit.fail(&error);
            error_response(&error, text_errors)
        }
    };
    let _ = response.headers_mut().set(REQUEST_ID_HEADER, &request_id);
    slot.borrow_mut().record = Some(audit);
    let outbox = slot.borrow().outbox.clone();
    // Dropping `slot` here writes the record unless a body stream holds it
    // (then the stream's watchdog appends it to the trail).
    drop(slot);
    if outbox.borrow().is_some() {
        ctx.wait_until(self::audit::append_trail(env, outbox));
    }
    Ok(response)
}

/// Parse, then dispatch by route; each route is its phase sequence.
async fn handle(mut req: Request, env: &Env, ctx: &Context, audit: &mut AuditRecord, slot: &SharedAudit, now_ms: u64) -> Result<Response, Error> {
    // An invalid policy refuses every route, health included: nothing runs
    // on a configuration that was not fully understood.
    let policy = load_policy(env)?;
    let url = req.inner().url();
    let headers = http::header_pairs(req.headers()).map_err(|_| Error::InvalidRequest("unreadable request headers".into()))?;
    check_sizes(&url, &headers)?;
    let (raw_path, query) = split_url(&url).ok_or_else(|| Error::InvalidRequest("unparseable request URL".into()))?;
    let method = req.inner().method();
    let now_s = now_ms / 1000;
    let received = Received { method: &method, raw_path, query: query.unwrap_or(""), headers: &headers };
    let timeout = policy.limits.upstream_timeout_ms;
    match route(raw_path) {
        Route::Health => control::health(&method, env, audit).await,
        Route::Sessions if matches!(method.as_str(), "GET" | "DELETE") => control::sessions(&req, env, query.unwrap_or(""), audit).await,
        Route::Sessions => control::mint_session(req, env, audit).await,
        Route::Session { id } => control::session(&req, env, id, false, audit).await,
        Route::SessionAudit { id } => control::session(&req, env, id, true, audit).await,
        Route::Approvals => control::approvals(&req, env, audit).await,
        Route::Approval { id, action } => control::approval(req, env, id, action, audit).await,
        Route::ApprovalPage { link } => Ok(approve::page(req, env, &policy, link, audit).await),
        Route::Tool { tool, rest } => {
            audit.route = "tool";
            let keys = load_keys(env).await?;
            let request = ToolRequest { tool, rest, method: &method, query, headers: &headers };
            let authorized = authorize::tool(&policy, &keys, &request, now_s, audit)?;
            let limit = authorized.body_limit;
            // An AWS tool's SigV4 signature is verified before admission,
            // over the body when it signs the body's hash.
            let signed = inject::aws::presented(&authorized, &request, &keys, now_s)?;
            let known = match &signed {
                Some(s) if s.needs_body() => Some(body::read_body(&mut req, limit).await?),
                _ => None,
            };
            let verified = signed.map(|s| s.verify(known.as_deref())).transpose()?;
            let (admitted, body) = match admit(&mut req, env, &policy, &keys, &authorized.gate, &received, known.as_deref(), limit, audit, now_ms).await? {
                (Gated::Replay(answer), _) => return Ok(replayed(answer, audit)),
                (Gated::Admitted(admitted), body) => (admitted, body.or(known)),
            };
            // A minted credential is obtained before injection; a failure
            // releases the admission and forwards nothing.
            let minted = match upstream::obtain(env, &authorized.permit, audit, now_s).await {
                Ok(minted) => minted,
                Err(e) => return Err(release(admitted, env, e).await),
            };
            // An AWS tool's key is static secrets, signed with, not minted.
            let injected = match verified {
                Some(v) => inject::aws::tool(authorized, &admitted, &request, v, |name| minted.read(name), now_s),
                None => inject::tool(authorized, &admitted, &request, |name| minted.read(name)),
            };
            let mut outbound = match injected {
                Ok(outbound) => outbound,
                Err(e) => return Err(release(admitted, env, e).await),
            };
            let redactor = outbound.take_filter();
            let source = body.as_deref().map_or(Body::Inbound(&req), Body::Bytes);
            let upstream = forward(source, env, &outbound, &redactor, outbound.timeout_ms(timeout)).await;
            let parts = Parts { outbound: &outbound, limits: &policy.limits, slot, ctx };
            finish_tool(upstream, redactor, parts, admitted.into_claim(), env, audit).await
        }
        Route::Egress { authority, rest } => {
            audit.route = "egress";
            let keys = load_keys(env).await?;
            let own_host = url_host(&url);
            let request = EgressRequest { authority, rest, method: &method, query, headers: &headers };
            let authorized = authorize::egress(&policy, &keys, &request, now_s, audit, own_host.as_deref())?;
            let limit = authorized.body_limit;
            let (admitted, body) = match admit(&mut req, env, &policy, &keys, &authorized.gate, &received, None, limit, audit, now_ms).await? {
                (Gated::Admitted(admitted), body) => (admitted, body),
                (Gated::Replay(_), _) => return Err(Error::Internal("idempotent replay on the egress route".into())),
            };
            let outbound = inject::egress(authorized, &admitted, &request);
            let redactor = Redactor::new(Vec::new());
            let source = body.as_deref().map_or(Body::Inbound(&req), Body::Bytes);
            let upstream = forward(source, env, &outbound, &redactor, outbound.timeout_ms(timeout)).await?;
            // Egress answers never carry cookies back, and redirects are
            // rewritten to the egress route or dropped.
            let relocate = |location: &str| egress::rewrite_location(location, outbound.url(), &policy.egress, own_host.as_deref());
            let (status, headers, upstream) = response_head(upstream, &outbound, &redactor, relocate, audit)?;
            // A package index's pages have their links rewritten onto the
            // egress route, or are refused.
            let upstream = match index::Links::new(outbound.url(), &url, &policy.egress, own_host.as_deref()) {
                Some(links) => index_page(upstream, (status, &headers), &method, &links, &policy.limits).await?,
                None => upstream,
            };
            finish_response(upstream, status, headers, &outbound, Box::new(redactor), &policy.limits, audit, slot, ctx).await
        }
        Route::Mcp { server } => {
            audit.route = "mcp";
            let keys = load_keys(env).await?;
            let body = match method.as_str() {
                "POST" => Some(body::read_capped(&mut req, mcp::MAX_MESSAGE).await.map_err(|_| Error::McpInvalid(mcp::McpError::TooLarge))?),
                _ => None,
            };
            let request = McpRequest { server, method: &method, headers: &headers, body: body.as_deref() };
            let authorized = authorize::mcp(&policy, &keys, &request, now_s, audit)?;
            let known = Some(body.as_deref().unwrap_or_default());
            // A gated or deduplicated tool call refused at admission is
            // answered in MCP terms (an approval to ask for, a replay).
            let admitted = match admit(&mut req, env, &policy, &keys, &authorized.gate, &received, known, u64::MAX, audit, now_ms).await {
                Ok((Gated::Admitted(admitted), _)) => admitted,
                Ok((Gated::Replay(answer), _)) => return Ok(mcp_replayed(answer, &authorized, audit)),
                Err(e) => {
                    return mcp_gated(e, &authorized, &keys, server, policy.approvals.page_url.as_deref().or(crate::approval::origin_of(&url)), now_s, audit)
                }
            };
            let minted = match authorized.verdict {
                Some(mcp::Verdict::Refuse { .. }) => upstream::Obtained::Nothing,
                _ => match upstream::obtain(env, &authorized.permit, audit, now_s).await {
                    Ok(minted) => minted,
                    Err(e) => return Err(release(admitted, env, e).await),
                },
            };
            let mut exchange = match inject::mcp(authorized, &admitted, &request, &keys, |name| minted.read(name)) {
                Ok(McpOutbound::Refused { response, reason, status, .. }) => return Ok(mcp_refusal(response, reason, status, audit)),
                Ok(McpOutbound::Exchange(exchange)) => exchange,
                Err(e) => return Err(release(admitted, env, e).await),
            };
            let claim = admitted.into_claim();
            let redactor = exchange.outbound.take_filter();
            let source = exchange.body.as_ref().map_or(Body::Inbound(&req), |b| Body::Bytes(b.as_bytes()));
            let upstream = forward(source, env, &exchange.outbound, &redactor, exchange.outbound.timeout_ms(timeout)).await;
            let at = McpParts { keys: &keys, limits: &policy.limits, slot, ctx, env };
            finish_mcp(upstream, *exchange, redactor, at, claim, audit).await
        }
        Route::NotFound => Err(Error::NotFound),
    }
}
