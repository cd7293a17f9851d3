//! Audit: exactly one structured record per request, on every path.
//!
//! Invariants:
//! - A record holds names, ids, the normalized path (without query), codes,
//!   statuses and durations. It has no field for query values, bodies,
//!   tokens or credentials, so they cannot be logged through it.
//! - `detail` is Airlock's own text from [`crate::error::Error::detail`].
//! - A session's trail (`state::trail`) stores each record as logged, with
//!   `seq` and `prev` (SHA-256 of the record before it) added, so
//!   [`verify_chain`] finds a removed, altered or moved record.

use serde::Serialize;

use crate::error::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    Allow,
    Deny,
    Error,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditRecord {
    kind: &'static str,
    /// Unix milliseconds; written as RFC 3339 when the record is serialized,
    /// so formatting is paid once, in the audit phase.
    #[serde(serialize_with = "as_rfc3339")]
    pub ts: u64,
    pub request_id: String,
    pub route: &'static str,
    pub session_id: Option<String>,
    pub agent: Option<String>,
    pub user: Option<String>,
    pub tool: Option<String>,
    /// Destination host of an egress request.
    pub host: Option<String>,
    pub method: String,
    pub path: Option<String>,
    pub rule: Option<String>,
    /// MCP: the JSON-RPC method, the tool/prompt name or resource URI, and
    /// the argument *names* (values are never recorded).
    pub mcp_method: Option<String>,
    pub mcp_target: Option<String>,
    pub mcp_args: Option<Vec<String>>,
    /// MCP: the protocol era the request declared, `2025-11-25` (the
    /// handshake era) or `2026-07-28` (stateless).
    pub mcp_era: Option<&'static str>,
    /// MCP, a deduplicated tool: `false` when this call ran, `true` when it
    /// was answered with the stored result of an identical earlier call.
    pub mcp_replay: Option<bool>,
    pub decision: Decision,
    pub reason: &'static str,
    pub upstream_status: Option<u16>,
    /// Body bytes sent to the sandbox, for streamed responses.
    pub bytes_out: Option<u64>,
    /// How a streamed response ended: `complete`, `upstream_error`,
    /// `too_large`, `idle_timeout` or `cancelled`.
    pub stream: Option<&'static str>,
    /// `verified` when the request carried a proof that checked out.
    pub proof: Option<&'static str>,
    /// The limit a `rate_limited` refusal hit: `session` or `tool`.
    pub rate_limit: Option<&'static str>,
    /// `stored`, `replayed`, `key_reused`, `in_flight` or `not_stored`.
    pub idempotency: Option<&'static str>,
    pub approval_id: Option<String>,
    /// Who approved the request that passed an approval gate.
    pub approved_by: Option<String>,
    /// Milliseconds spent waiting for the session state.
    pub state_ms: Option<u64>,
    /// A token Airlock minted for the tool: its kind (`github_app`, …),
    /// where it came from (`memory`: this isolate; `cache`: the cache
    /// object; `mint`: the token endpoint, just now) and its upstream expiry
    /// (unix seconds). Never the token.
    pub minted: Option<&'static str>,
    pub minted_from: Option<&'static str>,
    pub minted_expires_at: Option<u64>,
    pub duration_ms: u64,
    pub detail: Option<String>,
}

impl AuditRecord {
    /// Starts a record for a request received at `now_ms` (unix ms).
    pub fn new(request_id: String, method: &str, now_ms: u64) -> AuditRecord {
        AuditRecord {
            kind: "airlock.audit",
            ts: now_ms,
            request_id,
            route: "unknown",
            session_id: None,
            agent: None,
            user: None,
            tool: None,
            host: None,
            // Methods come from the platform; cap what is copied into a log.
            method: method.chars().take(16).collect(),
            path: None,
            rule: None,
            mcp_method: None,
            mcp_target: None,
            mcp_args: None,
            mcp_era: None,
            mcp_replay: None,
            decision: Decision::Error,
            reason: "internal",
            upstream_status: None,
            bytes_out: None,
            stream: None,
            proof: None,
            rate_limit: None,
            idempotency: None,
            approval_id: None,
            approved_by: None,
            state_ms: None,
            minted: None,
            minted_from: None,
            minted_expires_at: None,
            duration_ms: 0,
            detail: None,
        }
    }

