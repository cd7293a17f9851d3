//! Airlock: an edge credential broker for AI-agent sandboxes.
//!
//! A sandbox can *use* a tool through Airlock but can never *read* the
//! credential behind it. Every request runs the same phases:
//!
//! `parse → authenticate → authorize → inject → forward → filter response → audit`
//!
//! The deciding modules below are plain Rust with no platform types; they
//! compile and are tested natively. Only [`edge`] (built for `wasm32`)
//! touches the Workers runtime, and the `worker` crate is not even a
//! dependency of native builds, so the boundary is enforced by the compiler.
//!
//! The crate builds two worker scripts: the Airlock worker ([`edge`]), and
//! with the `state-object` feature the `airlock-state` script that holds
//! the session-state Durable Object, so that neither module carries the
//! other's code.

pub mod audit;
pub mod authenticate;
pub mod admit;
pub mod authorize;
pub mod egress;
pub mod hex;
pub mod error;
pub mod inject;
pub mod level;
pub mod mcp;
pub mod path;
pub mod proof;
pub mod policy;
pub mod redact;
pub mod request;
pub mod respond;
pub mod route;
pub mod secret;
pub mod mint;
pub mod sse;
pub mod state;
pub mod token;

#[cfg(all(target_arch = "wasm32", not(feature = "state-object")))]
mod edge;
#[cfg(all(target_arch = "wasm32", feature = "state-object"))]
#[path = "edge/object.rs"]
mod object;
