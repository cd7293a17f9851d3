//! Human approval gates: a held request, a human decision, one use.
//!
//! Invariants:
//! - An approval is bound to the digest of exactly one request (session,
//!   tool, method, path, query, body hash); any other request presenting
//!   its id is refused and does not consume it.
//! - An approved approval passes exactly once, before it expires.
//! - A decision is final: approving or denying twice is refused.

use serde::{Deserialize, Serialize};

use super::store::{get_json, put_json, Store, StoreError};

/// How long a decided or expired approval stays visible to the control plane.
pub const RETENTION_S: u64 = 86_400;
/// Most approvals one listing returns.
pub const MAX_LISTED: usize = 500;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Approved,
    Denied,
    Used,
    Expired,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Pending => "pending",
            Status::Approved => "approved",
            Status::Denied => "denied",
            Status::Used => "used",
            Status::Expired => "expired",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub approval_id: String,
    pub status: Status,
    pub session_id: String,
    pub agent: String,
    pub user: String,
    pub tool: String,
    pub method: String,
    pub path: String,
    pub query: String,
    pub body_sha256: String,
    /// Digest of the whole request the approval is bound to.
    pub digest: String,
    pub created_at: u64,
    pub expires_at: u64,
    pub decided_by: Option<String>,
    pub decided_at: Option<u64>,
    /// The request body as text, for the approval page (see
    /// [`crate::approval::shown_body`]); the sandbox's body, before any
    /// credential was injected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub body_truncated: bool,
    /// The delivery state of the latest webhook event: `pending`,
    /// `delivered`, `retrying` or `failed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook: Option<String>,
}

impl Approval {
    /// The approval as of `now`: a pending or approved one past its expiry
    /// shows as expired.
    pub fn at(mut self, now_s: u64) -> Approval {
        if matches!(self.status, Status::Pending | Status::Approved) && now_s >= self.expires_at {
            self.status = Status::Expired;
        }
        self
    }
}

/// Why presenting an approval id did not let the request through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Refusal {
    Pending,
    Denied,
    /// Unknown, expired, already used or bound to another request.
    Invalid,
}

fn key(id: &str) -> String {
    format!("ap:{id}")
}

fn by_digest(digest: &str) -> String {
    format!("apd:{digest}")
}

fn save(store: &mut impl Store, a: &Approval) -> Result<(), StoreError> {
    put_json(store, &key(&a.approval_id), a, a.expires_at.saturating_add(RETENTION_S))
}

/// Records the delivery state of an approval's latest webhook event.
pub(super) fn set_webhook(store: &mut impl Store, id: &str, state: &str) -> Result<(), StoreError> {
    match get_json::<Approval>(store, &key(id))? {
        Some(a) => save(store, &Approval { webhook: Some(state.to_string()), ..a }),
        None => Ok(()),
    }
}

/// Holds a request for approval. The same request held again while its
/// approval is still usable gets the same approval back.
pub fn hold(store: &mut impl Store, new: Approval, now_s: u64) -> Result<Approval, StoreError> {
    if let Some(id) = get_json::<String>(store, &by_digest(&new.digest))? {
        if let Some(existing) = get_json::<Approval>(store, &key(&id))? {
            let existing = existing.at(now_s);
            if matches!(existing.status, Status::Pending | Status::Approved) {
                return Ok(existing);
            }
        }
    }
    save(store, &new)?;
    put_json(store, &by_digest(&new.digest), &new.approval_id, new.expires_at)?;
    Ok(new)
}

pub fn get(store: &impl Store, id: &str, now_s: u64) -> Result<Option<Approval>, StoreError> {
    Ok(get_json::<Approval>(store, &key(id))?.map(|a| a.at(now_s)))
}

/// Pending approvals, oldest first.
pub fn pending(store: &impl Store, now_s: u64) -> Result<Vec<Approval>, StoreError> {
    let mut out = Vec::new();
    for raw in store.scan("ap:", usize::MAX)? {
        let a: Approval = serde_json::from_str(&raw).map_err(|_| StoreError)?;
        let a = a.at(now_s);
        if a.status == Status::Pending {
            out.push(a);
        }
    }
    out.sort_by(|a, b| (a.created_at, &a.approval_id).cmp(&(b.created_at, &b.approval_id)));
    out.truncate(MAX_LISTED);
    Ok(out)
}

/// The outcome of a decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decided {
    Done(Approval),
    /// Already decided, used or expired: shown as it is.
    AlreadyDecided(Approval),
    NotFound,
}

pub fn decide(store: &mut impl Store, id: &str, approve: bool, approver: &str, now_s: u64) -> Result<Decided, StoreError> {
    let Some(a) = get(store, id, now_s)? else { return Ok(Decided::NotFound) };
    if a.status != Status::Pending {
        return Ok(Decided::AlreadyDecided(a));
    }
    let a = Approval { status: if approve { Status::Approved } else { Status::Denied }, decided_by: Some(approver.to_string()), decided_at: Some(now_s), ..a };
    save(store, &a)?;
    Ok(Decided::Done(a))
}

/// Presents approval `id` for the request with `digest`: passes once, and
/// returns who approved it.
pub fn consume(store: &mut impl Store, id: &str, digest: &str, now_s: u64) -> Result<Result<String, Refusal>, StoreError> {
    let Some(a) = get(store, id, now_s)? else { return Ok(Err(Refusal::Invalid)) };
    // A mismatched request learns nothing about the approval's state.
    if a.digest != digest {
        return Ok(Err(Refusal::Invalid));
    }
    match a.status {
        Status::Pending => Ok(Err(Refusal::Pending)),
        Status::Denied => Ok(Err(Refusal::Denied)),
        Status::Used | Status::Expired => Ok(Err(Refusal::Invalid)),
        Status::Approved => {
            let approver = a.decided_by.clone().unwrap_or_default();
            save(store, &Approval { status: Status::Used, ..a })?;
            Ok(Ok(approver))
        }
    }
}