    /// Records a refusal decided inside an MCP message (answered by Airlock
    /// with a JSON-RPC error; the origin saw nothing).
    pub fn deny_mcp(&mut self, reason: &'static str) {
        self.decision = Decision::Deny;
        self.reason = reason;
    }

    pub fn allow(&mut self, upstream_status: Option<u16>) {
        self.decision = Decision::Allow;
        self.reason = "ok";
        self.upstream_status = upstream_status;
    }

    /// Records a failure: client faults are denials, the rest are errors.
    pub fn fail(&mut self, error: &Error) {
        self.decision = match error.source() {
            crate::error::Source::Client => Decision::Deny,
            _ => Decision::Error,
        };
        self.reason = error.code();
        self.detail = Some(error.detail());
    }

    pub fn finish(&mut self, now_ms: u64, started_ms: u64) {
        self.duration_ms = now_ms.saturating_sub(started_ms);
    }

    /// The record as one JSON line.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_else(|_| format!(r#"{{"kind":"airlock.audit","request_id":{:?},"decision":"error","reason":"audit_encoding"}}"#, self.request_id))
    }
}

fn as_rfc3339<S: serde::Serializer>(ms: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339_ms(*ms))
}

/// Formats unix milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ`.
pub fn rfc3339_ms(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil-from-days (Howard Hinnant), valid for the whole u64 ms range we see.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, (rem % 3600) / 60, rem % 60, ms % 1000)
}

/// The `prev` of a trail's first record: no record came before it.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Hex SHA-256 of a stored trail record's bytes: what its successor's
/// `prev` holds and, for the last one, the chain head.
pub fn chain_hash(stored: &str) -> String {
    use sha2::{Digest, Sha256};
    crate::hex::hex(&Sha256::digest(stored.as_bytes()))
}

/// The stored form of an audit line in a session's trail: the line as
/// logged, with `"seq"` (its position in the trail) and `"prev"` (the hash
/// of the record before it) added as the last members. `None` unless the
/// line is a non-empty JSON object without those members.
pub fn chain_link(line: &str, seq: u64, prev: &str) -> Option<String> {
    let fields: serde_json::Map<String, serde_json::Value> = serde_json::from_str(line).ok()?;
    if fields.is_empty() || fields.contains_key("seq") || fields.contains_key("prev") || !line.ends_with('}') {
        return None;
    }
    Some(format!("{},\"seq\":{seq},\"prev\":\"{prev}\"}}", &line[..line.len() - 1]))
}

