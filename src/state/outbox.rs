//! The approvals object's webhook outbox: events waiting to be delivered,
//! retried with backoff by the object's alarm.
//!
//! Invariants:
//! - An event is written in the same synchronous step as the hold or the
//!   decision it announces, so a decision that happened is announced at
//!   least once (delivery is off the request's path, in the alarm).
//! - An event is queued at most once (its id is derived, see
//!   [`crate::webhook::event_id`]); a retry sends the same id and body.
//! - After the last backoff step the event is dropped and the approval
//!   says `webhook: "failed"`; every attempt's outcome is logged by the
//!   object.

use serde::{Deserialize, Serialize};

use super::approvals::{self, Approval};
use super::store::{get_json, put_json, Store, StoreError};
use crate::webhook::{event_body, event_id, retry_after_s, Kind, WebhookDest};

/// How long an undelivered event is kept at most (longer than the backoff).
const KEEP_S: u64 = 2 * 86_400;
/// Most events one alarm delivers.
pub const MAX_BATCH: usize = 50;

/// Where a held approval's events go: sent by the worker with the hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notify {
    pub dest: WebhookDest,
    /// The name of the secret that keys the signature (not its value).
    pub secret: String,
    /// The approval page's URL with its link token, for `approval.requested`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<String>,
}

/// One queued event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub id: String,
    pub approval_id: String,
    pub body: String,
    pub dest: WebhookDest,
    pub secret: String,
    /// Failed attempts so far.
    pub failed: u32,
    pub next_at_ms: u64,
}

/// What became of one delivery attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    Delivered,
    Retry { at_ms: u64 },
    GaveUp,
}

impl Delivery {
    fn state(self) -> &'static str {
        match self {
            Delivery::Delivered => "delivered",
            Delivery::Retry { .. } => "retrying",
            Delivery::GaveUp => "failed",
        }
    }
}

fn key(id: &str) -> String {
    format!("ob:{id}")
}

fn notify_key(approval_id: &str) -> String {
    format!("apn:{approval_id}")
}

/// What an event says about an approval: no body (its digest only), no
/// session id.
fn public_fields(a: &Approval) -> serde_json::Value {
    let mut v = serde_json::json!({
        "id": a.approval_id, "agent": a.agent, "user": a.user, "tool": a.tool, "method": a.method,
        "path": a.path, "query": a.query, "body_sha256": a.body_sha256, "created_at": a.created_at,
        "expires_at": a.expires_at, "status": a.status.as_str(),
    });
    if let Some(by) = &a.decided_by {
        v["decided_by"] = by.as_str().into();
    }
    v
}

fn enqueue(store: &mut impl Store, kind: Kind, a: &Approval, notify: &Notify, now_ms: u64) -> Result<(), StoreError> {
    let id = event_id(kind, &a.approval_id);
    if store.get(&key(&id))?.is_some() {
        return Ok(());
    }
    let body = event_body(kind, &a.approval_id, public_fields(a), notify.page.as_deref(), now_ms / 1000);
    let entry = Entry {
        id: id.clone(),
        approval_id: a.approval_id.clone(),
        body,
        dest: notify.dest.clone(),
        secret: notify.secret.clone(),
        failed: 0,
        next_at_ms: now_ms,
    };
    put_json(store, &key(&id), &entry, now_ms / 1000 + KEEP_S)?;
    approvals::set_webhook(store, &a.approval_id, "pending")
}

/// A new approval was held: announce it, and remember where its decision goes.
pub fn on_hold(store: &mut impl Store, a: &Approval, notify: &Notify, now_ms: u64) -> Result<(), StoreError> {
    put_json(store, &notify_key(&a.approval_id), &Notify { page: None, ..notify.clone() }, a.expires_at.saturating_add(approvals::RETENTION_S))?;
    enqueue(store, Kind::Requested, a, notify, now_ms)
}

/// An approval was decided: announce it where its request was announced.
pub fn on_decided(store: &mut impl Store, a: &Approval, now_ms: u64) -> Result<(), StoreError> {
    match get_json::<Notify>(store, &notify_key(&a.approval_id))? {
        Some(notify) => enqueue(store, Kind::Decided, a, &notify, now_ms),
        None => Ok(()),
    }
}

fn entries(store: &impl Store) -> Result<Vec<Entry>, StoreError> {
    store.scan("ob:", usize::MAX)?.iter().map(|raw| serde_json::from_str(raw).map_err(|_| StoreError)).collect()
}

/// The events due at `now_ms`, earliest first, at most [`MAX_BATCH`].
pub fn due(store: &impl Store, now_ms: u64) -> Result<Vec<Entry>, StoreError> {
    let mut due: Vec<Entry> = entries(store)?.into_iter().filter(|e| e.next_at_ms <= now_ms).collect();
    due.sort_by_key(|e| e.next_at_ms);
    due.truncate(MAX_BATCH);
    Ok(due)
}

/// When the next event is due, if any is queued.
pub fn next_at(store: &impl Store) -> Result<Option<u64>, StoreError> {
    Ok(entries(store)?.iter().map(|e| e.next_at_ms).min())
}

