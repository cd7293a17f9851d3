//! HTTP odds and ends at the edge: request headers, JSON answers, and the
//! wire form of an error (status, code, body and headers all come from
//! [`Error`]).

use worker::{Headers, Request, Response};

use crate::error::Error;

/// The clock in milliseconds: `Date.now()`, one call into the runtime
/// (`worker::Date::now()` builds a `Date` object and reads it: two).
pub fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

pub const REQUEST_ID_HEADER: &str = "x-airlock-request-id";

pub fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
}

/// Every header of `headers` as (name, value) pairs, read in two calls into
/// the runtime (`JSON.stringify(Array.from(headers))`) instead of an
/// iterator's several calls per header. Names come lower-cased, as from
/// the iterator; a header list the runtime cannot render is an error.
pub fn header_pairs(headers: &Headers) -> Result<Vec<(String, String)>, ()> {
    let pairs = js_sys::Array::from(headers.as_ref());
    let json = js_sys::JSON::stringify(&pairs).map_err(drop)?.as_string().ok_or(())?;
    // Read as a `Value`, with the reader the state replies use: a typed
    // `Vec<(String, String)>` would bring a parser of its own.
    let value: serde_json::Value = serde_json::from_slice(json.as_bytes()).map_err(drop)?;
    let pair = |p: &serde_json::Value| Some((p.get(0)?.as_str()?.to_string(), p.get(1)?.as_str()?.to_string()));
    value.as_array().ok_or(())?.iter().map(pair).collect::<Option<_>>().ok_or(())
}

pub fn json_response(status: u16, body: String) -> Response {
    let headers = Headers::new();
    let _ = headers.set("content-type", "application/json");
    let _ = headers.set("cache-control", "no-store");
    Response::builder().with_status(status).with_headers(headers).fixed(body.into_bytes())
}

/// The wire form of `error`: JSON, or text for clients that only show
/// text (`text`, see [`crate::error::wants_text`]).
pub fn error_response(error: &Error, text: bool) -> Response {
    let response = if text {
        let headers = Headers::new();
        let _ = headers.set("content-type", "text/plain; charset=utf-8");
        let _ = headers.set("cache-control", "no-store");
        Response::builder().with_status(error.status()).with_headers(headers).fixed(error.text_body().into_bytes())
    } else {
        json_response(error.status(), error.wire_body())
    };
    for (name, value) in error.headers() {
        let _ = response.headers().set(name, &value);
    }
    response
}

pub fn to_json<T: serde::Serialize>(value: &T) -> Result<String, Error> {
    serde_json::to_string(value).map_err(|_| Error::Internal("encoding answer".into()))
}
