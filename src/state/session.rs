//! One session's state: its record (status, scope, usage counters, rate
//! buckets), the nonces of its proofs and its idempotency records.
//!
//! Invariants:
//! - A session without a record is refused: records are written at mint,
//!   so a missing one means revoked, purged or never issued here.
//! - Revocation is a status, never a deletion, so nothing written later
//!   (a call that was in flight) can bring the session back.
//! - Each admission decides everything (status, replay, both rate limits)
//!   and persists it in the same command: two requests can never both take
//!   the last token or the same nonce.
//! - Idempotency keys are stored as SHA-256 digests; an entry is claimed
//!   (in flight) before the origin is called, so a duplicate never reaches
//!   it, and its answer is kept at most once.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::bucket::{Bucket, Rate, Take};
use super::nonces::{self, ReplayError};
use super::store::{get_json, put_json, Store, StoreError};
use crate::hex::hex;
use crate::level::Level;

/// How long a record is kept after the session expired, so that the
/// control plane can still see how it ended.
pub const RECORD_RETENTION_S: u64 = 86_400;
const RECORD: &str = "session";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    pub requests: u64,
    pub denied: u64,
    pub rate_limited: u64,
    pub last_seen_at: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionRecord {
    pub session_id: String,
    pub agent: String,
    pub user: String,
    pub tools: BTreeMap<String, Level>,
    pub egress: bool,
    pub created_at: u64,
    pub expires_at: u64,
    pub revoked_at: Option<u64>,
    pub usage: Usage,
    /// Rate buckets: `""` for the session, tool names for (session, tool).
    #[serde(default)]
    pub buckets: BTreeMap<String, Bucket>,
}

/// What the control plane sees of a session: never a token or a key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionView {
    pub session_id: String,
    pub status: String,
    pub agent: String,
    pub user: String,
    pub tools: BTreeMap<String, Level>,
    pub egress: bool,
    pub created_at: u64,
    pub expires_at: u64,
    pub revoked_at: Option<u64>,
    pub usage: Usage,
}

impl SessionRecord {
    pub fn view(&self, now_s: u64) -> SessionView {
        let status = if self.revoked_at.is_some() {
            "revoked"
        } else if now_s >= self.expires_at {
            "expired"
        } else {
            "active"
        };
        SessionView {
            session_id: self.session_id.clone(),
            status: status.into(),
            agent: self.agent.clone(),
            user: self.user.clone(),
            tools: self.tools.clone(),
            egress: self.egress,
            created_at: self.created_at,
            expires_at: self.expires_at,
            revoked_at: self.revoked_at,
            usage: self.usage.clone(),
        }
    }
}

/// A proof's replay check, as the edge verified it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NonceCheck {
    /// Hex SHA-256 of the nonce.
    pub digest: String,
    pub ts: u64,
    pub window: u64,
}

/// The limits an admission checks, from the policy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Admission {
    pub tool: Option<String>,
    pub nonce: Option<NonceCheck>,
    pub session_rate: Option<Rate>,
    pub tool_rate: Option<Rate>,
}

/// Why the state refused a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    Revoked,
    Expired,
    ProofStale,
    ProofReplayed,
    /// `tool` false: the session's own limit.
    RateLimited {
        tool: bool,
        retry_after_s: u64,
    },
}

/// An answer as the sandbox received it, kept for idempotent replays.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredAnswer {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// Base64 of the body; `None` when it was larger than the cap.
    pub body: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct IdemEntry {
    /// Digest of the request the key was first used for.
    digest: String,
    answer: Option<StoredAnswer>,
}

/// The outcome of presenting an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IdemBegin {
    /// First use: the caller owns the key and must complete or abort it.
    Fresh,
    Replay(StoredAnswer),
    /// The key was used for another request.
    Mismatch,
    /// The first request with this key has not finished.
    InFlight,
}

fn idem_key(key: &str) -> String {
    format!("idem:{}", hex(&Sha256::digest(key.as_bytes())))
}

fn record(store: &impl Store) -> Result<Option<SessionRecord>, StoreError> {
    get_json(store, RECORD)
}

fn save(store: &mut impl Store, r: &SessionRecord) -> Result<(), StoreError> {
    put_json(store, RECORD, r, r.expires_at.saturating_add(RECORD_RETENTION_S))
}

/// Writes the record of a new session. An existing record is never
/// overwritten (a replayed mint cannot un-revoke).
pub fn create(store: &mut impl Store, r: &SessionRecord) -> Result<bool, StoreError> {
    if record(store)?.is_some() {
        return Ok(false);
    }
    save(store, r)?;
    Ok(true)
}

