//! HTTP odds and ends at the edge: request headers, JSON answers, and the
//! wire form of an error (status, code, body and headers all come from
//! [`Error`]).

use worker::{Headers, Request, Response};

use crate::error::Error;

pub const REQUEST_ID_HEADER: &str = "x-airlock-request-id";

pub fn header(req: &Request, name: &str) -> Option<String> {
    req.headers().get(name).ok().flatten()
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
