//! The audit phase at the edge: exactly one record per request, written
//! when the last holder lets go of it (the end of `fetch`, or the end of a
//! streamed body however it ends). A session's own requests (tool, egress,
//! MCP) are also appended to its audit trail in its state object, after the
//! answer, never before it, off the critical path; a failure is logged
//! and changes no answer. A record waits up to [`TRAIL_LINGER`] in the
//! isolate for the session's next admission to carry it (no call of its
//! own); otherwise it is sent from the request's `waitUntil`, batched with
//! the session's other waiting records, over the object's `fetch`
//! ([`call_after_answer`]), not JS RPC.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use worker::{console_log, Delay, Env};

use super::state::{call, call_after_answer, Command, Reply};
use crate::admit::{session_object, session_of};
use crate::audit::AuditRecord;
use crate::state::Carried;

/// A finished record waiting to be appended to its session's trail:
/// (session id, the logged line).
pub type Outbox = Rc<RefCell<Option<(String, String)>>>;

/// The request's audit record, written exactly once: when the last holder
/// lets go of it. That is the end of `fetch` for a plain answer, and the
/// end of the body stream (complete, failed, cut off or cancelled) for a
/// streamed one.
pub struct AuditSlot {
    pub record: Option<AuditRecord>,
    pub started: u64,
    pub bytes_out: u64,
    pub stream: Option<&'static str>,
    /// The body stream reached its end (complete, failed or cut off).
    pub ended: bool,
    /// Where the session-state objects are, for the trail.
    pub env: Option<Env>,
    pub outbox: Outbox,
}

impl AuditSlot {
    pub fn new(started: u64) -> AuditSlot {
        AuditSlot { record: None, started, bytes_out: 0, stream: None, ended: false, env: None, outbox: Outbox::default() }
    }

    pub fn write(&mut self) {
        if let Some(mut record) = self.record.take() {
            if self.stream.is_some() {
                record.bytes_out = Some(self.bytes_out);
                record.stream = self.stream;
            }
            record.finish(super::http::now_ms(), self.started);
            let line = record.to_json();
            console_log!("{line}");
            // Only requests made with a verified session token: control-plane
            // routes name a session without being its requests.
            if let (Some(id), "tool" | "egress" | "mcp") = (&record.session_id, record.route) {
                *self.outbox.borrow_mut() = Some((id.clone(), line));
            }
        }
    }
}

impl Drop for AuditSlot {
    fn drop(&mut self) {
        self.write();
    }
}

/// What the request's `waitUntil` runs after the answer: one type for every
/// call site, so the runtime glue is compiled once.
pub type AfterAnswer = std::pin::Pin<Box<dyn std::future::Future<Output = ()>>>;

thread_local! {
    // Lines waiting for a session's trail, per session, while one request
    // sends them (see `append_trail`).
    static TRAILS: RefCell<Vec<(String, Vec<String>)>> = const { RefCell::new(Vec::new()) };
}

/// Most calls one request makes for the lines others queued behind it.
const TRAIL_ROUNDS: usize = 8;

/// How long a session's records wait for its next admission to carry
/// them before they are sent on their own: a busy session's records ride
/// on its admissions, an idle session's reach its trail this much later.
const TRAIL_LINGER: Duration = Duration::from_millis(100);

/// The lines waiting in this isolate for the trail of the session whose
/// object is `object`, joined for [`Command::Admit`]; empty when none
/// wait. Their queue and its sender stay: later lines go on as before.
pub fn carry_lines(object: &str) -> String {
    let Some(id) = session_of(object) else { return String::new() };
    TRAILS.with(|t| {
        let mut t = t.borrow_mut();
        match t.iter_mut().find(|(s, _)| s == id) {
            Some((_, lines)) => std::mem::take(lines).join("\n"),
            None => String::new(),
        }
    })
}

/// What became of the lines an admission carried: stored, sent on their
/// own (a state script of an earlier release does not read them), or
/// logged as lost, like a failed append.
pub async fn carried(env: &Env, object: &str, lines: String, reply: &Result<Reply, crate::error::Error>) {
    let count = lines.split('\n').count();
    let stored = match Carried::of(reply.as_ref().ok()) {
        Carried::Stored => true,
        Carried::Ignored => matches!(call(env, object, &Command::Append(lines)).await, Ok(Reply::Done)),
        Carried::Lost => false,
    };
    if !stored {
        append_failed(session_of(object).unwrap_or(object), count);
    }
}

