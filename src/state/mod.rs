//! Session state machines: pure, `now` passed in, natively tested.
//!
//! Invariant: nothing here touches storage or a clock. A Durable Object
//! shell is meant to load a machine, run one typed command against it and
//! persist the result; everything that decides lives here.
//!
//! Not wired into the worker yet: these are the deciding parts of per-session
//! state (rate limits, replay protection), ready for that shell.

pub mod bucket;
pub mod nonces;