pub fn get(store: &impl Store, now_s: u64) -> Result<Option<SessionView>, StoreError> {
    Ok(record(store)?.map(|r| r.view(now_s)))
}

/// Revokes the session; revoking twice keeps the first time.
pub fn revoke(store: &mut impl Store, now_s: u64) -> Result<Option<SessionView>, StoreError> {
    let Some(mut r) = record(store)? else { return Ok(None) };
    if r.revoked_at.is_none() {
        r.revoked_at = Some(now_s);
        save(store, &r)?;
    }
    Ok(Some(r.view(now_s)))
}

/// Decides whether one request may proceed, and records it. `Ok(None)`:
/// admitted; `Ok(Some(refusal))`: refused. `Err` only for storage faults.
/// A session without a record is refused as revoked.
pub fn admit(store: &mut impl Store, a: &Admission, now_ms: u64) -> Result<Option<Refusal>, StoreError> {
    let now_s = now_ms / 1000;
    let Some(mut r) = record(store)? else { return Ok(Some(Refusal::Revoked)) };
    let refusal = decide(store, &mut r, a, now_ms)?;
    match refusal {
        None => r.usage.requests += 1,
        Some(Refusal::RateLimited { .. }) => r.usage.rate_limited += 1,
        Some(_) => r.usage.denied += 1,
    }
    r.usage.last_seen_at = Some(now_s);
    save(store, &r)?;
    Ok(refusal)
}

fn decide(store: &mut impl Store, r: &mut SessionRecord, a: &Admission, now_ms: u64) -> Result<Option<Refusal>, StoreError> {
    let now_s = now_ms / 1000;
    if r.revoked_at.is_some() {
        return Ok(Some(Refusal::Revoked));
    }
    if now_s >= r.expires_at {
        return Ok(Some(Refusal::Expired));
    }
    // Rate limits are checked without taking, so that a request refused by
    // one bucket (or by replay) costs nothing from the other.
    let mut session_bucket = None;
    if let Some(rate) = a.session_rate {
        let mut b = r.buckets.get("").copied().unwrap_or_else(|| Bucket::new(rate, now_ms));
        if let Take::Limited { retry_after_s } = b.take(rate, now_ms) {
            return Ok(Some(Refusal::RateLimited { tool: false, retry_after_s }));
        }
        session_bucket = Some(b);
    }
    let mut tool_bucket = None;
    if let (Some(rate), Some(tool)) = (a.tool_rate, &a.tool) {
        let mut b = r.buckets.get(tool.as_str()).copied().unwrap_or_else(|| Bucket::new(rate, now_ms));
        if let Take::Limited { retry_after_s } = b.take(rate, now_ms) {
            return Ok(Some(Refusal::RateLimited { tool: true, retry_after_s }));
        }
        tool_bucket = Some((tool.clone(), b));
    }
    if let Some(n) = &a.nonce {
        if n.digest.len() != 64 || !n.digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Ok(Some(Refusal::ProofReplayed));
        }
        match nonces::accept(store, &n.digest.to_ascii_lowercase(), n.ts, now_s, n.window) {
            Ok(()) => {}
            Err(ReplayError::Stale) => return Ok(Some(Refusal::ProofStale)),
            Err(ReplayError::Replayed) => return Ok(Some(Refusal::ProofReplayed)),
            Err(ReplayError::Store) => return Err(StoreError),
        }
    }
    if let Some(b) = session_bucket {
        r.buckets.insert(String::new(), b);
    }
    if let Some((tool, b)) = tool_bucket {
        r.buckets.insert(tool, b);
    }
    Ok(None)
}

/// Presents an idempotency key for a request with `digest`. A fresh key is
/// claimed until `expires_s`.
pub fn idem_begin(store: &mut impl Store, key: &str, digest: &str, expires_s: u64) -> Result<IdemBegin, StoreError> {
    let k = idem_key(key);
    match get_json::<IdemEntry>(store, &k)? {
        Some(e) if e.digest != digest => Ok(IdemBegin::Mismatch),
        Some(IdemEntry { answer: Some(a), .. }) => Ok(IdemBegin::Replay(a)),
        Some(_) => Ok(IdemBegin::InFlight),
        None => {
            put_json(store, &k, &IdemEntry { digest: digest.to_string(), answer: None }, expires_s)?;
            Ok(IdemBegin::Fresh)
        }
    }
}

