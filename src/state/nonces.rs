//! Replay protection: each request-proof nonce is accepted once per session
//! within a bounded time window.
//!
//! Invariants: a proof outside the window is refused whatever its nonce, so
//! a nonce only needs remembering until its proof could no longer be
//! presented (`ts + window`, inclusive); storage is therefore bounded by the
//! proofs accepted in one window; only a digest of each nonce is kept.

use super::store::{Store, StoreError};

/// The widest window a policy may set (seconds either side of now).
pub const WINDOW_SECS: u64 = 300;

/// Why a proof's nonce or time was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayError {
    /// The proof's timestamp is too far from `now`.
    Stale,
    /// This nonce was already accepted within the window.
    Replayed,
    Store,
}

impl From<StoreError> for ReplayError {
    fn from(_: StoreError) -> Self {
        ReplayError::Store
    }
}

/// Accepts a proof's `(ts, nonce digest)` once: refused if `ts` is outside
/// the window or the nonce was seen within it. `digest` is the lower-case
/// hex SHA-256 of the nonce. The store must have been purged at `now`
/// (every command does that first).
pub fn accept(store: &mut impl Store, digest: &str, ts: u64, now: u64, window: u64) -> Result<(), ReplayError> {
    let window = window.min(WINDOW_SECS);
    if ts.abs_diff(now) > window {
        return Err(ReplayError::Stale);
    }
    let key = format!("nonce:{digest}");
    if store.get(&key)?.is_some() {
        return Err(ReplayError::Replayed);
    }
    store.put(&key, "1", ts + window)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::store::MemStore;
    use sha2::{Digest, Sha256};

    fn d(nonce: &[u8]) -> String {
        crate::hex::hex(&Sha256::digest(nonce))
    }

    fn accept_at(s: &mut MemStore, nonce: &[u8], ts: u64, now: u64) -> Result<(), ReplayError> {
        s.purge(now).unwrap();
        accept(s, &d(nonce), ts, now, WINDOW_SECS)
    }

    #[test]
    fn a_nonce_is_accepted_once_within_the_window() {
        let mut s = MemStore::new();
        assert_eq!(accept_at(&mut s, b"n1", 1_000, 1_000), Ok(()));
        assert_eq!(accept_at(&mut s, b"n1", 1_000, 1_001), Err(ReplayError::Replayed));
        assert_eq!(accept_at(&mut s, b"n1", 1_200, 1_250), Err(ReplayError::Replayed), "a new timestamp does not launder a nonce");
        assert_eq!(accept_at(&mut s, b"n2", 1_000, 1_001), Ok(()));
        assert!(!s.dump().contains("n1"), "only digests are stored");
    }

    #[test]
    fn fifty_identical_proofs_pass_once() {
        let mut s = MemStore::new();
        let accepted = (0..50).filter(|_| accept_at(&mut s, b"same-nonce", 5_000, 5_000).is_ok()).count();
        assert_eq!(accepted, 1);
    }

    #[test]
    fn stale_and_future_proofs_are_refused() {
        let mut s = MemStore::new();
        let now = 10_000;
        assert_eq!(accept_at(&mut s, b"a", now - WINDOW_SECS - 1, now), Err(ReplayError::Stale));
        assert_eq!(accept_at(&mut s, b"b", now + WINDOW_SECS + 1, now), Err(ReplayError::Stale));
        assert_eq!(accept_at(&mut s, b"c", now - WINDOW_SECS, now), Ok(()));
        assert_eq!(accept_at(&mut s, b"d", now + WINDOW_SECS, now), Ok(()));
        assert_eq!(s.len(), 2, "refused proofs leave nothing behind");
        // At the window's edge the nonce is still remembered.
        assert_eq!(accept_at(&mut s, b"c", now - WINDOW_SECS, now), Err(ReplayError::Replayed));
    }

    #[test]
    fn a_narrower_policy_window_is_honoured() {
        let mut s = MemStore::new();
        s.purge(1_000).unwrap();
        assert_eq!(accept(&mut s, &d(b"x"), 939, 1_000, 60), Err(ReplayError::Stale));
        assert_eq!(accept(&mut s, &d(b"x"), 940, 1_000, 60), Ok(()));
        // Kept through ts + window, forgotten after: its proof is stale by then.
        s.purge(1_000).unwrap();
        assert_eq!(accept(&mut s, &d(b"x"), 940, 1_000, 60), Err(ReplayError::Replayed));
        s.purge(1_001).unwrap();
        assert!(s.is_empty());
        assert_eq!(accept(&mut s, &d(b"x"), 940, 1_001, 60), Err(ReplayError::Stale));
    }

    #[test]
    fn storage_is_bounded_by_the_window() {
        let mut s = MemStore::new();
        for i in 0..1_000u64 {
            assert_eq!(accept_at(&mut s, &i.to_be_bytes(), 1_000 + i, 1_000 + i), Ok(()));
        }
        assert!(s.len() <= WINDOW_SECS as usize + 1, "{} live", s.len());
    }

    #[test]
    fn a_failing_store_refuses() {
        let mut s = MemStore::new();
        s.broken = true;
        assert_eq!(accept(&mut s, &d(b"n"), 1_000, 1_000, 60), Err(ReplayError::Store));
    }
}
