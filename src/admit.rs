//! Admit: the session-state phase, between authorize and inject. Pure: it
//! says which state commands to send and turns each state reply into the
//! next step or an error; the edge (`edge/admit.rs`) only carries them.
//!
//! Order: proof of possession (verified here, its nonce checked in the
//! state), then revocation, replay and rate limits in one atomic call, then
//! an idempotency claim, then the approval gate.
//!
//! Invariant: [`Admitted`] is the only way into injection, and only
//! [`Admitting::admit`] or [`Admitting::on_approval`] build one, after the
//! state answered "pass" to every check this request needs. So no
//! credential is read for a refused, revoked, replayed, rate-limited,
//! duplicate or held request.
//!
//! Must never: read a clock (`now` comes in), touch the platform, or let a
//! reply it does not expect count as a pass.

use crate::audit::AuditRecord;
use crate::authorize::Gate;
use crate::error::Error;
use crate::hex::hex;
use crate::policy::Limits;
use crate::proof::{self, Signed};
use crate::request::{header, idempotency_key};
use crate::state::approvals::{self, Approval, Status};
use crate::state::outbox::Notify;
use crate::state::session::{Admission, IdemBegin, NonceCheck, Refusal, StoredAnswer};
use crate::state::{Command, Reply};
use crate::token::{KeyRing, TokenError};

/// The header that presents an approval id on the approved retry.
pub const APPROVAL_HEADER: &str = "x-airlock-approval";

/// The state object that holds every pending approval.
pub const APPROVALS_OBJECT: &str = "approvals";

const SESSION_OBJECT_PREFIX: &str = "session:";

/// The name of a session's state object.
pub fn session_object(id: &str) -> String {
    format!("{SESSION_OBJECT_PREFIX}{id}")
}

/// The session id of a session's state object name ([`session_object`]).
pub fn session_of(object: &str) -> Option<&str> {
    object.strip_prefix(SESSION_OBJECT_PREFIX)
}

/// The request as received, for proofs and digests.
pub struct Received<'a> {
    pub method: &'a str,
    pub raw_path: &'a str,
    pub query: &'a str,
    pub headers: &'a [(String, String)],
}

/// Whether the body must be read whole before admission: it is hashed for
/// a proof, an idempotency record or an approval.
pub fn needs_body(gate: &Gate, received: &Received<'_>) -> Result<bool, Error> {
    let key = gate.idempotent() && idempotency_key(received.headers)?.is_some();
    Ok(gate.proof_required || header(received.headers, proof::HEADER).is_some() || gate.approval || key)
}

/// The approval id a request presents: an MCP call's from Airlock's own
/// `requestState`, any other request's from [`APPROVAL_HEADER`].
fn presented<'a>(gate: &'a Gate, received: &'a Received<'_>) -> Option<&'a str> {
    match gate.call {
        Some(_) => gate.presented.as_deref(),
        None => header(received.headers, APPROVAL_HEADER),
    }
}

fn unexpected() -> Error {
    Error::StateUnavailable("state object: unexpected answer".into())
}

/// The first step: the proof verified, the state call planned.
pub struct Plan {
    object: String,
    admission: Admission,
    proved: bool,
    /// What binds an idempotency key or an approval to this request.
    binding: Option<Binding>,
    key: Option<String>,
    approval: bool,
    exp: u64,
    /// How long a claimed key is kept.
    ttl_s: u64,
}

struct Binding {
    digest: String,
    body_sha256: String,
}