/// Logs lines of a session's trail that were not stored.
fn append_failed(id: &str, lines: usize) {
    console_log!(r#"{{"kind":"airlock.audit_trail","session_id":"{id}","error":"append_failed","lines":{lines}}}"#);
}

/// Removes a session's trail queue if its sender is dropped half way (its
/// request's work cancelled), so later lines get a sender of their own.
struct ReleaseQueue<'a> {
    id: &'a str,
    armed: bool,
}

impl Drop for ReleaseQueue<'_> {
    fn drop(&mut self) {
        if self.armed {
            TRAILS.with(|t| t.borrow_mut().retain(|(s, _)| s != self.id));
            console_log!(r#"{{"kind":"airlock.audit_trail","session_id":"{}","error":"append_cancelled"}}"#, self.id);
        }
    }
}

/// Appends the record waiting in `outbox` (if any) to its session's trail.
/// The first request of a session with a line to send becomes its sender:
/// it waits [`TRAIL_LINGER`], then sends what the session's admissions
/// have not carried in the meantime, with the lines of requests that
/// finished while it waited or sent (up to [`TRAIL_ROUNDS`] rounds, the
/// last one taking all that is left), so a busy session's object gets few
/// appends for many requests. No line waits without a request sending it.
pub fn append_trail(env: Env, outbox: Outbox) -> AfterAnswer {
    Box::pin(async move {
        let Some((id, line)) = outbox.borrow_mut().take() else { return };
        let sending = TRAILS.with(|t| {
            let mut t = t.borrow_mut();
            match t.iter_mut().find(|(s, _)| *s == id) {
                Some((_, lines)) => {
                    lines.push(line);
                    false
                }
                None => {
                    t.push((id.clone(), vec![line]));
                    true
                }
            }
        });
        if !sending {
            return;
        }
        let mut release = ReleaseQueue { id: &id, armed: true };
        for round in 1..=TRAIL_ROUNDS {
            Delay::from(TRAIL_LINGER).await;
            // The last round, or nothing left: this request stops sending,
            // and the next line opens a new queue.
            let lines = TRAILS.with(|t| {
                let mut t = t.borrow_mut();
                let at = t.iter().position(|(s, _)| *s == id)?;
                let lines = std::mem::take(&mut t[at].1);
                let last = lines.is_empty() || round == TRAIL_ROUNDS;
                if last {
                    t.swap_remove(at);
                }
                Some((lines, last))
            });
            // Once this queue is gone, a newer one is another request's.
            let Some((lines, last)) = lines else {
                release.armed = false;
                break;
            };
            release.armed = !last;
            if lines.is_empty() {
                break;
            }
            if !matches!(call_after_answer(&env, &session_object(&id), &Command::Append(lines.join("\n"))).await, Ok(Reply::Done)) {
                append_failed(&id, lines.len());
            }
        }
    })
}

/// Keeps the request alive (`waitUntil`) until its audit record is written.
/// A body stream the client abandoned may never be dropped by the runtime;
/// when the stream makes no progress for longer than the idle timeout (which
/// would have ended a stalled origin), the record is written as `cancelled`.
/// Holds the slot weakly, so it never delays the normal write.
/// Then appends the record to the session's trail.
pub fn audit_watchdog(slot: std::rc::Weak<RefCell<AuditSlot>>, idle_ms: u64) -> AfterAnswer {
    // The trail append waits for the record, which this keeps alive.
    let trail = slot.upgrade().and_then(|s| {
        let s = s.borrow();
        s.env.clone().map(|env| append_trail(env, s.outbox.clone()))
    });
    Box::pin(async move {
        watch(slot, idle_ms).await;
        if let Some(append) = trail {
            append.await;
        }
    })
}

async fn watch(slot: std::rc::Weak<RefCell<AuditSlot>>, idle_ms: u64) {
    let tick = (idle_ms / 2).clamp(250, 5_000);
    let mut last = u64::MAX;
    let mut still = 0;
    loop {
        Delay::from(Duration::from_millis(tick)).await;
        let Some(slot) = slot.upgrade() else { return };
        let mut slot = slot.borrow_mut();
        if slot.record.is_none() && slot.ended {
            return;
        }
        if slot.ended {
            slot.write();
            return;
        }
        if slot.bytes_out == last {
            still += tick;
            if still > idle_ms + tick {
                slot.stream = Some("cancelled");
                slot.ended = true;
                slot.write();
                return;
            }
        } else {
            last = slot.bytes_out;
            still = 0;
        }
    }
}

pub type SharedAudit = Rc<RefCell<AuditSlot>>;
