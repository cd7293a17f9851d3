//! Replay protection: each request-proof nonce is accepted once per session
//! within a bounded time window.
//!
//! Invariants: a proof outside the window is refused whatever its nonce, so
//! nonces only need remembering for the window; memory is bounded by the
//! number of accepted proofs in one window (oldest expire first); only a
//! digest of each nonce is kept, never the nonce itself.

use std::collections::{BTreeMap, HashSet};

use sha2::{Digest, Sha256};

/// Why a proof's nonce or time was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReplayError {
    /// The proof's timestamp is too far from `now`.
    Stale { ts: u64, now: u64 },
    /// This nonce was already accepted within the window.
    Replayed,
    /// The session holds as many live nonces as it may.
    Full,
}

/// The nonces one session accepted recently.
#[derive(Debug, Clone, Default)]
pub struct NonceWindow {
    /// Digests of live nonces.
    seen: HashSet<[u8; 32]>,
    /// Expiry time (unix s) -> digests expiring then, for pruning in order.
    expiries: BTreeMap<u64, Vec<[u8; 32]>>,
}

/// How far a proof's timestamp may be from `now`, either way (seconds).
pub const WINDOW_SECS: u64 = 300;
/// Most live nonces kept per session; more proofs in one window are refused.
pub const MAX_LIVE: usize = 100_000;

impl NonceWindow {
    pub fn new() -> NonceWindow {
        NonceWindow::default()
    }

    /// Forgets nonces whose proofs can no longer be presented: a proof with
    /// timestamp `ts` is accepted while `now <= ts + WINDOW_SECS`, so its
    /// nonce must be kept through that second, inclusive.
    fn prune(&mut self, now: u64) {
        let live = self.expiries.split_off(&now);
        for digest in std::mem::replace(&mut self.expiries, live).into_values().flatten() {
            self.seen.remove(&digest);
        }
    }

    /// Accepts a proof's `(ts, nonce)` once: refused if `ts` is outside the
    /// window or the nonce was seen within it.
    pub fn accept(&mut self, nonce: &[u8], ts: u64, now: u64) -> Result<(), ReplayError> {
        if ts.abs_diff(now) > WINDOW_SECS {
            return Err(ReplayError::Stale { ts, now });
        }
        self.prune(now);
        let digest: [u8; 32] = Sha256::digest(nonce).into();
        if self.seen.contains(&digest) {
            return Err(ReplayError::Replayed);
        }
        if self.seen.len() >= MAX_LIVE {
            return Err(ReplayError::Full);
        }
        // A nonce must be remembered for as long as its proof could still be
        // presented: until `ts + WINDOW_SECS`.
        self.seen.insert(digest);
        self.expiries.entry(ts + WINDOW_SECS).or_default().push(digest);
        Ok(())
    }

    pub fn live(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_accepted_once_within_the_window() {
        let mut w = NonceWindow::new();
        assert_eq!(w.accept(b"n1", 1_000, 1_000), Ok(()));
        assert_eq!(w.accept(b"n1", 1_000, 1_001), Err(ReplayError::Replayed));
        assert_eq!(w.accept(b"n1", 1_200, 1_250), Err(ReplayError::Replayed), "a new timestamp does not launder a nonce");
        assert_eq!(w.accept(b"n2", 1_000, 1_001), Ok(()));
    }

    #[test]
    fn fifty_identical_proofs_pass_once() {
        let mut w = NonceWindow::new();
        let accepted = (0..50).filter(|_| w.accept(b"same-nonce", 5_000, 5_000).is_ok()).count();
        assert_eq!(accepted, 1);
    }

    #[test]
    fn stale_and_future_proofs_are_refused() {
        let mut w = NonceWindow::new();
        let now = 10_000;
        assert_eq!(w.accept(b"a", now - WINDOW_SECS - 1, now), Err(ReplayError::Stale { ts: now - WINDOW_SECS - 1, now }));
        assert_eq!(w.accept(b"b", now + WINDOW_SECS + 1, now), Err(ReplayError::Stale { ts: now + WINDOW_SECS + 1, now }));
        assert_eq!(w.accept(b"c", now - WINDOW_SECS, now), Ok(()));
        assert_eq!(w.accept(b"d", now + WINDOW_SECS, now), Ok(()));
        assert_eq!(w.live(), 2, "refused proofs leave nothing behind");
        // At the window's edge the nonce is still remembered.
        assert_eq!(w.accept(b"c", now - WINDOW_SECS, now), Err(ReplayError::Replayed));
    }

    #[test]
    fn memory_is_bounded_by_the_window() {
        let mut w = NonceWindow::new();
        for i in 0..1_000u64 {
            assert_eq!(w.accept(&i.to_be_bytes(), 1_000 + i, 1_000 + i), Ok(()));
        }
        // At t = 1999 only proofs with ts >= 1999 - 300 can still be live.
        assert!(w.live() <= WINDOW_SECS as usize + 1, "{} live", w.live());
        // An expired nonce's proof is refused as stale, so forgetting it is safe.
        assert!(matches!(w.accept(&0u64.to_be_bytes(), 1_000, 1_999), Err(ReplayError::Stale { .. })));
    }
}
