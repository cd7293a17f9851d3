//! Forward: the request Airlock built, sent to the tool's fixed origin (a
//! public URL or a tunnel binding), without following redirects, bounded by
//! the policy's timeout.
//!
//! Must never: send anything but the [`Outbound`] injection built, or let a
//! runtime error text (which can quote the URL and an injected query
//! credential) reach the audit record unscrubbed.

use std::cell::Cell;
use std::rc::Rc;

use wasm_bindgen::{JsCast, JsValue};
use worker::{Env, Request, Response};

use super::body::capped;
use super::deadline::{self, Outcome};
use crate::error::Error;
use crate::inject::Outbound;
use crate::policy::Target;
use crate::redact::Redactor;

/// What the upstream request carries as its body.
pub enum Body<'a> {
    /// The sandbox's own body, streamed through.
    Inbound(&'a Request),
    /// A body Airlock already read (an MCP message).
    Bytes(&'a [u8]),
}

/// Sends the outbound request, without following redirects, bounded by the
/// policy's timeout. The request body streams straight through.
pub async fn forward(body: Body<'_>, env: &Env, outbound: &Outbound, redactor: &Redactor, timeout_ms: u64) -> Result<Response, Error> {
    let internal = |what: &str| Error::Internal(format!("building the upstream request: {what}"));
    let headers = web_sys::Headers::new().map_err(|_| internal("headers"))?;
    for (name, value) in outbound.headers() {
        headers.append(name, value).map_err(|_| Error::Misconfigured(format!("header {name} refused by the runtime")))?;
    }
    // One abort signal inside the Request itself, so it applies to public
    // fetches and service bindings alike: a timeout, or an upload that fails
    // or passes the limit, aborts the upstream request instead of letting the
    // runtime finish it as if the body were complete.
    let controller = web_sys::AbortController::new().map_err(|_| internal("abort controller"))?;
    let init = web_sys::RequestInit::new();
    init.set_method(outbound.method().as_str());
    init.set_headers(&headers);
    init.set_redirect(web_sys::RequestRedirect::Manual);
    init.set_signal(Some(&controller.signal()));
    let overflow = Rc::new(Cell::new(false));
    if outbound.method().allows_body() {
        match body {
            Body::Inbound(req) => {
                if let Some(stream) = req.inner().body() {
                    let stream = match outbound.declared_length() {
                        // The runtime holds a body to its declared length, and
                        // the length was checked against the policy.
                        Some(_) => stream.into(),
                        // No declared length (chunked): count while streaming,
                        // so omitting Content-Length cannot bypass the cap.
                        None => capped(stream, outbound.body_limit(), overflow.clone(), controller.clone()),
                    };
                    init.set_body(&stream);
                }
            }
            Body::Bytes(bytes) => init.set_body(&js_sys::Uint8Array::from(bytes).into()),
        }
    }
    let upstream_request = web_sys::Request::new_with_str_and_init(outbound.url(), &init).map_err(|_| internal("request"))?;

    let target: JsValue = match outbound.target() {
        Target::Public => JsValue::UNDEFINED,
        Target::Service { binding } => match env.service(binding) {
            Ok(service) => service.into(),
            Err(_) => return Err(Error::Misconfigured(format!("service binding {binding} is not bound"))),
        },
    };
    // The deadline aborts the request through its own signal.
    match deadline::send(&target, &upstream_request, timeout_ms, &controller).await {
        Ok(Outcome::Late) => Err(Error::UpstreamTimeout { after_ms: timeout_ms }),
        // An upload past the limit aborted the request: whatever came back.
        _ if overflow.get() => Err(Error::BodyTooLarge { limit: outbound.body_limit(), declared: None }),
        Ok(Outcome::Settled(response)) => {
            let response: web_sys::Response = response.dyn_into().map_err(|_| internal("answer"))?;
            Ok(response.into())
        }
        Err(e) => {
            // Runtime error text can quote the URL, and with it an injected
            // query credential: cut at '?' and scrub before it is audited.
            let text = worker::Error::from(e).to_string();
            let text = text.split('?').next().unwrap_or_default();
            let scrubbed = String::from_utf8_lossy(&redactor.redact(text.as_bytes())).chars().take(200).collect();
            Err(Error::UpstreamUnavailable { detail: scrubbed })
        }
    }
}
