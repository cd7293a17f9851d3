//! The worker's client for the session-state Durable Object (the class
//! itself is the separate `airlock-state` script, `src/edge/object.rs`).
//!
//! The client fails closed: a missing binding, a thrown error, a timeout or
//! an unexpected answer is [`Error::StateUnavailable`], and the request is
//! refused.

use std::time::Duration;

use wasm_bindgen::{JsCast, JsValue};
use worker::Env;

use super::deadline::{within, Outcome};
use crate::error::Error;
pub use crate::state::{Command, Reply};

/// The Durable Object binding Airlock's state lives behind.
pub const BINDING: &str = "AIRLOCK_STATE";
/// How long a state call may take before the request is refused.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Runs `command` on the state object `name`. Anything but a clear answer
/// is an error, so callers refuse the request.
pub async fn call(env: &Env, name: &str, command: &Command) -> Result<Reply, Error> {
    exchange(env, name, command, Via::Rpc).await
}

/// [`call`] for work left after the answer (`waitUntil`): the command goes
/// over the object's `fetch`, not JS RPC. In workerd, RPC calls to many
/// distinct objects made after their requests answered stall the next
/// requests on those clients' keep-alive connections (never dispatched,
/// then reset); calls over `fetch` do not (docs/performance.md, "A flood
/// of refusals").
pub async fn call_after_answer(env: &Env, name: &str, command: &Command) -> Result<Reply, Error> {
    exchange(env, name, command, Via::Fetch).await
}

/// How a command reaches the object: both ends answer the same commands.
#[derive(Clone, Copy)]
enum Via {
    /// `stub.run(command)`: no `Request` and `Response` per call.
    Rpc,
    /// `stub.fetch(url, {method: "POST", body: command})`.
    Fetch,
}

async fn exchange(env: &Env, name: &str, command: &Command, via: Via) -> Result<Reply, Error> {
    let unavailable = |what: &str| Error::StateUnavailable(format!("state object: {what}"));
    let namespace = env.durable_object(BINDING).map_err(|_| unavailable("binding AIRLOCK_STATE missing"))?;
    let stub = namespace.get_by_name(name).map_err(|_| unavailable("no stub"))?;
    let body = serde_json::to_string(command).map_err(|_| unavailable("encoding"))?;
    // A held request's wait runs as long as its rule says, then some.
    let timeout = match command {
        Command::Wait { wait_s, .. } | Command::Token { wait_s, .. } => CALL_TIMEOUT + Duration::from_secs(*wait_s),
        _ => CALL_TIMEOUT,
    };
    let timeout_ms = timeout.as_millis() as u64;
    // JS RPC (`stub.run(body)`, see `edge/object.rs`) or the object's
    // `fetch`. The answer must be a string holding a reply.
    let rpc: js_sys::Object = stub.into_rpc();
    let method = match via {
        Via::Rpc => "run",
        Via::Fetch => "fetch",
    };
    // `Reflect.apply`: on an RPC stub, `run.call(…)` would be a call of
    // a remote method named "call".
    let function =
        js_sys::Reflect::get(&rpc, &method.into()).ok().and_then(|f| f.dyn_into::<js_sys::Function>().ok()).ok_or_else(|| unavailable("no such method"))?;
    let args = match via {
        Via::Rpc => js_sys::Array::of1(&body.into()),
        Via::Fetch => {
            let init = web_sys::RequestInit::new();
            init.set_method("POST");
            init.set_body(&body.into());
            js_sys::Array::of2(&"https://airlock-state/".into(), &init)
        }
    };
    // Over `fetch` the answer's body is read within the same deadline.
    let deadline = match via {
        Via::Fetch => Some(super::http::now_ms().saturating_add(timeout_ms)),
        Via::Rpc => None,
    };
    let pending = js_sys::Reflect::apply(&function, &rpc, &args).map_err(|_| unavailable("call failed"))?;
    let mut answer = settled(within(&pending, timeout_ms).await, &unavailable, "call failed")?;
    if let Some(deadline) = deadline {
        let response = answer.dyn_into::<web_sys::Response>().map_err(|_| unavailable("answer unreadable"))?;
        if !response.ok() {
            return Err(unavailable("call refused"));
        }
        let text = response.text().map_err(|_| unavailable("answer unreadable"))?;
        let left = deadline.saturating_sub(super::http::now_ms());
        answer = settled(within(&text, left).await, &unavailable, "answer unreadable")?;
    }
    let text = answer.as_string().ok_or_else(|| unavailable("answer unreadable"))?;
    match crate::state::wire::decode_reply(text.as_bytes()) {
        Some(Reply::Failed) => Err(unavailable("storage failed")),
        Some(reply) => Ok(reply),
        None => Err(unavailable("answer undecodable")),
    }
}

/// The value a raced call settled with; a rejection is `failed`, a
/// deadline passed "timed out".
fn settled(outcome: Result<Outcome, JsValue>, unavailable: &dyn Fn(&str) -> Error, failed: &str) -> Result<JsValue, Error> {
    match outcome {
        Ok(Outcome::Settled(value)) => Ok(value),
        Ok(Outcome::Late) => Err(unavailable("timed out")),
        Err(_) => Err(unavailable(failed)),
    }
}
