//! A session's audit trail: the audit records of its requests, kept in the
//! session's own object as a hash chain (see [`crate::audit::chain_link`]).
//!
//! Invariants:
//! - Only a session whose record exists keeps a trail; its entries expire
//!   with the record.
//! - At most [`TRAIL_MAX`] records are kept: appending past it drops the
//!   oldest, whose hash stays in its successor's `prev`, so a reader sees
//!   where the retained chain starts and cannot mistake a cut for an edit.
//! - One append is one command: read the head, write the records (a
//!   worker sends the lines of several requests at once) and the new head,
//!   drop the oldest.

use serde::{Deserialize, Serialize};

use super::session::{self, RECORD_RETENTION_S};
use super::store::{get_json, put_json, Store, StoreError};
use crate::audit::{chain_hash, chain_link, GENESIS};

/// How many records a session keeps: the last 1,000.
pub const TRAIL_MAX: u64 = 1_000;
const HEAD: &str = "audit_head";
const PREFIX: &str = "audit:";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Head {
    seq: u64,
    hash: String,
    /// When the trail expires: with the session record (read once, at the
    /// first append, so later appends do not read the record).
    expires: u64,
}

/// The trail as the control plane reads it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Trail {
    /// The stored records, oldest first, each exactly the bytes hashed.
    pub records: Vec<String>,
    /// Hex SHA-256 of the last record; `None` while there is none.
    pub head: Option<String>,
}

fn key(seq: u64) -> String {
    format!("{PREFIX}{seq:020}")
}

/// Appends one audit line (a JSON object); `false` when the session has no
/// record here (never minted here, or purged) or the line is not an object.
pub fn append(store: &mut impl Store, line: &str) -> Result<bool, StoreError> {
    Ok(append_lines(store, line)? == 1)
}

/// Appends the audit lines of `lines` (one JSON object per line, as the
/// worker batches them), in order, with one head write; how many were
/// appended (none when the session has no record here; a line that is not
/// an object is skipped).
pub fn append_lines(store: &mut impl Store, lines: &str) -> Result<usize, StoreError> {
    let (mut seq, mut prev, expires) = match get_json::<Head>(store, HEAD)? {
        Some(h) => (h.seq.saturating_add(1), h.hash, h.expires),
        None => match session::get(store, 0)? {
            Some(view) => (0, GENESIS.to_string(), view.expires_at.saturating_add(RECORD_RETENTION_S)),
            None => return Ok(0),
        },
    };
    let mut appended = 0;
    for line in lines.split('\n') {
        let Some(stored) = chain_link(line, seq, &prev) else { continue };
        store.put(&key(seq), &stored, expires)?;
        if seq >= TRAIL_MAX {
            store.delete(&key(seq - TRAIL_MAX))?;
        }
        prev = chain_hash(&stored);
        seq = seq.saturating_add(1);
        appended += 1;
    }
    if appended > 0 {
        put_json(store, HEAD, &Head { seq: seq - 1, hash: prev, expires }, expires)?;
    }
    Ok(appended)
}

/// The retained trail; `None` when the session has no record here.
pub fn read(store: &impl Store) -> Result<Option<Trail>, StoreError> {
    if session::get(store, 0)?.is_none() {
        return Ok(None);
    }
    let records = store.scan(PREFIX, TRAIL_MAX as usize)?;
    let head = get_json::<Head>(store, HEAD)?.map(|h| h.hash);
    Ok(Some(Trail { records, head }))
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::audit::verify_chain;
    use crate::state::session::{create, SessionRecord};
    use crate::state::store::MemStore;

    fn store() -> MemStore {
        let mut s = MemStore::new();
        let r = SessionRecord {
            session_id: "s1".into(),
            agent: "a".into(),
            user: "u".into(),
            tools: BTreeMap::new(),
            egress: false,
            created_at: 1_000,
            expires_at: 5_000,
            revoked_at: None,
            usage: Default::default(),
            buckets: BTreeMap::new(),
        };
        create(&mut s, &r).unwrap();
        s
    }

    fn line(n: u64) -> String {
        format!(r#"{{"kind":"airlock.audit","request_id":"r{n}","decision":"allow"}}"#)
    }

    #[test]
    fn appended_records_form_a_verifiable_chain() {
        let mut s = store();
        assert_eq!(read(&s).unwrap().unwrap(), Trail { records: vec![], head: None });
        for n in 0..5 {
            assert!(append(&mut s, &line(n)).unwrap());
        }
        let t = read(&s).unwrap().unwrap();
        assert_eq!(t.records.len(), 5);
        assert!(t.records[0].starts_with(r#"{"kind":"airlock.audit","request_id":"r0","decision":"allow","seq":0,"prev":"0000"#), "{}", t.records[0]);
        assert_eq!(verify_chain(&t.records), Ok(t.head.clone()));
        assert_eq!(t.head, Some(chain_hash(&t.records[4])));
    }

    #[test]
    fn the_trail_keeps_the_last_thousand_and_still_verifies() {
        let mut s = store();
        for n in 0..TRAIL_MAX + 7 {
            append(&mut s, &line(n)).unwrap();
        }
        let t = read(&s).unwrap().unwrap();
        assert_eq!(t.records.len() as u64, TRAIL_MAX);
        assert!(t.records[0].contains(r#""request_id":"r7""#) && t.records[0].contains(r#""seq":7,"#));
        assert_eq!(verify_chain(&t.records), Ok(t.head));
    }

    #[test]
    fn no_record_no_trail_and_only_objects_are_kept() {
        let mut s = MemStore::new();
        assert_eq!(append(&mut s, &line(0)), Ok(false));
        assert_eq!(read(&s), Ok(None));
        assert!(s.is_empty());
        let mut s = store();
        for bad in ["", "{}", "[1]", "not json"] {
            assert_eq!(append(&mut s, bad), Ok(false), "{bad:?}");
        }
        assert!(read(&s).unwrap().unwrap().records.is_empty());
    }

    #[test]
    fn lines_appended_in_batches_store_exactly_what_one_by_one_stores() {
        let (mut one, mut batched) = (store(), store());
        let lines: Vec<String> = (0..TRAIL_MAX + 40).map(|n| if n % 97 == 5 { "not json".into() } else { line(n) }).collect();
        for l in &lines {
            append(&mut one, l).unwrap();
        }
        // Batches of 1 to 37 lines, one crossing the thousand.
        let mut at = 0;
        for size in (1..38).cycle() {
            if at >= lines.len() {
                break;
            }
            let end = (at + size).min(lines.len());
            let batch = lines[at..end].join("\n");
            let good = lines[at..end].iter().filter(|l| l.starts_with('{')).count();
            assert_eq!(append_lines(&mut batched, &batch), Ok(good));
            at = end;
        }
        assert_eq!(batched.dump(), one.dump());
        let t = read(&batched).unwrap().unwrap();
        assert_eq!(verify_chain(&t.records), Ok(t.head));
        assert_eq!(append_lines(&mut MemStore::new(), &lines[..3].join("\n")), Ok(0), "no record, no trail");
    }

    #[test]
    fn entries_expire_with_the_session_record() {
        let mut s = store();
        append(&mut s, &line(0)).unwrap();
        s.purge(5_001 + RECORD_RETENTION_S).unwrap();
        assert!(s.is_empty());
    }
}
