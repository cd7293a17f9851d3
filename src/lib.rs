//! Airlock: an edge credential broker for AI-agent sandboxes.
//!
//! A sandbox can *use* a tool through Airlock but can never *read* the
//! credential behind it. Every request runs the same phases, each consuming
//! the value the previous one built, so no phase can be skipped:
//!
//! | phase | decides (pure, native) | proof value it builds | runs it (edge, wasm32) |
//! |---|---|---|---|
//! | parse | [`request`], [`path`], [`route`] | `ToolRequest`, `NormalizedPath` | `edge/mod.rs`, `edge/body.rs` |
//! | authenticate | [`authenticate`], [`token`] | `VerifiedSession` | — |
//! | authorize | [`authorize`], [`egress`], [`mcp`] (the message) | `Permit` inside `Authorized` (+ the `Gate` for admission) | — |
//! | admit | [`admit`], [`proof`], [`state`] | `Admitted` | `edge/admit.rs`, `edge/state.rs` |
//! | inject | [`inject`] (reads the credential; [`inject::aws`] verifies an AWS tool's SigV4 before admission and signs again, with [`sigv4`]), [`upstream`] (the ones Airlock mints) | `Outbound` | `edge/config.rs` and `edge/secrets.rs` (secrets: worker secrets or Secrets Store bindings), `edge/upstream.rs` (minted tokens; the minting itself runs in the state script, `edge/minter.rs`) |
//! | forward | — | — | `edge/forward.rs` |
//! | filter response | [`respond`], [`redact`], [`mcp`] (lists), [`sse`], [`index`] (package index links) | — | `edge/respond.rs`, `edge/body.rs` |
//! | audit | [`audit`] | one record per request | `edge/audit.rs` |
//!
//! Beside the phases: [`mint`] (session tokens for the control plane,
//! minted by the new session's own state object),
//! [`approval`] (the approval page and its links), [`webhook`] (approval
//! events),
//! [`policy`] (the deploy-time configuration), [`error`] (every refusal and
//! its one wire mapping), [`secret`], [`level`], [`hex`] and [`json`] (leaves).
//!
//! The deciding modules are plain Rust with no platform types; they compile
//! and are tested natively. Only `edge` (built for `wasm32`) touches the
//! Workers runtime, and the `worker` crate is not even a dependency of
//! native builds, so the boundary is enforced by the compiler. Imports point
//! down this table, never back up.
//!
//! The crate builds two worker scripts: the Airlock worker (`edge`), and
//! with the `state-object` feature the `airlock-state` script that holds
//! the session-state Durable Object, so that neither module carries the
//! other's code.

#![deny(unsafe_code)]

pub mod error;
pub mod hex;
pub mod json;
pub mod level;
pub mod secret;

pub mod path;
pub mod request;
pub mod route;
pub mod sigv4;

pub mod authenticate;
pub mod token;

pub mod authorize;
pub mod egress;
pub mod mcp;
pub mod policy;
pub mod sse;

pub mod admit;
pub mod proof;
pub mod state;

pub mod inject;
pub mod upstream;

pub mod index;
pub mod redact;
pub mod respond;

pub mod audit;

pub mod mint;

pub mod approval;
pub mod webhook;

// The platform's macros (`#[event]`, `#[durable_object]`, wasm-bindgen)
// generate unsafe glue; the deciding modules above may not.
#[cfg(all(target_arch = "wasm32", not(feature = "state-object")))]
#[allow(unsafe_code)]
mod edge;
#[cfg(all(target_arch = "wasm32", feature = "state-object"))]
#[allow(unsafe_code)]
#[path = "edge/minter.rs"]
mod minter;
#[cfg(all(target_arch = "wasm32", feature = "state-object"))]
#[allow(unsafe_code)]
#[path = "edge/object.rs"]
mod object;
#[cfg(all(target_arch = "wasm32", feature = "state-object"))]
#[path = "edge/secrets.rs"]
mod secrets;