/// Stores the answer of the request that claimed `key`. Only the claim's
/// own request can complete it, and only once.
pub fn idem_complete(store: &mut impl Store, key: &str, digest: &str, answer: StoredAnswer, expires_s: u64) -> Result<bool, StoreError> {
    let k = idem_key(key);
    match get_json::<IdemEntry>(store, &k)? {
        Some(IdemEntry { digest: d, answer: None }) if d == digest => {
            put_json(store, &k, &IdemEntry { digest: d, answer: Some(answer) }, expires_s)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

/// Releases a claim whose request was never sent (refused before forwarding).
pub fn idem_abort(store: &mut impl Store, key: &str, digest: &str) -> Result<(), StoreError> {
    let k = idem_key(key);
    if let Some(IdemEntry { digest: d, answer: None }) = get_json::<IdemEntry>(store, &k)? {
        if d == digest {
            store.delete(&k)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::store::MemStore;

    fn rec(expires_at: u64) -> SessionRecord {
        SessionRecord {
            session_id: "s1".into(),
            agent: "a".into(),
            user: "u".into(),
            tools: BTreeMap::from([("echo".to_string(), Level::Write)]),
            egress: false,
            created_at: 1_000,
            expires_at,
            revoked_at: None,
            usage: Usage::default(),
            buckets: BTreeMap::new(),
        }
    }

    fn store() -> MemStore {
        let mut s = MemStore::new();
        assert!(create(&mut s, &rec(5_000)).unwrap());
        s
    }

    #[test]
    fn unknown_sessions_are_refused_and_nothing_is_written() {
        let mut s = MemStore::new();
        assert_eq!(admit(&mut s, &Admission::default(), 1_000_000), Ok(Some(Refusal::Revoked)));
        assert!(s.is_empty());
    }

    #[test]
    fn revocation_is_immediate_and_permanent() {
        let mut s = store();
        assert_eq!(admit(&mut s, &Admission::default(), 1_000_000), Ok(None));
        let v = revoke(&mut s, 1_001).unwrap().unwrap();
        assert_eq!((v.status.as_str(), v.revoked_at), ("revoked", Some(1_001)));
        assert_eq!(admit(&mut s, &Admission::default(), 1_001_000), Ok(Some(Refusal::Revoked)));
        // A second revoke keeps the first time; a replayed create cannot reset it.
        assert_eq!(revoke(&mut s, 2_000).unwrap().unwrap().revoked_at, Some(1_001));
        assert!(!create(&mut s, &rec(9_000)).unwrap());
        let v = get(&s, 1_002).unwrap().unwrap();
        assert_eq!((v.status.as_str(), v.usage.requests, v.usage.denied), ("revoked", 1, 1));
    }

    #[test]
    fn expiry_is_enforced_by_the_record_too() {
        let mut s = store();
        assert_eq!(admit(&mut s, &Admission::default(), 5_000_000), Ok(Some(Refusal::Expired)));
        assert_eq!(get(&s, 5_000).unwrap().unwrap().status, "expired");
        // Kept for the retention period, then purged.
        s.purge(5_000 + RECORD_RETENTION_S).unwrap();
        assert!(get(&s, 5_000).unwrap().is_some());
        s.purge(5_001 + RECORD_RETENTION_S).unwrap();
        assert!(get(&s, 5_000).unwrap().is_none());
    }

    #[test]
    fn a_burst_takes_exactly_the_capacity_and_counts_the_rest() {
        let mut s = store();
        let a = Admission { tool: Some("echo".into()), tool_rate: Some(Rate { capacity: 5, per_second: 0.001 }), ..Default::default() };
        let outcomes: Vec<_> = (0..12).map(|_| admit(&mut s, &a, 2_000_000).unwrap()).collect();
        assert_eq!(outcomes.iter().filter(|o| o.is_none()).count(), 5);
        assert!(outcomes[5..].iter().all(|o| matches!(o, Some(Refusal::RateLimited { tool: true, retry_after_s }) if *retry_after_s >= 1)));
        let v = get(&s, 2_000).unwrap().unwrap();
        assert_eq!((v.usage.requests, v.usage.rate_limited), (5, 7));
    }

    #[test]
    fn one_bucket_refusing_costs_nothing_from_the_other() {
        let mut s = store();
        let session = Rate { capacity: 3, per_second: 0.001 };
        let tool = Rate { capacity: 1, per_second: 0.001 };
        let a = Admission { tool: Some("echo".into()), session_rate: Some(session), tool_rate: Some(tool), ..Default::default() };
        assert_eq!(admit(&mut s, &a, 2_000_000), Ok(None));
        assert!(matches!(admit(&mut s, &a, 2_000_000), Ok(Some(Refusal::RateLimited { tool: true, .. }))));
        // The session bucket still holds two: another tool gets both.
        let b = Admission { tool: Some("other".into()), session_rate: Some(session), ..Default::default() };
        assert_eq!(admit(&mut s, &b, 2_000_000), Ok(None));
        assert_eq!(admit(&mut s, &b, 2_000_000), Ok(None));
        assert!(matches!(admit(&mut s, &b, 2_000_000), Ok(Some(Refusal::RateLimited { tool: false, .. }))));
    }

    #[test]
    fn a_replayed_nonce_is_refused_once_accepted() {
        let mut s = store();
        let n = NonceCheck { digest: hex(&Sha256::digest(b"nonce")), ts: 2_000, window: 60 };
        let a = Admission { nonce: Some(n.clone()), ..Default::default() };
        let outcomes: Vec<_> = (0..50).map(|_| admit(&mut s, &a, 2_000_000).unwrap()).collect();
        assert_eq!(outcomes.iter().filter(|o| o.is_none()).count(), 1);
        assert!(outcomes[1..].iter().all(|o| *o == Some(Refusal::ProofReplayed)));
        let stale = Admission { nonce: Some(NonceCheck { ts: 1_900, ..n }), ..Default::default() };
        assert_eq!(admit(&mut s, &stale, 2_000_000), Ok(Some(Refusal::ProofStale)));
    }

    #[test]
    fn a_rate_refusal_does_not_burn_the_nonce_and_a_replay_takes_no_token() {
        let mut s = store();
        let rate = Rate { capacity: 1, per_second: 0.001 };
        let n = |x: &[u8]| Some(NonceCheck { digest: hex(&Sha256::digest(x)), ts: 2_000, window: 60 });
        assert_eq!(admit(&mut s, &Admission { nonce: n(b"a"), session_rate: Some(rate), ..Default::default() }, 2_000_000), Ok(None));
        assert!(matches!(
            admit(&mut s, &Admission { nonce: n(b"b"), session_rate: Some(rate), ..Default::default() }, 2_000_000),
            Ok(Some(Refusal::RateLimited { .. }))
        ));
        // "b" was not burnt by the refusal.
        assert_eq!(admit(&mut s, &Admission { nonce: n(b"b"), ..Default::default() }, 2_000_000), Ok(None));
    }

    #[test]
    fn idempotency_claims_replays_and_refuses_another_request() {
        let mut s = store();
        let answer = StoredAnswer { status: 201, headers: vec![("content-type".into(), "application/json".into())], body: Some("e30".into()) };
        assert_eq!(idem_begin(&mut s, "k1", "d1", 9_000), Ok(IdemBegin::Fresh));
        assert_eq!(idem_begin(&mut s, "k1", "d1", 9_000), Ok(IdemBegin::InFlight));
        assert_eq!(idem_begin(&mut s, "k1", "d2", 9_000), Ok(IdemBegin::Mismatch));
        assert_eq!(idem_complete(&mut s, "k1", "d2", answer.clone(), 9_000), Ok(false), "only the claiming request completes");
        assert_eq!(idem_complete(&mut s, "k1", "d1", answer.clone(), 9_000), Ok(true));
        assert_eq!(idem_complete(&mut s, "k1", "d1", answer.clone(), 9_000), Ok(false), "completed once");
        assert_eq!(idem_begin(&mut s, "k1", "d1", 9_000), Ok(IdemBegin::Replay(answer)));
        assert_eq!(idem_begin(&mut s, "k1", "d2", 9_000), Ok(IdemBegin::Mismatch));
        assert!(!s.dump().contains("k1"), "keys are stored hashed");
        // Expired with its TTL.
        s.purge(9_001).unwrap();
        assert_eq!(idem_begin(&mut s, "k1", "d2", 10_000), Ok(IdemBegin::Fresh));
    }

    #[test]
    fn an_aborted_claim_frees_the_key_but_a_completed_one_stays() {
        let mut s = store();
        assert_eq!(idem_begin(&mut s, "k", "d", 9_000), Ok(IdemBegin::Fresh));
        idem_abort(&mut s, "k", "other").unwrap();
        assert_eq!(idem_begin(&mut s, "k", "d", 9_000), Ok(IdemBegin::InFlight), "another request cannot abort the claim");
        idem_abort(&mut s, "k", "d").unwrap();
        assert_eq!(idem_begin(&mut s, "k", "d", 9_000), Ok(IdemBegin::Fresh));
        let answer = StoredAnswer { status: 200, headers: vec![], body: None };
        idem_complete(&mut s, "k", "d", answer.clone(), 9_000).unwrap();
        idem_abort(&mut s, "k", "d").unwrap();
        assert_eq!(idem_begin(&mut s, "k", "d", 9_000), Ok(IdemBegin::Replay(answer)));
    }

    #[test]
    fn storage_faults_are_errors_not_admissions() {
        let mut s = store();
        s.broken = true;
        assert_eq!(admit(&mut s, &Admission::default(), 2_000_000), Err(StoreError));
        assert_eq!(idem_begin(&mut s, "k", "d", 9_000), Err(StoreError));
    }
}
