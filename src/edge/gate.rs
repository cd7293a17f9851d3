//! The state phase of a session-bound request, between authorization and
//! forwarding: proof, revocation, replay and rate limits (one call to the
//! session's object), then idempotency and approval gates.
//!
//! Invariant: nothing is forwarded unless every check answered "pass"; a
//! state failure refuses the request (503). Only a request that is about
//! to be forwarded holds an idempotency claim, and a claim that will not be
//! forwarded is released.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use worker::{Date, Delay, Env, Request};

use super::state::call;
use crate::audit::AuditRecord;
use crate::error::Error;
use crate::inject::Outbound;
use crate::pipeline::{header, idempotency_key, Gate};
use crate::policy::Policy;
use crate::proof::{self, Signed};
use crate::hex::hex;
use crate::state::approvals::{self, Approval};
use crate::state::session::{Admission, IdemBegin, NonceCheck, Refusal, StoredAnswer};
use crate::state::{Command, Reply};
use crate::token::{KeyRing, TokenError};

const APPROVAL_HEADER: &str = "x-airlock-approval";
/// How often a duplicate idempotent request checks whether the first finished.
const IDEM_POLL: Duration = Duration::from_millis(50);

/// The request as received, for proofs and digests.
pub struct Received<'a> {
    pub method: &'a str,
    pub raw_path: &'a str,
    pub query: &'a str,
    pub headers: &'a [(String, String)],
}

/// An idempotency key this request claimed: its answer must be stored.
pub struct Claim {
    object: String,
    key: String,
    digest: String,
    expires_s: u64,
    pub max_body: u64,
}

pub enum Gated {
    /// Forward; `body` is set when it was read whole to be hashed.
    Pass { body: Option<Vec<u8>>, claim: Option<Claim> },
    /// The stored answer of an idempotent request with the same key.
    Replay(StoredAnswer),
}

/// The name of a session's state object.
pub fn session_object(id: &str) -> String {
    format!("session:{id}")
}

pub const APPROVALS_OBJECT: &str = "approvals";

/// Runs one state call, adding its wait to the audit record.
async fn timed(env: &Env, object: &str, command: &Command, audit: &mut AuditRecord) -> Result<Reply, Error> {
    let started = Date::now().as_millis();
    let reply = call(env, object, command).await;
    let spent = Date::now().as_millis().saturating_sub(started);
    audit.state_ms = Some(audit.state_ms.unwrap_or(0) + spent);
    reply
}

fn unexpected() -> Error {
    Error::StateUnavailable("state object: unexpected answer".into())
}

#[allow(clippy::too_many_arguments)]
pub async fn gate(
    req: &mut Request,
    env: &Env,
    policy: &Policy,
    keys: &KeyRing,
    outbound: &Outbound,
    received: &Received<'_>,
    known_body: Option<&[u8]>,
    audit: &mut AuditRecord,
    now_ms: u64,
) -> Result<Gated, Error> {
    let g: &Gate = &outbound.gate;
    let now_s = now_ms / 1000;
    let presented = header(received.headers, proof::HEADER);
    let key = if g.idempotent() { idempotency_key(received.headers)? } else { None };
    let body = match known_body {
        Some(_) => None,
        None if g.needs_body(presented.is_some(), key.is_some()) => Some(super::read_body(req, outbound.body_limit).await?),
        None => None,
    };
    // The body digest is only computed for what binds it: a proof, an
    // idempotency record or an approval.
    let proving = g.proof_required || presented.is_some();
    let binding = key.is_some() || g.approval;
    let body_sha256 = if proving || binding { proof::body_sha256(known_body.or(body.as_deref()).unwrap_or_default()) } else { String::new() };

    // proof of possession
    let mut nonce = None;
    if proving {
        let proof_key = keys.proof_key(&g.kid, &g.session_id).ok_or(Error::InvalidSession(TokenError::UnknownKey))?;
        let signed = Signed { session_id: &g.session_id, method: received.method, path: received.raw_path, query: received.query, body_sha256: &body_sha256 };
        let window = policy.limits.proof_window_seconds;
        let verified = proof::verify(presented, &signed, &proof_key, now_s, window).map_err(Error::Proof)?;
        nonce = Some(NonceCheck { digest: hex(&verified.nonce_digest), ts: verified.ts, window });
    }

    // revocation, replay, rate limits: one call, decided atomically
    let proved = nonce.is_some();
    let admission = Admission { tool: g.tool.clone(), nonce, session_rate: g.session_rate, tool_rate: g.tool_rate };
    let object = session_object(&g.session_id);
    match timed(env, &object, &Command::Admit { admission }, audit).await? {
        Reply::Admitted { refusal: None } => {}
        Reply::Admitted { refusal: Some(r) } => {
            return Err(match r {
                Refusal::Revoked => Error::SessionRevoked,
                Refusal::Expired => Error::InvalidSession(TokenError::Expired { exp: now_s, now: now_s }),
                Refusal::ProofStale => Error::Proof(proof::ProofError::Stale),
                Refusal::ProofReplayed => Error::Proof(proof::ProofError::Replayed),
                Refusal::RateLimited { tool, retry_after_s } => {
                    audit.rate_limit = Some(if tool { "tool" } else { "session" });
                    Error::RateLimited { tool, retry_after_s }
                }
            })
        }
        _ => return Err(unexpected()),
    }
    if proved {
        audit.proof = Some("verified");
    }

    if !binding {
        return Ok(Gated::Pass { body, claim: None });
    }
    let digest = g.request_digest(received.method, received.query, &body_sha256);

    // idempotency: a replay or a claim, before any approval is spent
    let mut claim = None;
    if let Some(key) = key {
        let expires_s = now_s + policy.limits.idempotency_ttl_seconds;
        let command = Command::IdemBegin { key: key.to_string(), digest: digest.clone(), expires_s };
        // A duplicate of a request still in flight waits for its answer.
        let deadline = now_ms + policy.limits.upstream_timeout_ms + 5_000;
        loop {
            let outcome = match timed(env, &object, &command, audit).await? {
                Reply::Idem { outcome } => outcome,
                _ => return Err(unexpected()),
            };
            match outcome {
                IdemBegin::Fresh => break,
                IdemBegin::Replay(answer) => {
                    if answer.body.is_none() {
                        audit.idempotency = Some("not_stored");
                        return Err(Error::IdempotencyNotStored { status: answer.status });
                    }
                    audit.idempotency = Some("replayed");
                    return Ok(Gated::Replay(answer));
                }
                IdemBegin::Mismatch => {
                    audit.idempotency = Some("key_reused");
                    return Err(Error::IdempotencyKeyReused);
                }
                IdemBegin::InFlight if Date::now().as_millis() < deadline => Delay::from(IDEM_POLL).await,
                IdemBegin::InFlight => {
                    audit.idempotency = Some("in_flight");
                    return Err(Error::IdempotencyInFlight);
                }
            }
        }
        claim = Some(Claim { object: object.clone(), key: key.to_string(), digest: digest.clone(), expires_s, max_body: policy.limits.idempotency_max_body_bytes });
    }

    // approval gate
    if g.approval {
        if let Err(e) = approval(env, policy, g, received, &body_sha256, &digest, audit, now_s).await {
            if let Some(c) = &claim {
                // Not forwarded: the key is free for the approved retry.
                let _ = call(env, &c.object, &Command::IdemAbort { key: c.key.clone(), digest: c.digest.clone() }).await;
            }
            return Err(e);
        }
    }
    Ok(Gated::Pass { body, claim })
}