/// One request to the page, as the edge hands it to the approvals object,
/// which holds the approvals: showing one is a read there, and deciding
/// one a single step with its webhook events (the request path's module
/// carries none of the page).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PageRequest {
    /// The link's token (`ap1.…`).
    pub token: String,
    pub method: String,
    /// The POST body; `None` when it was not readable within `crate::approval::MAX_FORM`.
    pub form: Option<String>,
    pub origin: Option<String>,
    pub fetch_site: Option<String>,
    /// The origins the page is served from.
    pub own: Vec<String>,
    /// `Cf-Access-Authenticated-User-Email`, set when Cloudflare Access
    /// guards the page.
    pub access_email: Option<String>,
    /// The `AIRLOCK_APPROVAL_KEY` as set; `None` when it is not.
    pub key: Option<String>,
}

/// The page to answer with, and what the audit record says of it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PageAnswer {
    pub status: u16,
    pub html: String,
    /// The refusal's stable code; `None` when the page was shown or the
    /// decision taken.
    pub code: Option<String>,
    pub detail: Option<String>,
    pub approval_id: Option<String>,
    pub session_id: Option<String>,
    pub approved_by: Option<String>,
    /// A decision was taken: held requests are woken, webhook events queued.
    pub decided: bool,
}

/// A pending approval of session `s1` (tool `pay`), for tests.
#[cfg(test)]
pub(crate) fn sample(id: &str, digest: &str) -> Approval {
    Approval {
        approval_id: id.into(),
        status: Status::Pending,
        session_id: "s1".into(),
        agent: "a".into(),
        user: "u".into(),
        tool: "pay".into(),
        method: "POST".into(),
        path: "/charges".into(),
        query: String::new(),
        body_sha256: "00".into(),
        digest: digest.into(),
        created_at: 1_000,
        expires_at: 4_600,
        decided_by: None,
        decided_at: None,
        body: None,
        body_truncated: false,
        webhook: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::store::MemStore;

    #[test]
    fn the_approved_request_passes_exactly_once() {
        let mut s = MemStore::new();
        let held = hold(&mut s, sample("ap_1", "d1"), 1_000).unwrap();
        assert_eq!(held.approval_id, "ap_1");
        assert_eq!(consume(&mut s, "ap_1", "d1", 1_001).unwrap(), Err(Refusal::Pending));
        assert!(matches!(decide(&mut s, "ap_1", true, "alice", 1_002).unwrap(), Decided::Done(a) if a.status == Status::Approved));
        assert_eq!(consume(&mut s, "ap_1", "d2", 1_003).unwrap(), Err(Refusal::Invalid), "another request");
        assert_eq!(consume(&mut s, "ap_1", "d1", 1_003).unwrap(), Ok("alice".to_string()));
        assert_eq!(consume(&mut s, "ap_1", "d1", 1_004).unwrap(), Err(Refusal::Invalid), "second use");
        assert_eq!(get(&s, "ap_1", 1_004).unwrap().unwrap().status, Status::Used);
    }

    #[test]
    fn holding_the_same_request_again_returns_the_same_approval() {
        let mut s = MemStore::new();
        hold(&mut s, sample("ap_1", "d1"), 1_000).unwrap();
        assert_eq!(hold(&mut s, sample("ap_2", "d1"), 1_010).unwrap().approval_id, "ap_1");
        assert_eq!(hold(&mut s, sample("ap_3", "d9"), 1_010).unwrap().approval_id, "ap_3");
        assert_eq!(pending(&s, 1_010).unwrap().len(), 2);
        // Once used, the same request needs a new approval.
        decide(&mut s, "ap_1", true, "bob", 1_020).unwrap();
        consume(&mut s, "ap_1", "d1", 1_021).unwrap().unwrap();
        assert_eq!(hold(&mut s, sample("ap_4", "d1"), 1_030).unwrap().approval_id, "ap_4");
    }

    #[test]
    fn denial_expiry_and_unknown_ids_are_refused_and_decisions_are_final() {
        let mut s = MemStore::new();
        hold(&mut s, sample("ap_1", "d1"), 1_000).unwrap();
        assert!(matches!(decide(&mut s, "ap_1", false, "carol", 1_001).unwrap(), Decided::Done(a) if a.status == Status::Denied));
        assert!(matches!(decide(&mut s, "ap_1", true, "mallory", 1_002).unwrap(), Decided::AlreadyDecided(a) if a.decided_by.as_deref() == Some("carol")));
        assert_eq!(consume(&mut s, "ap_1", "d1", 1_003).unwrap(), Err(Refusal::Denied));
        assert_eq!(consume(&mut s, "ap_forged", "d1", 1_003).unwrap(), Err(Refusal::Invalid));
        assert_eq!(decide(&mut s, "ap_forged", true, "x", 1_003).unwrap(), Decided::NotFound);

        hold(&mut s, sample("ap_2", "d2"), 1_000).unwrap();
        decide(&mut s, "ap_2", true, "alice", 1_001).unwrap();
        assert_eq!(consume(&mut s, "ap_2", "d2", 4_600).unwrap(), Err(Refusal::Invalid), "expired after approval");
        assert!(pending(&s, 4_600).unwrap().is_empty());
        hold(&mut s, sample("ap_3", "d3"), 1_000).unwrap();
        assert!(matches!(decide(&mut s, "ap_3", true, "alice", 4_600).unwrap(), Decided::AlreadyDecided(a) if a.status == Status::Expired));
    }
}