/// Records an attempt to deliver `entry` (`ok`: the receiver answered 2xx).
pub fn record(store: &mut impl Store, entry: &Entry, ok: bool, now_ms: u64) -> Result<Delivery, StoreError> {
    let failed = entry.failed + 1;
    let outcome = match (ok, retry_after_s(failed)) {
        (true, _) => Delivery::Delivered,
        (false, Some(s)) => Delivery::Retry { at_ms: now_ms + s * 1000 },
        (false, None) => Delivery::GaveUp,
    };
    match outcome {
        Delivery::Retry { at_ms } => put_json(store, &key(&entry.id), &Entry { failed, next_at_ms: at_ms, ..entry.clone() }, now_ms / 1000 + KEEP_S)?,
        _ => store.delete(&key(&entry.id))?,
    }
    approvals::set_webhook(store, &entry.approval_id, outcome.state())?;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::approvals::{decide, get, hold, Status};
    use crate::state::store::MemStore;

    fn approval() -> Approval {
        Approval {
            approval_id: "ap_1".into(),
            status: Status::Pending,
            session_id: "s".into(),
            agent: "a".into(),
            user: "u".into(),
            tool: "t".into(),
            method: "POST".into(),
            path: "/x".into(),
            query: String::new(),
            body_sha256: "00".into(),
            digest: "d".into(),
            created_at: 1_000,
            expires_at: 4_600,
            decided_by: None,
            decided_at: None,
            body: Some("the secret plan".into()),
            body_truncated: false,
            webhook: None,
        }
    }

    fn notify() -> Notify {
        Notify { dest: WebhookDest::Url("https://hooks.example/x".into()), secret: "S".into(), page: Some("https://w/approve/l".into()) }
    }

    #[test]
    fn events_are_queued_once_retried_with_backoff_and_dropped_after_the_last() {
        let mut s = MemStore::new();
        let a = hold(&mut s, approval(), 1_000).unwrap();
        on_hold(&mut s, &a, &notify(), 1_000_000).unwrap();
        on_hold(&mut s, &a, &notify(), 1_000_500).unwrap();
        let due_now = due(&s, 1_000_000).unwrap();
        assert_eq!(due_now.len(), 1, "queued once");
        assert!(due_now[0].body.contains("https://w/approve/l"));
        assert!(!due_now[0].body.contains("the secret plan") && !due_now[0].body.contains("\"s\""), "no body, no session id");
        assert_eq!(get(&s, "ap_1", 1_000).unwrap().unwrap().webhook.as_deref(), Some("pending"));
        // The receiver fails twice, then takes it.
        let mut e = due_now[0].clone();
        assert_eq!(record(&mut s, &e, false, 1_000_000).unwrap(), Delivery::Retry { at_ms: 1_005_000 });
        assert!(due(&s, 1_004_999).unwrap().is_empty(), "not before its time");
        assert_eq!(next_at(&s).unwrap(), Some(1_005_000));
        e = due(&s, 1_005_000).unwrap().remove(0);
        assert_eq!((e.failed, &e.body), (1, &due_now[0].body), "same event, same body");
        assert_eq!(record(&mut s, &e, false, 1_005_000).unwrap(), Delivery::Retry { at_ms: 1_035_000 });
        assert_eq!(get(&s, "ap_1", 1_000).unwrap().unwrap().webhook.as_deref(), Some("retrying"));
        e = due(&s, 1_035_000).unwrap().remove(0);
        assert_eq!(record(&mut s, &e, true, 1_035_000).unwrap(), Delivery::Delivered);
        assert_eq!(next_at(&s).unwrap(), None);
        assert_eq!(get(&s, "ap_1", 1_000).unwrap().unwrap().webhook.as_deref(), Some("delivered"));

        // The decision goes where the request went, without the link.
        let decided = match decide(&mut s, "ap_1", true, "alice", 1_040).unwrap() {
            crate::state::approvals::Decided::Done(a) => a,
            other => panic!("{other:?}"),
        };
        on_decided(&mut s, &decided, 1_040_000).unwrap();
        let mut e = due(&s, 1_040_000).unwrap().remove(0);
        assert!(e.body.contains("approval.decided") && !e.body.contains("approve/l"));
        let mut outcomes = Vec::new();
        loop {
            let o = record(&mut s, &e, false, e.next_at_ms).unwrap();
            outcomes.push(o);
            match o {
                Delivery::Retry { at_ms } => e = due(&s, at_ms).unwrap().remove(0),
                _ => break,
            }
        }
        assert_eq!(outcomes.len(), 6, "five retries after the first attempt");
        assert_eq!(outcomes.last(), Some(&Delivery::GaveUp));
        assert_eq!(get(&s, "ap_1", 1_040).unwrap().unwrap().webhook.as_deref(), Some("failed"));
        assert_eq!(next_at(&s).unwrap(), None);
    }

    #[test]
    fn without_a_webhook_nothing_is_queued() {
        let mut s = MemStore::new();
        let a = hold(&mut s, approval(), 1_000).unwrap();
        let Ok(crate::state::approvals::Decided::Done(d)) = decide(&mut s, &a.approval_id, false, "bob", 1_001) else { panic!() };
        on_decided(&mut s, &d, 1_001_000).unwrap();
        assert_eq!(next_at(&s).unwrap(), None);
    }
}
