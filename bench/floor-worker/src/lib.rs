//! The Rust floor worker: the JS baseline (bench/baseline-worker.js) written
//! with workers-rs. It forwards the request to `ORIGIN` + path + query with
//! the same method, headers and body, overwrites `authorization` with
//! `Bearer <TOKEN>`, and returns the origin's response as is. The body never
//! enters Rust: the origin's `ReadableStream` is handed back to workerd.
//!
//! No token check, no policy, no header filtering, no redaction, no audit:
//! what it costs is what any workers-rs worker pays to do the same job.
//!
//! Bindings: ORIGIN (e.g. "http://127.0.0.1:8788"), TOKEN (the credential).

use wasm_bindgen::JsValue;
use worker::{event, Context, Env, Fetch, Request, RequestInit, Response, Result};

#[event(fetch)]
pub async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let origin = env.var("ORIGIN")?.to_string();
    let token = env.var("TOKEN")?.to_string();
    let url = req.url()?;
    let target = match url.query() {
        Some(q) => format!("{origin}{}?{q}", url.path()),
        None => format!("{origin}{}", url.path()),
    };
    // Clone copies the incoming (immutable) headers into a new Headers.
    let headers = req.headers().clone();
    headers.set("authorization", &format!("Bearer {token}"))?;
    let mut init = RequestInit::new();
    init.with_method(req.method())
        .with_headers(headers)
        .with_body(req.inner().body().map(JsValue::from));
    let upstream = Request::new_with_init(&target, &init)?;
    Fetch::Request(upstream).send().await
}