/// Verifies a trail as returned by `GET /v1/sessions/{id}/audit`: every
/// record's `seq` follows its predecessor's and its `prev` is the hash of
/// its predecessor's bytes, and a trail that starts at `seq` 0 starts from
/// [`GENESIS`]. Returns the head (hash of the last record; `None` for an
/// empty trail) or the index of the first record whose link fails: a record
/// removed, altered (the break shows at its successor, or as a head that
/// differs from the one the trail was served with) or moved.
pub fn verify_chain<S: AsRef<str>>(records: &[S]) -> Result<Option<String>, usize> {
    let mut last: Option<(u64, String)> = None;
    for (i, stored) in records.iter().enumerate() {
        let stored = stored.as_ref();
        let fields: serde_json::Map<String, serde_json::Value> = serde_json::from_str(stored).map_err(|_| i)?;
        let seq = fields.get("seq").and_then(serde_json::Value::as_u64).ok_or(i)?;
        let prev = fields.get("prev").and_then(serde_json::Value::as_str).ok_or(i)?;
        let linked = match &last {
            Some((s, hash)) => s.checked_add(1) == Some(seq) && prev == hash,
            None => seq > 0 || prev == GENESIS,
        };
        if !linked {
            return Err(i);
        }
        last = Some((seq, chain_hash(stored)));
    }
    Ok(last.map(|(_, hash)| hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339_ms(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(rfc3339_ms(1_795_285_800_123), "2026-11-21T18:30:00.123Z");
        assert_eq!(rfc3339_ms(4_107_542_399_999), "2100-02-28T23:59:59.999Z");
    }

    #[test]
    fn a_denial_record_has_code_and_detail_but_no_wire_text() {
        let mut r = AuditRecord::new("rid".into(), "GET", 1_000);
        r.fail(&Error::ToolNotAllowed { tool: "stripe".into() });
        r.finish(1_250, 1_000);
        let v: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
        assert_eq!(v["kind"], "airlock.audit");
        assert_eq!(v["ts"], "1970-01-01T00:00:01.000Z");
        assert_eq!(v["decision"], "deny");
        assert_eq!(v["reason"], "tool_not_allowed");
        assert_eq!(v["duration_ms"], 250);
        assert!(v["detail"].as_str().unwrap().contains("stripe"));
        let fields: Vec<&String> = v.as_object().unwrap().keys().collect();
        for banned in ["query", "body", "token", "authorization", "credential"] {
            assert!(!fields.iter().any(|f| f.contains(banned)), "{banned} field in {fields:?}");
        }
    }

    #[test]
    fn upstream_faults_are_errors_not_denials() {
        let mut r = AuditRecord::new("rid".into(), "POST", 0);
        r.fail(&Error::UpstreamTimeout { after_ms: 5 });
        assert_eq!(r.decision, Decision::Error);
        r.allow(Some(201));
        assert_eq!((r.decision, r.reason, r.upstream_status), (Decision::Allow, "ok", Some(201)));
    }

    fn chain(n: u64) -> Vec<String> {
        let mut prev = GENESIS.to_string();
        (0..n)
            .map(|seq| {
                let stored = chain_link(&format!(r#"{{"kind":"airlock.audit","request_id":"r{seq}"}}"#), seq, &prev).unwrap();
                prev = chain_hash(&stored);
                stored
            })
            .collect()
    }

    #[test]
    fn a_chain_verifies_to_its_head() {
        let c = chain(4);
        assert_eq!(verify_chain(&c), Ok(Some(chain_hash(&c[3]))));
        assert_eq!(verify_chain::<String>(&[]), Ok(None));
        // A trail cut by retention starts later and still verifies.
        assert_eq!(verify_chain(&c[2..]), Ok(Some(chain_hash(&c[3]))));
    }

    #[test]
    fn a_removed_altered_or_moved_record_breaks_the_chain_where_it_shows() {
        let c = chain(5);
        let head = verify_chain(&c).unwrap();
        let removed: Vec<&String> = c.iter().enumerate().filter(|(i, _)| *i != 2).map(|(_, r)| r).collect();
        assert_eq!(verify_chain(&removed), Err(2), "removed");
        let mut altered = c.clone();
        altered[1] = altered[1].replace("r1", "r9");
        assert_eq!(verify_chain(&altered), Err(2), "altered: its successor no longer links");
        let mut last = c.clone();
        last[4] = last[4].replace("r4", "r9");
        assert_ne!(verify_chain(&last), Ok(head), "altered last record: the head differs");
        let mut moved = c.clone();
        moved.swap(1, 3);
        assert_eq!(verify_chain(&moved), Err(1), "reordered");
        let mut first = c.clone();
        first[0] = first[0].replace("r0", "r9");
        assert_eq!(verify_chain(&first), Err(1));
        let mut forged_start = c.clone();
        forged_start[0] = chain_link(r#"{"a":1}"#, 0, &"1".repeat(64)).unwrap();
        assert_eq!(verify_chain(&forged_start), Err(0), "seq 0 must start from GENESIS");
        assert_eq!(verify_chain(&["not json"]), Err(0));
        assert_eq!(verify_chain(&[r#"{"seq":1}"#]), Err(0), "no prev");
    }

    #[test]
    fn only_plain_objects_are_linked() {
        assert_eq!(chain_link(r#"{"a":1}"#, 3, "ab").as_deref(), Some(r#"{"a":1,"seq":3,"prev":"ab"}"#));
        for bad in ["{}", "[]", "x", r#"{"seq":1}"#, r#"{"prev":"x"}"#, "{\"a\":1} "] {
            assert_eq!(chain_link(bad, 0, GENESIS), None, "{bad}");
        }
    }
}
