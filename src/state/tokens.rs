//! The upstream-token cache and its single flight: one state object per
//! (tool, narrowed scope), named by [`crate::upstream::plan`].
//!
//! Each ask ([`crate::state::Command::Token`]) runs [`begin`]: a cached
//! token that is not due for renewal is a hit; otherwise the first asker
//! gets the lease and the object mints for it, and the others are answered
//! the still-valid old token, or wait (the object holds their call open,
//! woken by [`put`] or [`abort`]). So concurrent first requests in any
//! isolate cause one mint, and exactly one refresh of a rotating refresh
//! token is ever in flight.
//!
//! Invariants:
//! - Only sealed values are stored: the token and the refresh token are
//!   AES-GCM sealed with a key derived from the root secret
//!   ([`crate::upstream::seal_key`]), which is never stored.
//! - A lease expires on its own (the mint timeout plus a margin), so a
//!   mint that died blocks nobody for long.
//! - A put from a lease that is no longer the current one stores nothing:
//!   it can not overwrite the refresh token a newer lease holder relies on.

use serde::{Deserialize, Serialize};

use super::store::{get_json, put_json, Store, StoreError};
use crate::upstream::{refresh_at, usable};

const TOKEN: &str = "token";
const LEASE: &str = "lease";
const REFRESH: &str = "refresh";
const FAILED: &str = "failed";
/// How long a rotated refresh token is kept after its last rotation.
pub const REFRESH_RETENTION_S: u64 = 90 * 86_400;
/// The longest a lease may be asked for.
pub const MAX_LEASE_S: u64 = 120;

#[derive(Serialize, Deserialize)]
struct Cached {
    sealed: String,
    expires_at: u64,
    refresh_at: u64,
}

#[derive(Serialize, Deserialize)]
struct Lease {
    id: String,
}

/// The last failed mint: when, and Airlock's words for it.
#[derive(Serialize, Deserialize)]
struct Failure {
    at_ms: u64,
    misconfigured: bool,
    detail: String,
}

/// What [`begin`] answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// A cached token (sealed) and its upstream expiry.
    Hit { sealed: String, expires_at: u64 },
    /// The caller mints; `refresh` is the sealed rotated refresh token, if
    /// one was stored.
    Lease { refresh: Option<String> },
    /// Another caller holds the lease and there is no usable token.
    Busy,
    /// The mint this caller waited for failed: its failure, shared with
    /// every caller that was waiting rather than tried again by each.
    Failed { misconfigured: bool, detail: String },
}

/// What the cache object answers the worker.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    /// The token, its upstream expiry, and whether it was minted just now
    /// (else it came from the cache).
    Token { token: String, expires_at: u64, minted: bool },
    /// No token: the root secret is missing or unusable (`misconfigured`),
    /// or the endpoint failed; Airlock's words, never the endpoint's.
    Failed { misconfigured: bool, detail: String },
}

/// Drops a cached token that no longer opens (its root secret was
/// rotated), and the refresh token with it.
pub fn forget(store: &mut impl Store) -> Result<(), StoreError> {
    store.delete(TOKEN)?;
    store.delete(REFRESH)
}

/// Asks for a token at `now_ms`; `lease` is the caller's random lease id,
/// `asked_ms` when its ask arrived: a mint that failed since then failed
/// for this caller too.
pub fn begin(store: &mut impl Store, lease: &str, lease_s: u64, asked_ms: u64, now_ms: u64) -> Result<Grant, StoreError> {
    let now_s = now_ms / 1000;
    let cached: Option<Cached> = get_json(store, TOKEN)?;
    let hit = |c: &Cached| Grant::Hit { sealed: c.sealed.clone(), expires_at: c.expires_at };
    if let Some(c) = cached.as_ref().filter(|c| now_s < c.refresh_at && usable(now_s, c.expires_at)) {
        return Ok(hit(c));
    }
    if get_json::<Lease>(store, LEASE)?.is_some() {
        // Someone renews: the old token serves until it is unusable.
        return Ok(match cached.as_ref().filter(|c| usable(now_s, c.expires_at)) {
            Some(c) => hit(c),
            None => Grant::Busy,
        });
    }
    if let Some(f) = get_json::<Failure>(store, FAILED)?.filter(|f| f.at_ms >= asked_ms) {
        return Ok(Grant::Failed { misconfigured: f.misconfigured, detail: f.detail });
    }
    put_json(store, LEASE, &Lease { id: lease.to_string() }, now_s.saturating_add(lease_s.min(MAX_LEASE_S)))?;
    Ok(Grant::Lease { refresh: store.get(REFRESH)? })
}

