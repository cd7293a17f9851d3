//! The sessions index: one row per minted session in the `sessions-index`
//! object, so the control plane can list sessions by agent, user and status
//! and revoke all of an agent's sessions.
//!
//! Invariants:
//! - The index is a listing, never an authority: a request is checked
//!   against its session's own object, so a stale row can never let a
//!   revoked session through. The edge writes a row at mint before the
//!   token is returned (no row, no token) and marks it on revoke.
//! - Rows are ordered by (created_at, session_id) and a cursor is the last
//!   row's position, so paging never repeats a row and never skips one
//!   that existed when the first page was read, whatever is minted meanwhile.
//! - A page scans at most [`MAX_SCAN`] rows; a filtered page may therefore
//!   be short (even empty) with a cursor: the caller keeps following it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::session::{SessionRecord, RECORD_RETENTION_S};
use super::store::{get_json, put_json, Store, StoreError};
use super::Reply;
use crate::level::Level;

/// The state object that holds the index.
pub const INDEX_OBJECT: &str = "sessions-index";
pub const DEFAULT_LIMIT: usize = 50;
pub const MAX_LIMIT: usize = 200;
/// Most rows one page reads, so a selective filter cannot make one
/// command walk the whole index.
pub const MAX_SCAN: usize = 5_000;
const BATCH: usize = 256;
const PREFIX: &str = "s:";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexRow {
    pub session_id: String,
    pub agent: String,
    pub user: String,
    pub tools: BTreeMap<String, Level>,
    pub egress: bool,
    pub created_at: u64,
    pub expires_at: u64,
    pub revoked_at: Option<u64>,
}

impl IndexRow {
    pub fn of(r: &SessionRecord) -> IndexRow {
        IndexRow {
            session_id: r.session_id.clone(),
            agent: r.agent.clone(),
            user: r.user.clone(),
            tools: r.tools.clone(),
            egress: r.egress,
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
        }
    }

    fn status(&self, now_s: u64) -> Status {
        if self.revoked_at.is_some() {
            Status::Revoked
        } else if now_s >= self.expires_at {
            Status::Expired
        } else {
            Status::Active
        }
    }

    fn view(&self, now_s: u64) -> RowView {
        RowView { status: self.status(now_s), row: self.clone() }
    }
}

/// Where a row sits: `s:<created_at, 20 digits>:<session id>`.
fn key(created_at: u64, session_id: &str) -> String {
    format!("{PREFIX}{created_at:020}:{session_id}")
}

/// A listed session: its row and its status now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RowView {
    pub status: Status,
    #[serde(flatten)]
    pub row: IndexRow,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Active,
    Revoked,
    Expired,
}

/// A listing request, parsed from the query of `GET /v1/sessions` (by the
/// state object: the worker passes the raw query on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    pub agent: Option<String>,
    pub user: Option<String>,
    pub status: Option<Status>,
    /// `<created_at>.<session id>` of the last row of the previous page.
    pub cursor: Option<String>,
    pub limit: usize,
}

impl Default for ListQuery {
    fn default() -> Self {
        ListQuery { agent: None, user: None, status: None, cursor: None, limit: DEFAULT_LIMIT }
    }
}

impl ListQuery {
    /// Parses `agent=&user=&status=&cursor=&limit=`; anything else, a
    /// repeated parameter or a malformed value is refused with its name.
    pub fn parse(query: &str) -> Result<ListQuery, String> {
        let mut q = ListQuery::default();
        let mut seen = Vec::new();
        for (name, value) in url::form_urlencoded::parse(query.as_bytes()) {
            if seen.contains(&name) {
                return Err(format!("query parameter {name:?} given twice"));
            }
            let v = value.to_string();
            match name.as_ref() {
                "agent" => q.agent = Some(v),
                "user" => q.user = Some(v),
                "status" => {
                    q.status = Some(match v.as_str() {
                        "active" => Status::Active,
                        "revoked" => Status::Revoked,
                        "expired" => Status::Expired,
                        _ => return Err("status must be active, revoked or expired".into()),
                    })
                }
                "cursor" => {
                    cursor_key(&v).ok_or("cursor is not one this API returned")?;
                    q.cursor = Some(v);
                }
                "limit" => {
                    q.limit = match v.parse::<usize>() {
                        Ok(n) if (1..=MAX_LIMIT).contains(&n) => n,
                        _ => return Err(format!("limit must be 1-{MAX_LIMIT}")),
                    }
                }
                other => return Err(format!("unknown query parameter {other:?} (agent, user, status, cursor, limit)")),
            }
            seen.push(name);
        }
        Ok(q)
    }
}