#[allow(clippy::too_many_arguments)]
async fn approval(env: &Env, policy: &Policy, g: &Gate, received: &Received<'_>, body_sha256: &str, digest: &str, audit: &mut AuditRecord, now_s: u64) -> Result<(), Error> {
    if let Some(id) = header(received.headers, APPROVAL_HEADER) {
        audit.approval_id = Some(id.chars().take(64).collect());
        let command = Command::Consume { id: id.to_string(), digest: digest.to_string() };
        return match call(env, APPROVALS_OBJECT, &command).await? {
            Reply::Consumed { result: Ok(approver) } => {
                audit.approved_by = Some(approver);
                Ok(())
            }
            Reply::Consumed { result: Err(approvals::Refusal::Pending) } => Err(Error::ApprovalPending),
            Reply::Consumed { result: Err(approvals::Refusal::Denied) } => Err(Error::ApprovalDenied),
            Reply::Consumed { result: Err(approvals::Refusal::Invalid) } => Err(Error::ApprovalInvalid),
            _ => Err(unexpected()),
        };
    }
    let id = format!("ap_{}", hex(&super::random_bytes::<16>()?));
    let held = Approval {
        approval_id: id,
        status: approvals::Status::Pending,
        session_id: g.session_id.clone(),
        agent: audit.agent.clone().unwrap_or_default(),
        user: audit.user.clone().unwrap_or_default(),
        tool: g.tool.clone().unwrap_or_default(),
        method: received.method.to_string(),
        path: g.path.clone(),
        query: received.query.to_string(),
        body_sha256: body_sha256.to_string(),
        digest: digest.to_string(),
        created_at: now_s,
        expires_at: now_s + policy.limits.approval_ttl_seconds,
        decided_by: None,
        decided_at: None,
    };
    match call(env, APPROVALS_OBJECT, &Command::Hold { approval: held }).await? {
        Reply::Approval { approval: Some(a) } => {
            audit.approval_id = Some(a.approval_id.clone());
            Err(Error::ApprovalRequired { id: a.approval_id })
        }
        _ => Err(unexpected()),
    }
}

impl Claim {
    /// Stores the answer the sandbox got. `body` is `None` when it was
    /// larger than the cap. A failure to store is audited, not hidden.
    pub async fn complete(self, env: &Env, status: u16, headers: &[(String, String)], body: Option<&[u8]>, audit: &mut AuditRecord) {
        let answer = StoredAnswer { status, headers: headers.to_vec(), body: body.map(|b| STANDARD.encode(b)) };
        let command = Command::IdemComplete { key: self.key, digest: self.digest, answer, expires_s: self.expires_s };
        audit.idempotency = match call(env, &self.object, &command).await {
            Ok(Reply::Done) if body.is_some() => Some("stored"),
            Ok(Reply::Done) => Some("not_stored"),
            _ => Some("store_failed"),
        };
    }
}

/// The stored answer, decoded.
pub fn replay_body(answer: &StoredAnswer) -> Vec<u8> {
    answer.body.as_deref().and_then(|b| STANDARD.decode(b).ok()).unwrap_or_default()
}
