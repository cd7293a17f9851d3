//! Bodies at the edge: request bodies read whole (capped) or counted while
//! they stream, and origin bodies streamed through a filter, cut off at the
//! policy's size and idle limits.
//!
//! Must never: buffer a body it does not have to, or let a body that failed,
//! stalled or passed its cap look complete.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use futures_util::future::{select, Either};
use futures_util::stream::{self, StreamExt};
use wasm_bindgen::JsCast;
use worker::{ByteStream, Delay, Request, Response, ResponseBody};

use super::audit::SharedAudit;
use super::http::header;
use crate::error::Error;
use crate::redact::BodyFilter;
use crate::request;

/// A request body read whole (to be hashed), refused past `limit` bytes.
pub async fn read_body(req: &mut Request, limit: u64) -> Result<Vec<u8>, Error> {
    let too_big = |declared| Error::BodyTooLarge { limit, declared };
    if let Some(len) = header(req, "content-length") {
        let declared = request::parse_content_length(&len)?;
        if declared > limit {
            return Err(too_big(Some(declared)));
        }
    }
    let Ok(mut body) = req.stream() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|_| Error::InvalidRequest("could not read body".into()))?;
        if (out.len() + chunk.len()) as u64 > limit {
            return Err(too_big(None));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// An origin body read whole, to be rewritten: `Ok(None)` past `cap`
/// bytes, `Err` when it failed or a read stalled past `idle_ms`.
pub async fn read_whole(upstream: &Response, cap: u64, idle_ms: u64) -> Result<Option<Vec<u8>>, ()> {
    let raw = match upstream.body() {
        ResponseBody::Stream(raw) => raw.clone(),
        ResponseBody::Body(bytes) => return Ok(Some(bytes.clone()).filter(|b| b.len() as u64 <= cap)),
        ResponseBody::Empty => return Ok(Some(Vec::new())),
    };
    let mut source = Source::new(raw);
    let (mut buf, mut out) = (Vec::new(), Vec::new());
    loop {
        let n = {
            let read = source.read(&mut buf);
            let idle = Delay::from(Duration::from_millis(idle_ms));
            futures_util::pin_mut!(read);
            futures_util::pin_mut!(idle);
            match select(read, idle).await {
                Either::Left((Ok(n), _)) => n,
                _ => return Err(()),
            }
        };
        let piece = buf.get(..n).ok_or(())?;
        if piece.is_empty() {
            return Ok(Some(out));
        }
        if (out.len() + n) as u64 > cap {
            return Ok(None);
        }
        out.extend_from_slice(piece);
    }
}

/// Reads a small control-plane body, refusing more than `cap` bytes
/// whether or not a length was declared.
pub async fn read_capped(req: &mut Request, cap: usize) -> Result<Vec<u8>, Error> {
    read_body(req, cap as u64).await.map_err(|e| match e {
        Error::BodyTooLarge { .. } => Error::InvalidRequest(format!("body larger than {cap} bytes")),
        other => other,
    })
}

/// Streams a request body through a byte counter that errors the upload —
/// and aborts the upstream request — once more than `limit` bytes have
/// passed or the sandbox's upload fails, and records an overflow.
pub fn capped(body: web_sys::ReadableStream, limit: u64, overflow: Rc<Cell<bool>>, abort: web_sys::AbortController) -> wasm_bindgen::JsValue {
    let mut seen: u64 = 0;
    let counted = ByteStream::from(body).map(move |chunk| {
        let Ok(chunk) = chunk else {
            // The sandbox's upload broke off: abort, so the origin never
            // sees a truncated body as a complete request.
            abort.abort();
            return Err(wasm_bindgen::JsValue::from_str("request body failed"));
        };
        seen = seen.saturating_add(chunk.len() as u64);
        if seen > limit {
            overflow.set(true);
            abort.abort();
            return Err(wasm_bindgen::JsValue::from_str("request body larger than the policy allows"));
        }
        Ok(js_sys::Uint8Array::from(chunk.as_slice()).into())
    });
    wasm_streams::ReadableStream::from_stream(counted).into_raw().into()
}

#[derive(Clone, Copy)]
pub struct BodyLimits {
    pub max_bytes: u64,
    pub idle_ms: u64,
}

/// The idle timeout is observed in this many ticks: a stream is cut off
/// after between `IDLE_TICKS - 1` and `IDLE_TICKS` quarters of silence.
const IDLE_TICKS: u32 = 4;

/// Size of the buffer an origin body is read into: each read crosses from
/// the runtime into Wasm once, so larger reads mean fewer crossings.
const READ_BUFFER: usize = 64 * 1024;

/// The origin's body: read into one reusable buffer through a BYOB reader
/// when the runtime offers a byte stream, chunk by chunk otherwise.
pub enum Source {
    Bytes(wasm_streams::readable::IntoAsyncRead<'static>),
    Chunks(wasm_streams::readable::IntoStream<'static>),
}

impl Source {
    pub fn new(raw: web_sys::ReadableStream) -> Source {
        match wasm_streams::ReadableStream::from_raw(raw.unchecked_into()).try_into_async_read() {
            Ok(read) => Source::Bytes(read),
            Err((_, stream)) => Source::Chunks(stream.into_stream()),
        }
    }

    /// Reads the next piece into `buf`; `Ok(0)` at the end.
    pub async fn read(&mut self, buf: &mut Vec<u8>) -> Result<usize, ()> {
        match self {
            Source::Bytes(read) => {
                if buf.len() != READ_BUFFER {
                    buf.resize(READ_BUFFER, 0);
                }
                futures_util::AsyncReadExt::read(read, buf).await.map_err(|_| ())
            }
            Source::Chunks(stream) => match stream.next().await {
                None => Ok(0),
                Some(Err(_)) => Err(()),
                Some(Ok(chunk)) => {
                    let chunk: js_sys::Uint8Array = chunk.unchecked_into();
                    buf.resize(chunk.length() as usize, 0);
                    chunk.copy_to(buf);
                    Ok(buf.len())
                }
            },
        }
    }
}

/// The origin's body as the sandbox receives it: every piece through the
/// filter, cut off with an error when the origin fails mid-stream, sends
/// more than the cap, or goes quiet past the idle timeout. The stream holds
/// the audit slot, so the record is written when the stream ends — however
/// it ends, including the client going away.
pub fn filtered_body(
    body: web_sys::ReadableStream,
    filter: Box<dyn BodyFilter>,
    limits: BodyLimits,
    slot: SharedAudit,
) -> impl futures_util::Stream<Item = worker::Result<Vec<u8>>> {
    filtered_source(Source::new(body), Vec::new(), 0, filter, limits, slot)
}

/// [`filtered_body`] for a source already partly read: `prefix` (already
/// filtered) goes out first, and `received` bytes count against the cap.
pub fn filtered_source(
    source: Source,
    prefix: Vec<u8>,
    received: u64,
    filter: Box<dyn BodyFilter>,
    limits: BodyLimits,
    slot: SharedAudit,
) -> impl futures_util::Stream<Item = worker::Result<Vec<u8>>> {
    struct State {
        prefix: Vec<u8>,
        source: Source,
        buf: Vec<u8>,
        filter: Box<dyn BodyFilter>,
        limits: BodyLimits,
        received: u64,
        /// A ticking timer (a quarter of the idle timeout), armed once per
        /// pull rather than per read; the runtime's clock only moves with
        /// I/O, so quiet time is counted in ticks rather than read from it.
        tick: Option<std::pin::Pin<Box<Delay>>>,
        quiet_ticks: u32,
        slot: SharedAudit,
        done: bool,
    }
    impl State {
        fn end(&mut self, how: &'static str) {
            self.done = true;
            let mut slot = self.slot.borrow_mut();
            slot.stream = Some(how);
            slot.ended = true;
        }
        fn sent(&mut self, out: &[u8]) {
            self.slot.borrow_mut().bytes_out += out.len() as u64;
        }
        fn fail(mut self, how: &'static str) -> Option<(worker::Result<Vec<u8>>, State)> {
            self.end(how);
            Some((Err(worker::Error::RustError(format!("upstream body: {how}"))), self))
        }
    }
    impl Drop for State {
        fn drop(&mut self) {
            // Dropped before the end: the sandbox cancelled the stream.
            if !self.done {
                let mut slot = self.slot.borrow_mut();
                slot.stream = Some("cancelled");
                slot.ended = true;
            }
        }
    }
    let state = State { prefix, source, buf: Vec::new(), filter, limits, received, tick: None, quiet_ticks: 0, slot, done: false };
    stream::unfold(state, |mut st| async move {
        if st.done {
            return None;
        }
        if !st.prefix.is_empty() {
            let out = std::mem::take(&mut st.prefix);
            st.sent(&out);
            return Some((Ok(out), st));
        }
        // A timer wakes the task that first polled it: each pull is its own
        // task, so each pull arms its own timer.
        st.tick = None;
        loop {
            let read = {
                let State { source, buf, tick, quiet_ticks, limits, .. } = &mut st;
                let period = (limits.idle_ms / IDLE_TICKS as u64).max(1);
                let read = source.read(buf);
                futures_util::pin_mut!(read);
                loop {
                    let timer = tick.get_or_insert_with(|| Box::pin(Delay::from(Duration::from_millis(period))));
                    match select(read.as_mut(), timer.as_mut()).await {
                        Either::Left((result, _)) => break Some(result),
                        Either::Right(_) => {
                            *tick = None;
                            *quiet_ticks += 1;
                            if *quiet_ticks >= IDLE_TICKS {
                                break None;
                            }
                        }
                    }
                }
            };
            let n = match read {
                None => return st.fail("idle_timeout"),
                Some(Err(())) => return st.fail("upstream_error"),
                Some(Ok(n)) => n,
            };
            if n == 0 {
                st.end("complete");
                let tail = st.filter.finish();
                st.sent(&tail);
                return if tail.is_empty() { None } else { Some((Ok(tail), st)) };
            }
            st.quiet_ticks = 0;
            st.received = st.received.saturating_add(n as u64);
            if st.received > st.limits.max_bytes {
                return st.fail("too_large");
            }
            let out = match st.filter.push(&st.buf[..n]) {
                Ok(out) => out,
                Err(how) => return st.fail(how),
            };
            if !out.is_empty() {
                st.sent(&out);
                return Some((Ok(out), st));
            }
        }
    })
}