/// The key a cursor `<created_at>.<session id>` stands for.
fn cursor_key(cursor: &str) -> Option<String> {
    let (at, id) = cursor.split_once('.')?;
    let at: u64 = at.parse().ok().filter(|_| at.bytes().all(|b| b.is_ascii_digit()))?;
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))).then(|| key(at, id))
}

fn cursor(row: &IndexRow) -> String {
    format!("{}.{}", row.created_at, row.session_id)
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    pub sessions: Vec<RowView>,
    /// `None` once the index is exhausted.
    pub next_cursor: Option<String>,
}

/// A revocation the session's own object confirmed, for its row:
/// (session id, `"<created_at>:<revoked_at>"`), strings as the worker sends
/// pairs already.
pub type Revoked = (String, String);

/// Most sessions one agent-wide revocation takes on; the answer says when
/// there are more.
pub const MAX_AGENT_REVOKE: usize = 500;
/// Most pages one agent-wide lookup reads (each at most [`MAX_SCAN`] rows).
const MAX_AGENT_PAGES: usize = 20;

/// `GET /v1/sessions?{query}`: one page, as JSON, or the query's fault.
pub fn list_query(store: &impl Store, query: &str, now_s: u64) -> Result<Reply, StoreError> {
    match ListQuery::parse(query) {
        Ok(q) => Ok(Reply::Listed(serde_json::to_string(&list(store, &q, now_s)?).map_err(|_| StoreError)?)),
        Err(fault) => Ok(Reply::Refused(fault)),
    }
}

/// `DELETE /v1/sessions?agent=NAME`: the agent's active sessions.
pub fn agent_active(store: &impl Store, query: &str, now_s: u64) -> Result<Reply, StoreError> {
    let agent = match ListQuery::parse(query) {
        Ok(ListQuery { agent: Some(agent), user: None, status: None, cursor: None, .. }) => agent,
        Ok(_) => return Ok(Reply::Refused("DELETE /v1/sessions takes exactly ?agent=NAME".into())),
        Err(fault) => return Ok(Reply::Refused(fault)),
    };
    let mut q = ListQuery { agent: Some(agent.clone()), status: Some(Status::Active), limit: MAX_LIMIT, ..Default::default() };
    let mut sessions = Vec::new();
    let mut pages = 0;
    let more = loop {
        let page = list(store, &q, now_s)?;
        pages += 1;
        sessions.extend(page.sessions.into_iter().map(|v| (v.row.session_id, v.row.created_at.to_string())));
        match page.next_cursor {
            Some(c) if sessions.len() < MAX_AGENT_REVOKE && pages < MAX_AGENT_PAGES => q.cursor = Some(c),
            next => break next.is_some(),
        }
    };
    let more = more || sessions.len() > MAX_AGENT_REVOKE;
    sessions.truncate(MAX_AGENT_REVOKE);
    Ok(Reply::Agent(agent, sessions, more))
}

fn expiry(row: &IndexRow) -> u64 {
    row.expires_at.saturating_add(RECORD_RETENTION_S)
}

/// Writes the row of a new session; kept as long as its session record.
pub fn put(store: &mut impl Store, row: &IndexRow) -> Result<(), StoreError> {
    put_json(store, &key(row.created_at, &row.session_id), row, expiry(row))
}

/// Marks sessions revoked; the first revocation time is kept, and a row
/// that is gone (purged) stays gone.
pub fn revoked(store: &mut impl Store, revoked: &[Revoked]) -> Result<(), StoreError> {
    for (session_id, times) in revoked {
        let Some((created_at, revoked_at)) = times.split_once(':').and_then(|(c, r)| Some((c.parse().ok()?, r.parse().ok()?))) else { continue };
        let k = key(created_at, session_id);
        if let Some(mut row) = get_json::<IndexRow>(store, &k)? {
            if row.revoked_at.is_none() {
                row.revoked_at = Some(revoked_at);
                put_json(store, &k, &row, expiry(&row))?;
            }
        }
    }
    Ok(())
}