/// Stores what the holder of `lease` minted; `false` if the lease is no
/// longer the current one (nothing stored).
pub fn put(store: &mut impl Store, lease: &str, sealed: &str, expires_at: u64, refresh: Option<&str>, now_s: u64) -> Result<bool, StoreError> {
    match get_json::<Lease>(store, LEASE)? {
        Some(l) if l.id == lease => {}
        _ => return Ok(false),
    }
    let cached = Cached { sealed: sealed.to_string(), expires_at, refresh_at: refresh_at(now_s, expires_at) };
    put_json(store, TOKEN, &cached, expires_at)?;
    if let Some(r) = refresh {
        store.put(REFRESH, r, now_s.saturating_add(REFRESH_RETENTION_S))?;
    }
    store.delete(LEASE)?;
    Ok(true)
}

/// The holder of `lease` gave up without a failure to share (what it
/// minted could not be stored): the next asker mints.
pub fn abort(store: &mut impl Store, lease: &str) -> Result<(), StoreError> {
    if get_json::<Lease>(store, LEASE)?.is_some_and(|l| l.id == lease) {
        store.delete(LEASE)?;
    }
    Ok(())
}

/// The holder of `lease` failed to mint at `now_ms`: the callers waiting
/// for it get this failure; a caller that asks later mints again.
pub fn fail(store: &mut impl Store, lease: &str, misconfigured: bool, detail: &str, now_ms: u64) -> Result<(), StoreError> {
    if get_json::<Lease>(store, LEASE)?.is_some_and(|l| l.id == lease) {
        let failure = Failure { at_ms: now_ms, misconfigured, detail: detail.to_string() };
        put_json(store, FAILED, &failure, (now_ms / 1000).saturating_add(MAX_LEASE_S))?;
        store.delete(LEASE)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::store::MemStore;

    /// Seconds as the milliseconds `begin` takes.
    fn ms(s: u64) -> u64 {
        s * 1000
    }

    #[test]
    fn first_asker_mints_then_everyone_hits() {
        let mut s = MemStore::new();
        assert_eq!(begin(&mut s, "a", 15, ms(100), ms(100)), Ok(Grant::Lease { refresh: None }));
        assert_eq!(begin(&mut s, "b", 15, ms(100), ms(100)), Ok(Grant::Busy), "one mint in flight");
        assert_eq!(put(&mut s, "a", "sealed1", 100 + 3600, None, 101), Ok(true));
        for who in ["b", "c", "d"] {
            assert_eq!(begin(&mut s, who, 15, ms(102), ms(102)), Ok(Grant::Hit { sealed: "sealed1".into(), expires_at: 3700 }));
        }
    }

    #[test]
    fn renewal_before_expiry_is_one_lease_while_the_old_token_serves() {
        let mut s = MemStore::new();
        begin(&mut s, "a", 15, ms(0), ms(0)).unwrap();
        put(&mut s, "a", "t1", 3600, Some("r1"), 0).unwrap();
        let due = refresh_at(0, 3600);
        assert_eq!(begin(&mut s, "b", 15, ms(due), ms(due)), Ok(Grant::Lease { refresh: Some("r1".into()) }));
        assert_eq!(begin(&mut s, "c", 15, ms(due), ms(due)), Ok(Grant::Hit { sealed: "t1".into(), expires_at: 3600 }));
        assert_eq!(put(&mut s, "b", "t2", due + 3600, Some("r2"), due), Ok(true));
        assert_eq!(begin(&mut s, "d", 15, ms(due + 1), ms(due + 1)), Ok(Grant::Hit { sealed: "t2".into(), expires_at: due + 3600 }));
        assert!(!s.dump().contains("r1"), "the used refresh token is replaced");
    }

    #[test]
    fn an_expired_token_waits_for_the_mint() {
        let mut s = MemStore::new();
        begin(&mut s, "a", 15, ms(0), ms(0)).unwrap();
        put(&mut s, "a", "t1", 100, None, 0).unwrap();
        assert_eq!(begin(&mut s, "b", 15, ms(95), ms(95)), Ok(Grant::Lease { refresh: None }));
        assert_eq!(begin(&mut s, "c", 15, ms(95), ms(95)), Ok(Grant::Busy), "5 s left is not usable");
    }

    #[test]
    fn stale_or_foreign_leases_store_nothing() {
        let mut s = MemStore::new();
        begin(&mut s, "a", 15, ms(0), ms(0)).unwrap();
        s.purge(16).unwrap();
        assert_eq!(begin(&mut s, "b", 15, ms(16), ms(16)), Ok(Grant::Lease { refresh: None }), "an expired lease frees the cache");
        assert_eq!(put(&mut s, "a", "late", 4000, Some("rt-late"), 17), Ok(false));
        assert!(!s.dump().contains("late"));
        abort(&mut s, "a").unwrap();
        assert_eq!(begin(&mut s, "c", 15, ms(17), ms(17)), Ok(Grant::Busy), "a foreign abort frees nothing");
        abort(&mut s, "b").unwrap();
        assert_eq!(begin(&mut s, "c", 15, ms(17), ms(17)), Ok(Grant::Lease { refresh: None }));
    }

    #[test]
    fn the_waiters_of_a_failed_mint_share_its_failure_and_a_later_ask_mints_again() {
        let mut s = MemStore::new();
        let asked = ms(100);
        assert_eq!(begin(&mut s, "a", 15, asked, asked), Ok(Grant::Lease { refresh: None }));
        for who in ["b", "c"] {
            assert_eq!(begin(&mut s, who, 15, asked + 5, asked + 5), Ok(Grant::Busy));
        }
        fail(&mut s, "a", false, "token endpoint answered 500", asked + 900).unwrap();
        let failed = Grant::Failed { misconfigured: false, detail: "token endpoint answered 500".into() };
        for who in ["b", "c"] {
            // Woken: the mint they waited for failed; no second attempt.
            assert_eq!(begin(&mut s, who, 15, asked + 5, asked + 901), Ok(failed.clone()));
        }
        assert_eq!(begin(&mut s, "d", 15, asked + 950, asked + 950), Ok(Grant::Lease { refresh: None }), "a later ask tries again");
        // A foreign lease's failure records nothing.
        fail(&mut s, "zz", true, "foreign failure", asked + 960).unwrap();
        assert_eq!(begin(&mut s, "e", 15, asked + 955, asked + 970), Ok(Grant::Busy));
        // An abort (nothing to share) lets the waiters mint.
        abort(&mut s, "d").unwrap();
        assert_eq!(begin(&mut s, "e", 15, asked + 955, asked + 980), Ok(Grant::Lease { refresh: None }));
        assert!(!s.dump().contains("foreign failure"));
    }

    #[test]
    fn leases_are_bounded_and_failures_fail_closed() {
        let mut s = MemStore::new();
        begin(&mut s, "a", 100_000, ms(0), ms(0)).unwrap();
        s.purge(MAX_LEASE_S + 1).unwrap();
        assert!(s.is_empty());
        s.broken = true;
        assert_eq!(begin(&mut s, "a", 15, ms(0), ms(0)), Err(StoreError));
    }
}