/// Plans admission: verifies a presented (or required) proof over the
/// request as received and `body` (the whole body when [`needs_body`]
/// said so, else empty), and prepares the one atomic state call.
pub fn plan(gate: &Gate, received: &Received<'_>, body: &[u8], keys: &KeyRing, limits: &Limits, now_s: u64) -> Result<Plan, Error> {
    let presented = header(received.headers, proof::HEADER);
    let key = if gate.idempotent() { idempotency_key(received.headers)?.map(str::to_string) } else { None };
    let proving = gate.proof_required || presented.is_some();
    let binding = key.is_some() || gate.approval || gate.dedupe_s > 0;
    // The body digest is only computed for what binds it.
    let body_sha256 = if proving || binding { proof::body_sha256(body) } else { String::new() };
    let mut nonce = None;
    if proving {
        let proof_key = keys.proof_key(&gate.kid, &gate.session_id).ok_or(Error::InvalidSession(TokenError::UnknownKey))?;
        let signed =
            Signed { session_id: &gate.session_id, method: received.method, path: received.raw_path, query: received.query, body_sha256: &body_sha256 };
        let window = limits.proof_window_seconds;
        let verified = proof::verify(presented, &signed, &proof_key, now_s, window).map_err(Error::Proof)?;
        nonce = Some(NonceCheck { digest: hex(&verified.nonce_digest), ts: verified.ts, window });
    }
    // An MCP tool call binds its JSON-RPC method and canonical params.
    let binding = binding.then(|| match &gate.call {
        Some((method, params)) => {
            let body_sha256 = proof::body_sha256(params);
            Binding { digest: gate.request_digest(method, &gate.query, &body_sha256), body_sha256 }
        }
        None => Binding { digest: gate.request_digest(received.method, &gate.query, &body_sha256), body_sha256 },
    });
    // Duplicate suppression is an idempotency key Airlock derives from the
    // call's digest; a newline keeps it apart from any key a header carries.
    let (key, ttl_s) = match (&binding, gate.dedupe_s) {
        (Some(b), d) if d > 0 => (Some(format!("mcp\n{}", b.digest)), d),
        _ => (key, limits.idempotency_ttl_seconds),
    };
    Ok(Plan {
        object: session_object(&gate.session_id),
        proved: nonce.is_some(),
        admission: Admission { tool: gate.tool.clone(), nonce, session_rate: gate.session_rate, tool_rate: gate.tool_rate },
        binding,
        key,
        approval: gate.approval,
        exp: gate.exp,
        ttl_s,
    })
}

impl Plan {
    /// The state object to ask.
    pub fn object(&self) -> &str {
        &self.object
    }

    /// Revocation, replay and rate limits, decided atomically by the state.
    pub fn command(&self) -> Command {
        Command::Admit { admission: self.admission.clone(), trail: String::new() }
    }