/// One page of the rows matching `q`, in (created_at, session_id) order.
pub fn list(store: &impl Store, q: &ListQuery, now_s: u64) -> Result<Page, StoreError> {
    let limit = q.limit.clamp(1, MAX_LIMIT);
    let mut after = match &q.cursor {
        Some(c) => cursor_key(c).ok_or(StoreError)?,
        None => PREFIX.to_string(),
    };
    let mut sessions = Vec::new();
    let mut scanned = 0;
    loop {
        let batch = store.scan_after(PREFIX, &after, BATCH)?;
        let full = batch.len() == BATCH;
        for raw in batch {
            let row: IndexRow = serde_json::from_str(&raw).map_err(|_| StoreError)?;
            after = key(row.created_at, &row.session_id);
            scanned += 1;
            let keep = q.agent.as_ref().is_none_or(|a| *a == row.agent)
                && q.user.as_ref().is_none_or(|u| *u == row.user)
                && q.status.is_none_or(|s| s == row.status(now_s));
            if keep {
                sessions.push(row.view(now_s));
                if sessions.len() == limit {
                    return Ok(Page { next_cursor: Some(cursor(&row)), sessions });
                }
            }
        }
        if !full {
            return Ok(Page { sessions, next_cursor: None });
        }
        if scanned >= MAX_SCAN {
            // The position reached, as a cursor: the next page goes on from it.
            let next = after.strip_prefix(PREFIX).and_then(|k| k.split_once(':')).and_then(|(at, id)| Some(format!("{}.{id}", at.parse::<u64>().ok()?)));
            return Ok(Page { sessions, next_cursor: next });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::store::MemStore;

    fn row(n: u64, agent: &str, user: &str) -> IndexRow {
        IndexRow {
            session_id: format!("{n:032x}"),
            agent: agent.into(),
            user: user.into(),
            tools: BTreeMap::from([("echo".to_string(), Level::Read)]),
            egress: false,
            created_at: 1_000 + n / 3,
            expires_at: 2_000 + n,
            revoked_at: None,
        }
    }

    fn ids(page: &Page) -> Vec<String> {
        page.sessions.iter().map(|v| v.row.session_id.clone()).collect()
    }

    /// Follows the cursors to the end; every row once, in order.
    fn all(s: &MemStore, q: &ListQuery, now_s: u64) -> (Vec<String>, usize) {
        let (mut out, mut pages, mut q) = (Vec::new(), 0, q.clone());
        loop {
            let page = list(s, &q, now_s).unwrap();
            pages += 1;
            out.extend(ids(&page));
            match page.next_cursor {
                Some(c) => q.cursor = Some(c),
                None => return (out, pages),
            }
        }
    }

    #[test]
    fn pages_cover_every_row_once_in_order_while_rows_are_added() {
        let mut s = MemStore::new();
        for n in 0..25 {
            put(&mut s, &row(n, "a", "u")).unwrap();
        }
        let q = ListQuery { limit: 10, ..Default::default() };
        let first = list(&s, &q, 1_500).unwrap();
        assert_eq!(first.sessions.len(), 10);
        // Minted between two pages: listed later, nothing repeated or skipped.
        put(&mut s, &row(99, "a", "u")).unwrap();
        let (rest, _) = all(&s, &ListQuery { cursor: first.next_cursor.clone(), ..q.clone() }, 1_500);
        let mut seen = ids(&first);
        seen.extend(rest);
        let mut want: Vec<String> = (0..25).chain([99]).map(|n| format!("{n:032x}")).collect();
        want.sort_by_key(|id| (row(u64::from_str_radix(id, 16).unwrap(), "", "").created_at, id.clone()));
        assert_eq!(seen, want);
    }

    #[test]
    fn filters_by_agent_user_and_status() {
        let mut s = MemStore::new();
        for n in 0..12 {
            put(&mut s, &row(n, if n % 2 == 0 { "even" } else { "odd" }, if n < 6 { "u1" } else { "u2" })).unwrap();
        }
        revoked(&mut s, &[(format!("{:032x}", 4), format!("{}:1100", row(4, "", "").created_at))]).unwrap();
        let q = |agent: Option<&str>, user: Option<&str>, status| ListQuery {
            agent: agent.map(Into::into),
            user: user.map(Into::into),
            status,
            limit: 3,
            ..Default::default()
        };
        assert_eq!(all(&s, &q(Some("even"), None, None), 1_500).0.len(), 6);
        assert_eq!(all(&s, &q(Some("even"), Some("u1"), None), 1_500).0.len(), 3);
        assert_eq!(all(&s, &q(None, None, Some(Status::Revoked)), 1_500).0, vec![format!("{:032x}", 4)]);
        // Expired is computed from expires_at (2_000 + n) against now.
        let expired = all(&s, &q(None, None, Some(Status::Expired)), 2_005).0;
        assert_eq!(expired, (0..6).filter(|n| *n != 4).map(|n| format!("{n:032x}")).collect::<Vec<_>>());
        assert_eq!(all(&s, &q(Some("even"), None, Some(Status::Active)), 2_005).0.len(), 3);
        let page = list(&s, &q(None, None, None), 1_500).unwrap();
        assert_eq!(page.sessions[0].status, Status::Active);
    }

    #[test]
    fn revocation_keeps_the_first_time_and_ignores_purged_rows() {
        let mut s = MemStore::new();
        put(&mut s, &row(1, "a", "u")).unwrap();
        let r = |at| (format!("{:032x}", 1), format!("{}:{at}", row(1, "", "").created_at));
        revoked(&mut s, &[r(1_200)]).unwrap();
        revoked(&mut s, &[r(1_300), (format!("{:032x}", 7), "5:1".into()), (format!("{:032x}", 1), "x".into())]).unwrap();
        let page = list(&s, &ListQuery::default(), 1_500).unwrap();
        assert_eq!((page.sessions.len(), page.sessions[0].row.revoked_at), (1, Some(1_200)));
        // Rows live as long as session records, then are purged.
        s.purge(2_001 + RECORD_RETENTION_S + 1).unwrap();
        assert!(list(&s, &ListQuery::default(), 1_500).unwrap().sessions.is_empty());
    }

    #[test]
    fn a_selective_filter_stops_at_the_scan_bound_with_a_cursor() {
        let mut s = MemStore::new();
        for n in 0..(MAX_SCAN as u64 + 400) {
            put(&mut s, &row(n, if n == MAX_SCAN as u64 + 250 { "rare" } else { "common" }, "u")).unwrap();
        }
        let q = ListQuery { agent: Some("rare".into()), ..Default::default() };
        let first = list(&s, &q, 1_500).unwrap();
        assert!(first.sessions.is_empty() && first.next_cursor.is_some(), "short page, cursor to go on");
        let (found, pages) = all(&s, &q, 1_500);
        assert_eq!((found, pages), (vec![format!("{:032x}", MAX_SCAN + 250)], 2));
    }

    #[test]
    fn queries_parse_or_name_what_is_wrong() {
        let q = ListQuery::parse("agent=build%20bot&user=ana&status=active&limit=200&cursor=12.0123456789abcdef0123456789abcdef").unwrap();
        assert_eq!((q.agent.as_deref(), q.user.as_deref(), q.status, q.limit), (Some("build bot"), Some("ana"), Some(Status::Active), 200));
        assert_eq!(ListQuery::parse("").unwrap(), ListQuery::default());
        for (bad, names) in [
            ("status=gone", "status"),
            ("limit=0", "limit"),
            ("limit=201", "limit"),
            ("limit=x", "limit"),
            ("cursor=12", "cursor"),
            ("cursor=x.0123456789abcdef0123456789abcdef", "cursor"),
            ("cursor=12.0123456789ABCDEF0123456789abcdef", "cursor"),
            ("agent=a&agent=b", "agent"),
            ("owner=x", "owner"),
        ] {
            let e = ListQuery::parse(bad).unwrap_err();
            assert!(e.contains(names), "{bad}: {e}");
        }
    }

    #[test]
    fn the_control_plane_answers_pages_and_an_agents_active_sessions() {
        let mut s = MemStore::new();
        for n in 0..7 {
            put(&mut s, &row(n, if n < 5 { "a" } else { "b" }, "u")).unwrap();
        }
        revoked(&mut s, &[(format!("{:032x}", 1), format!("{}:1100", row(1, "", "").created_at))]).unwrap();
        let Reply::Listed(json) = list_query(&s, "agent=a&limit=2", 1_500).unwrap() else { panic!() };
        let page: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(page["sessions"].as_array().unwrap().len(), 2);
        assert_eq!(page["sessions"][0]["status"], "active");
        assert_eq!(page["sessions"][0]["agent"], "a");
        assert!(page["next_cursor"].is_string());
        assert!(matches!(list_query(&s, "status=x", 1_500), Ok(Reply::Refused(_))));
        let Reply::Agent(agent, sessions, more) = agent_active(&s, "agent=a", 1_500).unwrap() else { panic!() };
        let want: Vec<(String, String)> = [0, 2, 3, 4].into_iter().map(|n| (format!("{n:032x}"), row(n, "", "").created_at.to_string())).collect();
        assert_eq!((agent.as_str(), sessions, more), ("a", want, false));
        for bad in ["", "user=u", "agent=a&status=active", "agent=a&agent=b"] {
            assert!(matches!(agent_active(&s, bad, 1_500), Ok(Reply::Refused(_))), "{bad:?}");
        }
    }

    #[test]
    fn an_agent_revoke_takes_at_most_its_cap_and_says_there_is_more() {
        let mut s = MemStore::new();
        for n in 0..(MAX_AGENT_REVOKE as u64 + 3) {
            put(&mut s, &row(n, "a", "u")).unwrap();
        }
        let Reply::Agent(_, sessions, more) = agent_active(&s, "agent=a", 1_500).unwrap() else { panic!() };
        assert_eq!((sessions.len(), more), (MAX_AGENT_REVOKE, true));
    }

    #[test]
    fn a_broken_store_is_an_error() {
        let mut s = MemStore::new();
        s.broken = true;
        assert_eq!(list(&s, &ListQuery::default(), 1), Err(StoreError));
        assert_eq!(put(&mut s, &row(1, "a", "u")), Err(StoreError));
    }
}
