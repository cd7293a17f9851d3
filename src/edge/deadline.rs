//! Deadlines on the runtime's own promises, raced in JavaScript.
//!
//! A `worker::Delay` raced against a `JsFuture` in Rust costs a Rust
//! closure handed to `setTimeout` (with its finalizer registration), a
//! `clearTimeout` when it is dropped and a second future to poll. On the
//! request path three calls carry a deadline (the state call, the upstream
//! request, a small body read), so the race runs in a few lines of
//! JavaScript instead and Rust awaits one promise.
//!
//! Must never: let a synchronous throw reach Wasm as a trap (every import
//! here is `catch`), or leave a timer running once the race is decided.

use wasm_bindgen::prelude::*;
use worker::wasm_bindgen_futures::JsFuture;

#[wasm_bindgen(inline_js = r#"
export function airlockWithin(pending, ms, controller) {
  let timer;
  const late = new Promise((resolve) => {
    timer = setTimeout(() => {
      if (controller) controller.abort();
      resolve(null);
    }, ms);
  });
  return Promise.race([pending, late]).finally(() => clearTimeout(timer));
}
export function airlockSend(target, request, ms, controller) {
  return airlockWithin((target ?? globalThis).fetch(request), ms, controller);
}
export function airlockReadAll(stream, ms) {
  return airlockWithin(new Response(stream).arrayBuffer(), ms, null);
}
"#)]
extern "C" {
    #[wasm_bindgen(catch, js_name = airlockWithin)]
    fn within_js(pending: &JsValue, ms: f64, controller: Option<&web_sys::AbortController>) -> Result<js_sys::Promise, JsValue>;
    #[wasm_bindgen(catch, js_name = airlockSend)]
    fn send_js(target: &JsValue, request: &web_sys::Request, ms: f64, controller: &web_sys::AbortController) -> Result<js_sys::Promise, JsValue>;
    #[wasm_bindgen(catch, js_name = airlockReadAll)]
    fn read_all_js(stream: &web_sys::ReadableStream, ms: f64) -> Result<js_sys::Promise, JsValue>;
}

/// What a race against a deadline came to.
pub enum Outcome {
    /// The promise settled first, with this value.
    Settled(JsValue),
    /// The deadline passed first.
    Late,
}

async fn settle(race: Result<js_sys::Promise, JsValue>) -> Result<Outcome, JsValue> {
    let value = JsFuture::from(race?).await?;
    // None of the raced promises resolves to `null`: the state object
    // answers a string, `fetch` a `Response`, a body an `ArrayBuffer`.
    Ok(if value.is_null() { Outcome::Late } else { Outcome::Settled(value) })
}

/// `pending` (a promise or thenable), or [`Outcome::Late`] after `ms`.
pub async fn within(pending: &JsValue, ms: u64) -> Result<Outcome, JsValue> {
    settle(within_js(pending, ms as f64, None)).await
}

/// `fetch(request)` on `target` (a service binding; `undefined` for the
/// public internet), or [`Outcome::Late`] after `ms`, when `controller` is
/// aborted first.
pub async fn send(target: &JsValue, request: &web_sys::Request, ms: u64, controller: &web_sys::AbortController) -> Result<Outcome, JsValue> {
    settle(send_js(target, request, ms as f64, controller)).await
}

/// A whole body read by the runtime in one call, or `Err` when it failed
/// or took longer than `ms`.
pub async fn read_all(stream: &web_sys::ReadableStream, ms: u64) -> Result<Vec<u8>, ()> {
    match settle(read_all_js(stream, ms as f64)).await {
        Ok(Outcome::Settled(buffer)) => Ok(js_sys::Uint8Array::new(&buffer).to_vec()),
        _ => Err(()),
    }
}
