//! Admit at the edge: carries the commands of [`crate::admit`] to the
//! session-state Durable Objects, reads the body whole when a proof, an
//! idempotency key or an approval binds it, and stores the answers of
//! idempotent requests.
//!
//! Must never: decide anything itself; every reply goes back to the pure
//! admission code, and anything but a clear answer refuses the request.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use worker::{Delay, Env, Headers, Request, Response};

use super::audit::{carried, carry_lines};
use super::body::read_body;
use super::config::{random_bytes, worker_secret};
use super::state::call;
use crate::admit::{self, Admitted, Claim, Gated, Received, StateCalls};
use crate::approval::{mint_link, LinkKey, KEY_SECRET, PAGE_PREFIX};
use crate::audit::AuditRecord;
use crate::authorize::Gate;
use crate::error::Error;
use crate::hex::hex;
use crate::policy::Policy;
use crate::state::outbox::Notify;
use crate::state::session::StoredAnswer;
use crate::state::{Command, Reply};
use crate::token::KeyRing;

/// How often a duplicate idempotent request checks whether the first finished.
const IDEM_POLL: Duration = Duration::from_millis(50);

/// The state as admission reaches it from the worker.
struct EdgeState<'a> {
    env: &'a Env,
    /// Until when a duplicate of an in-flight request keeps waiting.
    deadline_ms: u64,
    /// Time spent waiting on the state, for the audit record.
    spent_ms: std::cell::Cell<Option<u64>>,
    policy: &'a Policy,
    /// The worker's own origin, the base of approval-page links by default.
    own_origin: &'a str,
    /// Aborts when the client hangs up (`enable_request_signal`).
    signal: web_sys::AbortSignal,
}

impl StateCalls for EdgeState<'_> {
    async fn call(&self, object: &str, command: &Command) -> Result<Reply, Error> {
        let started = super::http::now_ms();
        // A session's admission carries the audit lines of its earlier
        // requests that wait in this isolate (`edge::audit`).
        let carrying = match command {
            Command::Admit { admission, .. } => {
                let trail = carry_lines(object);
                (!trail.is_empty()).then(|| Command::Admit { admission: admission.clone(), trail })
            }
            _ => None,
        };
        let reply = call(self.env, object, carrying.as_ref().unwrap_or(command)).await;
        if let Some(Command::Admit { trail, .. }) = carrying {
            carried(self.env, object, trail, &reply).await;
        }
        let spent = super::http::now_ms().saturating_sub(started);
        self.spent_ms.set(Some(self.spent_ms.get().unwrap_or(0) + spent));
        reply
    }

    async fn wait(&self) -> bool {
        if super::http::now_ms() >= self.deadline_ms {
            return false;
        }
        Delay::from(IDEM_POLL).await;
        true
    }

    fn approval_id(&self) -> Result<String, Error> {
        Ok(format!("ap_{}", hex(&random_bytes::<16>()?)))
    }

    fn notify(&self, id: &str, expires_at: u64) -> Option<Notify> {
        let a = &self.policy.approvals;
        let dest = a.webhook.clone()?;
        // Without AIRLOCK_APPROVAL_KEY the event has no page link.
        let key = worker_secret(self.env, KEY_SECRET).and_then(|k| LinkKey::parse(&String::from_utf8_lossy(k.expose())));
        let base = a.page_url.as_deref().unwrap_or(self.own_origin);
        let page = key.map(|k| format!("{base}{PAGE_PREFIX}{}", mint_link(&k, id, expires_at)));
        Some(Notify { dest, secret: a.webhook_secret.clone(), page })
    }

    fn client_gone(&self) -> bool {
        self.signal.aborted()
    }
}

/// Runs admission for a request; `known_body` is a body already read (an
/// MCP message). Returns the outcome and the body when it was read here.
#[allow(clippy::too_many_arguments)]
pub async fn admit(
    req: &mut Request,
    env: &Env,
    policy: &Policy,
    keys: &KeyRing,
    gate: &Gate,
    received: &Received<'_>,
    known_body: Option<&[u8]>,
    body_limit: u64,
    audit: &mut AuditRecord,
    now_ms: u64,
) -> Result<(Gated, Option<Vec<u8>>), Error> {
    let read = match known_body {
        None if admit::needs_body(gate, received)? => Some(read_body(req, body_limit).await?),
        _ => None,
    };
    let body = known_body.or(read.as_deref()).unwrap_or_default();
    let url = req.inner().url();
    let own_origin = crate::approval::origin_of(&url).unwrap_or_default();
    let state = EdgeState {
        env,
        deadline_ms: now_ms + policy.limits.upstream_timeout_ms + 5_000,
        spent_ms: std::cell::Cell::new(None),
        policy,
        own_origin,
        signal: req.inner().signal(),
    };
    let gated = admit::run(&state, gate, received, body, keys, &policy.limits, now_ms / 1000, audit).await;
    if let Some(spent) = state.spent_ms.get() {
        audit.state_ms = Some(audit.state_ms.unwrap_or(0) + spent);
    }
    Ok((gated?, read))
}

/// Stores the answer the sandbox got for a claimed idempotency key.
/// `body` is `None` when it was larger than the cap. A failure to store is
/// audited, not hidden.
pub async fn store(env: &Env, claim: &Claim, status: u16, headers: &[(String, String)], body: Option<&[u8]>, audit: &mut AuditRecord) {
    let answer = StoredAnswer { status, headers: headers.to_vec(), body: body.map(|b| STANDARD.encode(b)) };
    audit.idempotency = match call(env, &claim.object, &claim.complete(answer)).await {
        Ok(Reply::Done) if body.is_some() => Some("stored"),
        Ok(Reply::Done) => Some("not_stored"),
        _ => Some("store_failed"),
    };
}

/// Keeps Airlock's own error as the answer of a claimed idempotency key
/// and returns it. The request was sent, so the origin may have acted: the
/// failure is the answer, replayed like any other.
pub async fn store_error(claim: Claim, env: &Env, error: Error, audit: &mut AuditRecord) -> Error {
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    headers.extend(error.headers().into_iter().map(|(n, v)| (n.to_string(), v)));
    store(env, &claim, error.status(), &headers, Some(error.wire_body().as_bytes()), audit).await;
    error
}

/// The stored answer of an earlier request with the same idempotency key.
pub fn replayed(answer: StoredAnswer, audit: &mut AuditRecord) -> Response {
    let headers = Headers::new();
    for (name, value) in &answer.headers {
        let _ = headers.append(name, value);
    }
    let _ = headers.set("x-airlock-idempotent-replay", "true");
    audit.allow(None);
    let body = answer.body.as_deref().and_then(|b| STANDARD.decode(b).ok()).unwrap_or_default();
    Response::builder().with_status(answer.status).with_headers(headers).fixed(body)
}

/// An admitted request that will not be forwarded frees its idempotency
/// key, so a corrected retry can use it.
pub async fn release(admitted: Admitted, env: &Env, error: Error) -> Error {
    if let Some(claim) = admitted.into_claim() {
        let _ = call(env, &claim.object, &claim.abort()).await;
    }
    error
}