    /// The state's answer to [`Plan::command`].
    pub fn on_reply(self, reply: Reply, now_s: u64, audit: &mut AuditRecord) -> Result<Admitting, Error> {
        match reply {
            Reply::Admitted { refusal: None, .. } => {}
            Reply::Admitted { refusal: Some(r), .. } => {
                return Err(match r {
                    Refusal::Revoked => Error::SessionRevoked,
                    Refusal::Expired => Error::InvalidSession(TokenError::Expired { exp: self.exp, now: now_s }),
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
        if self.proved {
            audit.proof = Some("verified");
        }
        Ok(Admitting { object: self.object, binding: self.binding, key: self.key, claim: None, approval: self.approval, ttl_s: self.ttl_s })
    }
}

/// The state checks passed; an idempotency claim and an approval may
/// still be needed.
pub struct Admitting {
    object: String,
    binding: Option<Binding>,
    /// An idempotency key not claimed yet.
    key: Option<String>,
    claim: Option<Claim>,
    /// An approval not consumed yet.
    approval: bool,
    ttl_s: u64,
}

/// An idempotency key this request claimed: its answer must be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    pub object: String,
    pub key: String,
    pub digest: String,
    pub expires_s: u64,
    /// Largest body kept for replays.
    pub max_body: u64,
}

impl Claim {
    /// Stores the answer the sandbox got (`body` is `None` when it was
    /// larger than the cap).
    pub fn complete(&self, answer: StoredAnswer) -> Command {
        Command::IdemComplete { key: self.key.clone(), digest: self.digest.clone(), answer, expires_s: self.expires_s }
    }

    /// Frees the key: the request will not be forwarded.
    pub fn abort(&self) -> Command {
        Command::IdemAbort { key: self.key.clone(), digest: self.digest.clone() }
    }
}

/// The next step after presenting an idempotency key.
pub enum IdemStep {
    /// The key is this request's: go on.
    Claimed(Admitting),
    /// The first request with this key is still running: ask again.
    Wait(Admitting),
    /// The stored answer of the first request, replayed.
    Replay(StoredAnswer),
}

impl Admitting {
    /// The claim of an idempotency key, if this request presents one that
    /// is not claimed yet.
    pub fn idem_command(&self, now_s: u64) -> Option<Command> {
        let (key, binding) = (self.key.as_ref()?, self.binding.as_ref()?);
        Some(Command::IdemBegin { key: key.clone(), digest: binding.digest.clone(), expires_s: now_s + self.ttl_s })
    }

    /// The state's answer to [`Admitting::idem_command`].
    pub fn on_idem(mut self, reply: Reply, limits: &Limits, now_s: u64, audit: &mut AuditRecord) -> Result<IdemStep, Error> {
        let Reply::Idem { outcome } = reply else {
            return Err(unexpected());
        };
        match outcome {
            IdemBegin::Fresh => {
                let (Some(key), Some(binding)) = (self.key.take(), self.binding.as_ref()) else {
                    return Err(Error::Internal("idempotency claimed without a key".into()));
                };
                let expires_s = now_s + self.ttl_s;
                self.claim =
                    Some(Claim { object: self.object.clone(), key, digest: binding.digest.clone(), expires_s, max_body: limits.idempotency_max_body_bytes });
                Ok(IdemStep::Claimed(self))
            }
            IdemBegin::Replay(answer) if answer.body.is_none() => {
                audit.idempotency = Some("not_stored");
                Err(Error::IdempotencyNotStored { status: answer.status })
            }
            IdemBegin::Replay(answer) => {
                audit.idempotency = Some("replayed");
                Ok(IdemStep::Replay(answer))
            }
            IdemBegin::Mismatch => {
                audit.idempotency = Some("key_reused");
                Err(Error::IdempotencyKeyReused)
            }
            IdemBegin::InFlight => Ok(IdemStep::Wait(self)),
        }
    }

    /// The approval step, if the matched rule holds requests for a human:
    /// consume the presented approval, or hold a new one under `new_id`
    /// (with `body`, the request body, kept as text for the approval page,
    /// and `notify`, where its events go).
    #[allow(clippy::too_many_arguments)]
    pub fn approval_command(
        &self,
        gate: &Gate,
        received: &Received<'_>,
        new_id: &str,
        body: &[u8],
        notify: Option<Notify>,
        limits: &Limits,
        now_s: u64,
        audit: &mut AuditRecord,
    ) -> Option<Command> {
        if !self.approval {
            return None;
        }
        let binding = self.binding.as_ref()?;
        if let Some(id) = presented(gate, received) {
            audit.approval_id = Some(id.chars().take(64).collect());
            return Some(Command::Consume { id: id.to_string(), digest: binding.digest.clone() });
        }
        let (method, body) = gate.call.as_ref().map_or((received.method, body), |(m, params)| (m.as_str(), params.as_slice()));
        let held = Approval {
            approval_id: new_id.to_string(),
            status: approvals::Status::Pending,
            session_id: gate.session_id.clone(),
            agent: audit.agent.clone().unwrap_or_default(),
            user: audit.user.clone().unwrap_or_default(),
            tool: gate.tool.clone().unwrap_or_default(),
            method: method.to_string(),
            path: gate.path.clone(),
            query: gate.query.clone(),
            body_sha256: binding.body_sha256.clone(),
            digest: binding.digest.clone(),
            created_at: now_s,
            expires_at: now_s + limits.approval_ttl_seconds,
            decided_by: None,
            decided_at: None,
            body: None,
            body_truncated: false,
            webhook: None,
        };
        let (body, body_truncated) = crate::approval::shown_body(body);
        Some(Command::Hold { approval: Approval { body, body_truncated, ..held }, notify })
    }

    /// Hold-open: for a rule with `wait_seconds`, the next call after the
    /// hold answered: wait for the decision of a pending approval, or
    /// consume one a human already approved (the unchanged request sent
    /// again after a timeout). `None`: answer as without hold-open.
    ///
    /// An MCP tool call always consumes an approved approval of the
    /// identical call: a client without multi round-trip requests has no
    /// other way to present it.
    pub fn hold_open(&self, gate: &Gate, reply: &Reply) -> Option<Command> {
        let binding = self.binding.as_ref().filter(|_| self.approval && (gate.approval_wait_s > 0 || gate.call.is_some()))?;
        let Reply::Approval { approval: Some(a) } = reply else { return None };
        match a.status {
            Status::Pending if gate.approval_wait_s > 0 => Some(Command::Wait { id: a.approval_id.clone(), wait_s: gate.approval_wait_s }),
            Status::Approved => Some(Command::Consume { id: a.approval_id.clone(), digest: binding.digest.clone() }),
            _ => None,
        }
    }

    /// The approvals object's answer once the wait ended: an approved
    /// request is consumed (once, like any approval); a denied one is
    /// refused; one still pending gets today's `approval_required`, so an
    /// Airlock-aware client can present the id later.
    pub fn on_wait(&self, reply: Reply, audit: &mut AuditRecord) -> Result<Command, Error> {
        let (Some(binding), Reply::Approval { approval: Some(a) }) = (self.binding.as_ref(), reply) else {
            return Err(unexpected());
        };
        audit.approval_id = Some(a.approval_id.clone());
        match a.status {
            Status::Approved => Ok(Command::Consume { id: a.approval_id, digest: binding.digest.clone() }),
            Status::Denied => Err(Error::ApprovalDenied),
            Status::Pending => Err(Error::ApprovalRequired { id: a.approval_id }),
            Status::Used | Status::Expired => Err(Error::ApprovalInvalid),
        }
    }

    /// The approvals object's answer to [`Admitting::approval_command`]:
    /// a consumed approval admits the request; a new hold refuses it with
    /// the id to present once approved.
    pub fn on_approval(mut self, reply: Reply, audit: &mut AuditRecord) -> Result<Admitted, Error> {
        match reply {
            Reply::Consumed { result: Ok(approver) } => {
                audit.approved_by = Some(approver);
                self.approval = false;
                self.admit()
            }
            Reply::Consumed { result: Err(approvals::Refusal::Pending) } => Err(Error::ApprovalPending),
            Reply::Consumed { result: Err(approvals::Refusal::Denied) } => Err(Error::ApprovalDenied),
            Reply::Consumed { result: Err(approvals::Refusal::Invalid) } => Err(Error::ApprovalInvalid),
            Reply::Approval { approval: Some(a) } => {
                audit.approval_id = Some(a.approval_id.clone());
                Err(Error::ApprovalRequired { id: a.approval_id })
            }
            _ => Err(unexpected()),
        }
    }

    /// The claim to release when this request is refused after claiming.
    pub fn claim(&self) -> Option<&Claim> {
        self.claim.as_ref()
    }

    /// Admits the request once every step it needs has passed.
    pub fn admit(self) -> Result<Admitted, Error> {
        if self.key.is_some() || self.approval {
            // A caller skipped a step: refuse rather than admit half-checked.
            return Err(Error::Internal("admission finished with a step left".into()));
        }
        Ok(Admitted { claim: self.claim })
    }
}

/// The session state, as admission reaches it: the edge over a Durable
/// Object binding, native tests over an in-memory store.
#[allow(async_fn_in_trait)]
pub trait StateCalls {
    /// Runs one command on the state object `object`; anything but a clear
    /// answer is an error.
    async fn call(&self, object: &str, command: &Command) -> Result<Reply, Error>;
    /// Waits before asking again about an in-flight duplicate; `false` once
    /// the wait for it has run out.
    async fn wait(&self) -> bool;
    /// A fresh approval id.
    fn approval_id(&self) -> Result<String, Error>;
    /// Where the events of a new approval `id` (valid until `expires_at`) go.
    fn notify(&self, _id: &str, _expires_at: u64) -> Option<Notify> {
        None
    }
    /// Whether the client hung up (a held request is then not forwarded).
    fn client_gone(&self) -> bool {
        false
    }
}

/// The outcome of admission.
pub enum Gated {
    Admitted(Admitted),
    /// The stored answer of an earlier request with the same idempotency key.
    Replay(StoredAnswer),
}

/// Runs admission to its end: proof, then the atomic state checks, then an
/// idempotency claim, then the approval gate. `body` is the whole request
/// body when [`needs_body`] said so (else empty).
#[allow(clippy::too_many_arguments)]
pub async fn run(
    state: &impl StateCalls,
    gate: &Gate,
    received: &Received<'_>,
    body: &[u8],
    keys: &KeyRing,
    limits: &Limits,
    now_s: u64,
    audit: &mut AuditRecord,
) -> Result<Gated, Error> {
    let plan = plan(gate, received, body, keys, limits, now_s)?;
    let reply = state.call(plan.object(), &plan.command()).await?;
    let object = plan.object().to_string();
    let mut admitting = plan.on_reply(reply, now_s, audit)?;
    // idempotency: a replay or a claim, before any approval is spent
    while let Some(command) = admitting.idem_command(now_s) {
        let reply = state.call(&object, &command).await?;
        admitting = match admitting.on_idem(reply, limits, now_s, audit)? {
            IdemStep::Claimed(a) => a,
            // A duplicate of a request still in flight waits for its answer.
            IdemStep::Wait(a) if state.wait().await => a,
            IdemStep::Wait(_) => {
                audit.idempotency = Some("in_flight");
                return Err(Error::IdempotencyInFlight);
            }
            IdemStep::Replay(answer) => return Ok(Gated::Replay(answer)),
        };
    }
    // approval gate
    let id = if gate.approval && presented(gate, received).is_none() { state.approval_id()? } else { String::new() };
    let notify = if id.is_empty() { None } else { state.notify(&id, now_s + limits.approval_ttl_seconds) };
    let Some(command) = admitting.approval_command(gate, received, &id, body, notify, limits, now_s, audit) else {
        return admitting.admit().map(Gated::Admitted);
    };
    let claim = admitting.claim().cloned();
    let decided = match approval_reply(state, &admitting, gate, &command, audit).await {
        Ok(reply) => admitting.on_approval(reply, audit),
        Err(e) => Err(e),
    };
    if let (Err(_), Some(claim)) = (&decided, claim) {
        // Not forwarded: the key is free for the approved retry.
        let _ = state.call(&claim.object, &claim.abort()).await;
    }
    decided.map(Gated::Admitted)
}

/// The approvals object's answer to the approval step, held open for a
/// rule with `wait_seconds` (see [`Admitting::hold_open`]).
async fn approval_reply(state: &impl StateCalls, admitting: &Admitting, gate: &Gate, command: &Command, audit: &mut AuditRecord) -> Result<Reply, Error> {
    let reply = state.call(APPROVALS_OBJECT, command).await?;
    let next = match admitting.hold_open(gate, &reply) {
        None => return Ok(reply),
        Some(wait @ Command::Wait { .. }) => admitting.on_wait(state.call(APPROVALS_OBJECT, &wait).await?, audit)?,
        Some(consume) => consume,
    };
    // A client that hung up while held gets nothing forwarded, and the
    // approval stays usable for its retry.
    if state.client_gone() {
        return Err(Error::ClientClosed);
    }
    state.call(APPROVALS_OBJECT, &next).await
}

/// Proof that the session state admitted this request. Only admission
/// builds one; injection takes it, so no credential is read before.
#[derive(Debug)]
pub struct Admitted {
    claim: Option<Claim>,
}

impl Admitted {
    /// The idempotency key this request claimed, whose answer must be stored.
    pub fn into_claim(self) -> Option<Claim> {
        self.claim
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Policy;
    use crate::state::approvals::Refusal as ApprovalRefusal;

    fn gate(approval: bool, level: Option<crate::level::Level>) -> Gate {
        Gate { session_id: "s1".into(), exp: 1_000, kid: "k".into(), tool: Some("t".into()), level, approval, path: "/x".into(), ..Gate::default() }
    }

    fn setup() -> (KeyRing, Limits) {
        let keys = KeyRing::parse("k:MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY=").unwrap();
        let limits = Policy::parse(
            r#"{"version":1,"audience":"a","tools":{"t":{"origin":"https://t.example","rules":[{"methods":["GET"],"path":"/**","level":"read"}]}}}"#,
        )
        .unwrap()
        .limits;
        (keys, limits)
    }

    fn received(headers: &[(String, String)]) -> Received<'_> {
        Received { method: "POST", raw_path: "/t/t/x", query: "", headers }
    }

    #[test]
    fn a_session_object_names_its_session() {
        assert_eq!(session_of(&session_object("0123abcd")), Some("0123abcd"));
        assert_eq!(session_of(APPROVALS_OBJECT), None);
    }

    #[test]
    fn state_replies_map_to_one_error_each() {
        let (keys, limits) = setup();
        let table: &[(Reply, &str)] = &[
            (Reply::Admitted { refusal: Some(Refusal::Revoked), trail: None }, "session_revoked"),
            (Reply::Admitted { refusal: Some(Refusal::Expired), trail: None }, "invalid_session"),
            (Reply::Admitted { refusal: Some(Refusal::ProofStale), trail: None }, "proof_stale"),
            (Reply::Admitted { refusal: Some(Refusal::ProofReplayed), trail: None }, "proof_replayed"),
            (Reply::Admitted { refusal: Some(Refusal::RateLimited { tool: true, retry_after_s: 3 }), trail: None }, "rate_limited"),
            // Anything but the expected reply refuses, never passes.
            (Reply::Done, "state_unavailable"),
            (Reply::Failed, "state_unavailable"),
            (Reply::Listed("{}".into()), "state_unavailable"),
        ];
        for (reply, code) in table {
            let plan = plan(&gate(false, None), &received(&[]), b"", &keys, &limits, 900).unwrap();
            let mut audit = AuditRecord::new("r".into(), "POST", 0);
            let err = plan.on_reply(reply.clone(), 900, &mut audit).err().unwrap_or_else(|| panic!("{reply:?} admitted"));
            assert_eq!(err.code(), *code, "{reply:?}");
        }
        // The audit record of an expired session names the token's expiry.
        let plan = plan(&gate(false, None), &received(&[]), b"", &keys, &limits, 900).unwrap();
        let mut audit = AuditRecord::new("r".into(), "POST", 0);
        let err = plan.on_reply(Reply::Admitted { refusal: Some(Refusal::Expired), trail: None }, 900, &mut audit).err().unwrap();
        assert_eq!(err, Error::InvalidSession(TokenError::Expired { exp: 1_000, now: 900 }));
    }

    #[test]
    fn no_step_can_be_skipped() {
        let (keys, limits) = setup();
        let headers = vec![("idempotency-key".to_string(), "k1".to_string())];
        let g = gate(true, Some(crate::level::Level::Write));
        let mut audit = AuditRecord::new("r".into(), "POST", 0);
        // With an idempotency key and an approval rule, admitting straight
        // after the state checks is refused.
        let p = plan(&g, &received(&headers), b"body", &keys, &limits, 900).unwrap();
        let admitting = p.on_reply(Reply::Admitted { refusal: None, trail: None }, 900, &mut audit).unwrap();
        assert!(admitting.idem_command(900).is_some());
        assert_eq!(admitting.admit().err().map(|e| e.code()), Some("internal"));
        // The claim taken, the approval still pending: still refused.
        let p = plan(&g, &received(&headers), b"body", &keys, &limits, 900).unwrap();
        let admitting = p.on_reply(Reply::Admitted { refusal: None, trail: None }, 900, &mut audit).unwrap();
        let IdemStep::Claimed(admitting) = admitting.on_idem(Reply::Idem { outcome: IdemBegin::Fresh }, &limits, 900, &mut audit).unwrap() else {
            panic!("not claimed")
        };
        assert!(admitting.claim().is_some());
        assert_eq!(admitting.admit().err().map(|e| e.code()), Some("internal"));
    }

    #[test]
    fn approval_and_idempotency_outcomes() {
        let (keys, limits) = setup();
        let g = gate(true, Some(crate::level::Level::Admin));
        let mut audit = AuditRecord::new("r".into(), "POST", 0);
        let admitting = || {
            let mut audit = AuditRecord::new("r".into(), "POST", 0);
            plan(&g, &received(&[]), b"", &keys, &limits, 900).unwrap().on_reply(Reply::Admitted { refusal: None, trail: None }, 900, &mut audit).unwrap()
        };
        let table: &[(Reply, Result<(), &str>)] = &[
            (Reply::Consumed { result: Ok("alice".into()) }, Ok(())),
            (Reply::Consumed { result: Err(ApprovalRefusal::Pending) }, Err("approval_pending")),
            (Reply::Consumed { result: Err(ApprovalRefusal::Denied) }, Err("approval_denied")),
            (Reply::Consumed { result: Err(ApprovalRefusal::Invalid) }, Err("approval_invalid")),
            (Reply::Done, Err("state_unavailable")),
        ];
        for (reply, want) in table {
            let got = admitting().on_approval(reply.clone(), &mut audit).map(|_| ()).map_err(|e| e.code());
            assert_eq!(got, *want, "{reply:?}");
        }
        let outcomes: &[(IdemBegin, &str)] = &[
            (IdemBegin::Mismatch, "idempotency_key_reused"),
            (IdemBegin::Replay(StoredAnswer { status: 201, headers: vec![], body: None }), "idempotency_response_not_stored"),
        ];
        let g = gate(false, Some(crate::level::Level::Write));
        let headers = vec![("idempotency-key".to_string(), "k1".to_string())];
        for (outcome, code) in outcomes {
            let a = plan(&g, &received(&headers), b"", &keys, &limits, 900)
                .unwrap()
                .on_reply(Reply::Admitted { refusal: None, trail: None }, 900, &mut audit)
                .unwrap();
            let got = a.on_idem(Reply::Idem { outcome: outcome.clone() }, &limits, 900, &mut audit).err().map(|e| e.code());
            assert_eq!(got, Some(*code), "{outcome:?}");
        }
    }

    /// The approvals object in memory; `decision` is what a human does
    /// while a request waits, `gone` a client that hung up meanwhile.
    struct Fake {
        store: std::cell::RefCell<crate::state::store::MemStore>,
        decision: Option<bool>,
        gone: bool,
        calls: std::cell::RefCell<Vec<&'static str>>,
    }

    impl StateCalls for Fake {
        async fn call(&self, _object: &str, command: &Command) -> Result<Reply, Error> {
            let name = match command {
                Command::Admit { .. } => "admit",
                Command::Hold { .. } => "hold",
                Command::Wait { .. } => "wait",
                Command::Consume { .. } => "consume",
                _ => "other",
            };
            self.calls.borrow_mut().push(name);
            if name == "admit" {
                return Ok(Reply::Admitted { refusal: None, trail: None });
            }
            let mut store = self.store.borrow_mut();
            if let (Command::Wait { id, .. }, Some(approve)) = (command, self.decision) {
                crate::state::run(&mut *store, Command::Decide { id: id.clone(), approve, approver: "alice".into() }, 900_000);
            }
            Ok(crate::state::run(&mut *store, command.clone(), 900_000))
        }
        async fn wait(&self) -> bool {
            false
        }
        fn approval_id(&self) -> Result<String, Error> {
            Ok(format!("ap_{}", self.calls.borrow().len()))
        }
        fn client_gone(&self) -> bool {
            self.gone
        }
    }

    /// Runs a future that never waits (the fake state answers at once).
    fn now<F: std::future::Future>(f: F) -> F::Output {
        let mut f = std::pin::pin!(f);
        match f.as_mut().poll(&mut std::task::Context::from_waker(std::task::Waker::noop())) {
            std::task::Poll::Ready(v) => v,
            std::task::Poll::Pending => panic!("the fake state never waits"),
        }
    }

    /// A gated or deduplicated MCP tool call, as `authorize::mcp` gates it.
    fn mcp_gate(params: &str, approval: bool, dedupe_s: u64) -> Gate {
        Gate { call: Some(("tools/call".into(), params.as_bytes().to_vec())), dedupe_s, path: "book_slot".into(), ..gate(approval, None) }
    }

    /// Runs admission of `g` with `headers` against the fake state at 900 s.
    fn admit_mcp(f: &Fake, g: &Gate, headers: &[(String, String)]) -> Result<Gated, Error> {
        let (keys, limits) = setup();
        let mut audit = AuditRecord::new("r".into(), "POST", 0);
        now(run(f, g, &received(headers), b"raw bytes differ per call", &keys, &limits, 900, &mut audit))
    }

    #[test]
    fn mcp_dedupe_claims_once_and_replays() {
        let f = Fake { store: Default::default(), decision: None, gone: false, calls: Default::default() };
        let go = |g: &Gate| admit_mcp(&f, g, &[]);
        let g = mcp_gate(r#"{"arguments":{"slot":"9am"},"name":"book_slot"}"#, false, 60);
        let Ok(Gated::Admitted(first)) = go(&g) else { panic!("the first call runs") };
        let claim = first.into_claim().expect("a claim to store the result under");
        assert_eq!(claim.expires_s, 960, "kept for dedupe_seconds, not the idempotency TTL");
        assert!(claim.key.starts_with("mcp\n"), "apart from any header key");
        // While it runs, an identical call waits, then gives up (the fake never waits).
        assert_eq!(go(&g).err().map(|e| e.code()), Some("idempotency_in_flight"));
        // Other arguments are another call.
        assert!(matches!(go(&mcp_gate(r#"{"arguments":{"slot":"10am"},"name":"book_slot"}"#, false, 60)), Ok(Gated::Admitted(_))));
        let answer = StoredAnswer { status: 200, headers: vec![], body: Some("e30".into()) };
        crate::state::run(&mut *f.store.borrow_mut(), claim.complete(answer.clone()), 900_000);
        match go(&g) {
            Ok(Gated::Replay(a)) => assert_eq!(a, answer),
            _ => panic!("the stored result is replayed"),
        }
        // An Idempotency-Key header changes nothing for an MCP call.
        let headers = vec![("idempotency-key".to_string(), "k1".to_string())];
        assert!(matches!(admit_mcp(&f, &g, &headers), Ok(Gated::Replay(_))));
        // After the window, the call runs again.
        crate::state::store::Store::purge(&mut *f.store.borrow_mut(), 961).unwrap();
        assert!(matches!(go(&g), Ok(Gated::Admitted(_))));
    }

    /// A state whose idempotency claim fails (the session object answered
    /// `Failed`, or could not be reached).
    struct ClaimFails;

    impl StateCalls for ClaimFails {
        async fn call(&self, _object: &str, command: &Command) -> Result<Reply, Error> {
            match command {
                Command::Admit { .. } => Ok(Reply::Admitted { refusal: None, trail: None }),
                _ => Err(Error::StateUnavailable("state object: storage failed".into())),
            }
        }
        async fn wait(&self) -> bool {
            false
        }
        fn approval_id(&self) -> Result<String, Error> {
            Ok("ap_x".into())
        }
    }

    #[test]
    fn a_dedupe_state_fault_refuses_the_call() {
        let (keys, limits) = setup();
        let g = mcp_gate(r#"{"arguments":{"slot":"9am"},"name":"book_slot"}"#, false, 60);
        let mut audit = AuditRecord::new("r".into(), "POST", 0);
        let got = now(run(&ClaimFails, &g, &received(&[]), b"", &keys, &limits, 900, &mut audit));
        assert_eq!(got.err().map(|e| e.code()), Some("state_unavailable"), "no admission, so nothing is forwarded");
        // A state that answers the claim with anything but its outcome refuses too.
        let plan = plan(&g, &received(&[]), b"", &keys, &limits, 900).unwrap();
        let admitting = plan.on_reply(Reply::Admitted { refusal: None, trail: None }, 900, &mut audit).unwrap();
        assert!(admitting.idem_command(900).is_some());
        assert_eq!(admitting.on_idem(Reply::Done, &limits, 900, &mut audit).err().map(|e| e.code()), Some("state_unavailable"));
    }

    #[test]
    fn mcp_approvals_pass_the_identical_call_once() {
        let f = Fake { store: Default::default(), decision: None, gone: false, calls: Default::default() };
        let go = |g: &Gate| admit_mcp(&f, g, &[]).map(|_| ());
        let g = mcp_gate(r#"{"arguments":{"title":"x"},"name":"create_page"}"#, true, 0);
        let Err(Error::ApprovalRequired { id }) = go(&g) else { panic!("held") };
        let held = approvals::get(&*f.store.borrow(), &id, 900).unwrap().unwrap();
        assert_eq!((held.method.as_str(), held.path.as_str()), ("tools/call", "book_slot"));
        assert_eq!(held.body.as_deref(), Some(r#"{"arguments":{"title":"x"},"name":"create_page"}"#), "the person sees the params");
        // Pending: the same approval again, nothing consumed.
        assert_eq!(go(&g), Err(Error::ApprovalRequired { id: id.clone() }));
        crate::state::run(&mut *f.store.borrow_mut(), Command::Decide { id: id.clone(), approve: true, approver: "alice".into() }, 900_000);
        // A presented approval (a checked requestState) for other params is refused.
        let other = Gate { presented: Some(id.clone()), ..mcp_gate(r#"{"arguments":{"title":"y"},"name":"create_page"}"#, true, 0) };
        assert_eq!(go(&other).err().map(|e| e.code()), Some("approval_invalid"));
        assert_eq!(go(&g), Ok(()), "the identical call passes once");
        let Err(Error::ApprovalRequired { id: next }) = go(&g) else { panic!("held again") };
        assert_ne!(next, id);
        // The state path: the presented approval, once.
        crate::state::run(&mut *f.store.borrow_mut(), Command::Decide { id: next.clone(), approve: true, approver: "alice".into() }, 900_000);
        let presented = Gate { presented: Some(next.clone()), ..g.clone() };
        assert_eq!(go(&presented), Ok(()));
        assert_eq!(go(&presented).err().map(|e| e.code()), Some("approval_invalid"));
        // An x-airlock-approval header means nothing on an MCP call.
        let headers = vec![(APPROVAL_HEADER.to_string(), next)];
        assert!(matches!(admit_mcp(&f, &g, &headers), Err(Error::ApprovalRequired { .. })));
    }

    #[test]
    fn hold_open_forwards_once_on_approval_and_refuses_otherwise() {
        let (keys, limits) = setup();
        let mut g = gate(true, Some(crate::level::Level::Admin));
        g.approval_wait_s = 60;
        let fake = |decision, gone| Fake { store: Default::default(), decision, gone, calls: Default::default() };
        let go = |f: &Fake, g: &Gate| {
            let mut audit = AuditRecord::new("r".into(), "POST", 0);
            now(run(f, g, &received(&[]), b"<b>body</b>", &keys, &limits, 900, &mut audit)).map(|_| ()).map_err(|e| e.code())
        };
        // Approved while held: admitted after one consume.
        let f = fake(Some(true), false);
        assert_eq!(go(&f, &g), Ok(()));
        assert_eq!(*f.calls.borrow(), ["admit", "hold", "wait", "consume"]);
        let id = "ap_1";
        assert_eq!(approvals::get(&*f.store.borrow(), id, 900).unwrap().unwrap().status, Status::Used);
        assert_eq!(approvals::get(&*f.store.borrow(), id, 900).unwrap().unwrap().body.as_deref(), Some("<b>body</b>"));
        // The same request again needs a new approval.
        let f2 = Fake { decision: None, ..fake(None, false) };
        *f2.store.borrow_mut() = f.store.borrow().clone();
        assert_eq!(go(&f2, &g), Err("approval_required"));

        // Denied while held; timed out.
        assert_eq!(go(&fake(Some(false), false), &g), Err("approval_denied"));
        let f = fake(None, false);
        assert_eq!(go(&f, &g), Err("approval_required"));
        assert_eq!(*f.calls.borrow(), ["admit", "hold", "wait"]);

        // The client hung up: nothing consumed; its unchanged retry passes once.
        let f = fake(Some(true), true);
        assert_eq!(go(&f, &g), Err("client_closed"));
        assert_eq!(approvals::get(&*f.store.borrow(), "ap_1", 900).unwrap().unwrap().status, Status::Approved);
        let retry = Fake { decision: None, gone: false, ..fake(None, false) };
        *retry.store.borrow_mut() = f.store.borrow().clone();
        assert_eq!(go(&retry, &g), Ok(()));
        assert_eq!(*retry.calls.borrow(), ["admit", "hold", "consume"]);

        // Without wait_seconds: today's answer at once, no wait.
        g.approval_wait_s = 0;
        let f = fake(Some(true), false);
        assert_eq!(go(&f, &g), Err("approval_required"));
        assert_eq!(*f.calls.borrow(), ["admit", "hold"]);
    }
}
