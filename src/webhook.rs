//! Approval webhooks: the event a human's tooling receives when a request
//! is held and when it is decided, its signature, and the retry schedule.
//!
//! Invariants:
//! - An event's id is derived from the approval and the event type, so a
//!   retried delivery carries the same id and body: receivers deduplicate.
//! - Every attempt is signed afresh: `airlock-signature: t=<unix>,v1=<hex
//!   HMAC-SHA256(secret, "<t>.<body>")>`, so receivers can refuse old
//!   timestamps (replays) without refusing late retries.
//! - The event carries no request body and no credential: the body's
//!   digest only; the page link shows the rest to whoever holds it.
//!
//! Must never: read a clock (`now` comes in) or touch the network.

use hmac::{Hmac, KeyInit, Mac};
use sha2::{Digest, Sha256};

use crate::hex::hex;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "airlock-signature";
/// Seconds to wait before each retry; after the last, delivery gives up.
pub const BACKOFF_S: [u64; 5] = [5, 30, 120, 600, 3_600];

/// `approval.requested` or `approval.decided`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Requested,
    Decided,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Requested => "approval.requested",
            Kind::Decided => "approval.decided",
        }
    }
}

/// The idempotent id of an approval's event of `kind`.
pub fn event_id(kind: Kind, approval_id: &str) -> String {
    let digest = Sha256::digest(format!("{}\n{approval_id}", kind.as_str()).as_bytes());
    format!("evt_{}", &hex(&digest)[..32])
}

/// The JSON body of the event about `approval` (its public fields, `id`
/// first); `page` is the approval page's URL (only in `approval.requested`).
pub fn event_body(kind: Kind, approval_id: &str, approval: serde_json::Value, page: Option<&str>, now_s: u64) -> String {
    let mut event = serde_json::json!({
        "id": event_id(kind, approval_id), "type": kind.as_str(), "created": now_s, "approval": approval,
    });
    if let (Kind::Requested, Some(page)) = (kind, page) {
        event["links"] = serde_json::json!({ "page": page });
    }
    event.to_string()
}

/// The `airlock-signature` value of `body` sent at `t`.
pub fn signature(secret: &[u8], t: u64, body: &str) -> String {
    // HMAC takes a key of any length.
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    mac.update(format!("{t}.").as_bytes());
    mac.update(body.as_bytes());
    format!("t={t},v1={}", hex(&mac.finalize().into_bytes()))
}

/// When to try again after `failed` failed attempts, or `None` to give up.
pub fn retry_after_s(failed: u32) -> Option<u64> {
    BACKOFF_S.get((failed as usize).checked_sub(1)?).copied()
}

/// Where approval events are POSTed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WebhookDest {
    Url(String),
    Service(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_matches_the_documented_vector() {
        // Cross-checked with Python:
        //   hmac.new(b"whsec_test", b"1765072000." + body, hashlib.sha256).hexdigest()
        let body = r#"{"id":"evt_1","type":"approval.requested"}"#;
        assert_eq!(signature(b"whsec_test", 1_765_072_000, body), format!("t=1765072000,v1={}", VECTOR_HEX));
    }

    const VECTOR_HEX: &str = "9323a71b5baf5be3d9e70b74178afd4bd061926a21d8e34c9d849a2648c5ee29";

    #[test]
    fn retries_back_off_then_give_up() {
        let got: Vec<Option<u64>> = (0..=6).map(retry_after_s).collect();
        assert_eq!(got, vec![None, Some(5), Some(30), Some(120), Some(600), Some(3_600), None]);
    }

    #[test]
    fn events_are_idempotent_and_link_only_requests() {
        assert_eq!(event_id(Kind::Requested, "ap_1"), event_id(Kind::Requested, "ap_1"));
        assert_ne!(event_id(Kind::Requested, "ap_1"), event_id(Kind::Decided, "ap_1"));
        let a = serde_json::json!({"id": "ap_1"});
        let v: serde_json::Value = serde_json::from_str(&event_body(Kind::Requested, "ap_1", a.clone(), Some("https://w/approve/x"), 5)).unwrap();
        assert_eq!(
            (v["type"].as_str(), v["links"]["page"].as_str(), v["created"].as_u64()),
            (Some("approval.requested"), Some("https://w/approve/x"), Some(5))
        );
        assert_eq!(v["id"].as_str(), Some(event_id(Kind::Requested, "ap_1").as_str()));
        let v: serde_json::Value = serde_json::from_str(&event_body(Kind::Decided, "ap_1", a, Some("p"), 6)).unwrap();
        assert_eq!(v.get("links"), None);
    }
}
