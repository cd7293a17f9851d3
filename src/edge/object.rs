//! The session-state Durable Object `AirlockState`: the whole of the
//! `airlock-state` worker script (built with the `state-object` feature, so
//! the request path's module carries none of it).
//!
//! The object is a thin shell: it decodes one [`Command`], runs it with
//! [`crate::state::run`] against its SQLite table in one synchronous step
//! (SQL calls do not yield, so commands never interleave) and returns the
//! [`Reply`]. Everything that decides lives in `crate::state`.
//!
//! The `approvals` object also keeps held requests' calls open until their
//! decision ([`Command::Wait`]: a waker per waiting call, woken by the
//! decision, with a timer for the timeout; no polling), and delivers the
//! webhook outbox from its alarm ([`crate::state::outbox`]), logging one
//! `airlock.webhook` line per attempt.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context as TaskContext, Poll, Waker};
use std::time::Duration;

use futures_util::future::{select, Either};
use wasm_bindgen::JsCast;
use worker::{console_log, durable_object, event, Context, Delay, DurableObject, Env, Fetch, Headers, Method, Request, RequestInit, Response, State};

use crate::minter;
use crate::policy::{WebhookDest, MAX_APPROVAL_WAIT_S};
use crate::secret::Secret;
use crate::state::approvals::{Decided, Status};
use crate::state::outbox::{self, Delivery, Entry};
use crate::state::store::{Cached, ReadCache, Store, StoreError};
use crate::state::tokens::{self, Answer, Grant};
use crate::state::{run, Command, Reply};
use crate::upstream::{plan, seal_key, MintError, Scope};
use crate::webhook::{signature, SIGNATURE_HEADER};

/// The waiter id of an upstream-token cache's asks (one cache per object).
const TOKEN_WAITER: &str = "token";
/// The longest a token ask is held open.
const MAX_TOKEN_WAIT_S: u64 = 70;

/// How long one webhook delivery may take before it counts as failed.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// The script has no routes of its own: it is reached only through the
/// Durable Object binding of the Airlock worker.
#[event(fetch)]
pub async fn fetch(_req: Request, _env: Env, _ctx: Context) -> worker::Result<Response> {
    Response::error("airlock-state has no routes; it is reached through the AIRLOCK_STATE binding", 404)
}

/// One session's state (`session:{id}`: its record, nonces, idempotency
/// records and audit trail), the approvals (`approvals`), or the sessions
/// index (`sessions-index`).
#[durable_object]
pub struct AirlockState {
    state: State,
    env: Env,
    /// Held requests waiting for a decision: approval id and waiter.
    waiters: RefCell<Vec<(String, Rc<Waiter>)>>,
    ready: Cell<bool>,
    /// The second of this instance's last purge (see [`SqlStore::purge`]).
    purged_s: Cell<u64>,
    /// What the store read, kept between commands: this instance is the
    /// storage's only writer.
    cache: ReadCache,
}

impl DurableObject for AirlockState {
    fn new(state: State, env: Env) -> Self {
        AirlockState { state, env, waiters: RefCell::new(Vec::new()), ready: Cell::new(false), purged_s: Cell::new(0), cache: ReadCache::default() }
    }

    /// The same as [`AirlockState::run`] over HTTP: the command is the body.
    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let text = req.text().await.unwrap_or_default();
        match self.answer(&text).await {
            Ok(body) => Response::ok(body),
            Err(what) => Response::error(what, if what == "bad command" { 400 } else { 500 }),
        }
    }

    async fn alarm(&self) -> worker::Result<Response> {
        let now_ms = js_sys::Date::now() as u64;
        let due = self.store().and_then(|s| outbox::due(&s, now_ms)).unwrap_or_default();
        for entry in due {
            let (ok, status) = self.deliver(&entry, now_ms).await;
            let now_ms = js_sys::Date::now() as u64;
            let outcome = self.store().and_then(|mut s| outbox::record(&mut s, &entry, ok, now_ms));
            let (result, next_at_ms) = match outcome {
                Ok(Delivery::Delivered) => ("delivered", None),
                Ok(Delivery::Retry { at_ms }) => ("retrying", Some(at_ms)),
                Ok(Delivery::GaveUp) => ("failed", None),
                Err(StoreError) => ("store_failed", None),
            };
            let line = serde_json::json!({
                "kind": "airlock.webhook", "ts": now_ms, "event_id": entry.id, "approval_id": entry.approval_id,
                "attempt": entry.failed + 1, "status": status, "result": result, "next_at_ms": next_at_ms,
            });
            console_log!("{line}");
        }
        if self.arm_outbox().await? {
            return Response::ok("");
        }
        let now_s = now_ms / 1000;
        if let Ok(mut store) = self.store() {
            let _ = store.purge(now_s);
            if store.inner.is_empty() {
                self.cache.clear();
                self.state.storage().delete_all().await?;
                // delete_all drops the table too: a later command on this
                // instance creates it again.
                self.ready.set(false);
            }
        }
        Response::ok("")
    }
}

/// The state call as JS RPC (`stub.run(command)`): the command's JSON in,
/// the reply's JSON out, without building a `Request` and a `Response` for
/// each call. The runtime offers RPC only on classes deriving from
/// `DurableObject`; `scripts/build` makes the exported class one, and its
/// `run` tries [`AirlockState::run_now`] before this method.
#[wasm_bindgen::prelude::wasm_bindgen(wasm_bindgen_futures = worker::wasm_bindgen_futures)]
impl AirlockState {
    pub async fn run(&self, command: String) -> Result<String, wasm_bindgen::JsValue> {
        self.answer(&command).await.map_err(wasm_bindgen::JsValue::from_str)
    }

    /// The reply to a command that is one synchronous step — an admission,
    /// a read, an idempotency record — at once, with no promise and no
    /// future to drive; `None` for a command that waits, sets an alarm or
    /// queues a webhook (and for one that does not parse), which `run` then
    /// answers.
    #[wasm_bindgen(js_name = runNow)]
    pub fn run_now(&self, command: &str) -> Option<String> {
        let command: Command = serde_json::from_str(command).ok()?;
        let immediate = matches!(
            command,
            Command::Get
                | Command::Revoke
                | Command::Admit { .. }
                | Command::IdemBegin { .. }
                | Command::IdemComplete { .. }
                | Command::IdemAbort { .. }
                | Command::Consume { .. }
                | Command::Approval { .. }
                | Command::Pending
                | Command::Append(_)
                | Command::Trail
        );
        if !immediate {
            return None;
        }
        serde_json::to_string(&self.run_one(command)).ok()
    }
}

/// An alarm time as a date: workers-rs reads a bare `i64` as an offset
/// from now, not as a time.
fn at_ms(ms: u64) -> worker::ScheduledTime {
    worker::ScheduledTime::new(js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms as f64)))
}

/// One held request's call, woken by the decision of its approval.
#[derive(Default)]
struct Waiter {
    woken: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

struct Woken(Rc<Waiter>);

impl Future for Woken {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut TaskContext<'_>) -> Poll<()> {
        if self.0.woken.get() {
            return Poll::Ready(());
        }
        *self.0.waker.borrow_mut() = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AirlockState {
    /// Runs one command given as JSON and answers the reply as JSON.
    async fn answer(&self, text: &str) -> Result<String, &'static str> {
        let command: Command = serde_json::from_str(text).map_err(|_| "bad command")?;
        if let Command::Token { tool, credential, level, repos, wait_s } = command {
            let answer = self.token(&tool, &credential, Scope { level, repos: &repos }, wait_s.min(MAX_TOKEN_WAIT_S)).await;
            return serde_json::to_string(&Reply::Token(answer)).map_err(|_| "encoding");
        }
        // An earlier release's worker creates the record itself.
        let created_expiry = match &command {
            Command::Create { record } => Some(record.expires_at),
            _ => None,
        };
        let wait = match &command {
            Command::Wait { id, wait_s } => Some((id.clone(), (*wait_s).min(MAX_APPROVAL_WAIT_S))),
            _ => None,
        };
        let queues = matches!(&command, Command::Decide { .. } | Command::Hold { notify: Some(_), .. });
        let mint = matches!(&command, Command::Mint(_));
        let mut reply = self.run_one(command);
        // A refused mint leaves no object behind (not even the empty table).
        if mint && !matches!(reply, Reply::Minted { .. }) && self.store().is_ok_and(|s| s.inner.is_empty()) {
            self.cache.clear();
            self.ready.set(false);
            // Best effort: the refusal is the answer either way.
            let _ = self.state.storage().delete_all().await;
        }
        if let (Some((id, wait_s)), Reply::Approval { approval: Some(a) }) = (wait, &reply) {
            if a.status == Status::Pending {
                self.wait_for(&id, wait_s).await;
                reply = self.run_one(Command::Approval { id });
            }
        }
        // A decision (through the API or the page) wakes the requests held
        // for it and queues its webhook events.
        let decided = match &reply {
            Reply::Decided { decided: Decided::Done(a) } => Some(a.approval_id.as_str()),
            Reply::Page(page) if page.decided => page.approval_id.as_deref(),
            _ => None,
        };
        if let Some(id) = decided {
            self.wake(id);
        }
        if (queues || decided.is_some()) && self.arm_outbox().await.is_err() {
            return Err("alarm");
        }
        // A session's object deletes itself once its record is past retention.
        let expiry = match (&reply, created_expiry) {
            (Reply::Minted { expires_at, .. }, _) => Some(*expires_at),
            (Reply::Created { created: true }, expiry) => expiry,
            _ => None,
        };
        if let Some(expires_at) = expiry {
            let at = expires_at.saturating_add(crate::state::session::RECORD_RETENTION_S);
            if self.state.storage().set_alarm(at_ms(at.saturating_mul(1000))).await.is_err() {
                return Err("alarm");
            }
        }
        serde_json::to_string(&reply).map_err(|_| "encoding")
    }

    /// One command against the store. The approval page and mints are
    /// served here, beside the pure commands: they run `crate::approval`
    /// and `crate::mint`, which the state machines do not import.
    fn run_one(&self, command: Command) -> Reply {
        let now_ms = js_sys::Date::now() as u64;
        match (self.store(), command) {
            (Ok(mut store), Command::Page(request)) => match store.purge(now_ms / 1000) {
                Ok(()) => Reply::Page(crate::approval::serve(&mut store, &request, now_ms)),
                Err(StoreError) => Reply::Failed,
            },
            (Ok(mut store), Command::Mint(call)) => crate::mint::serve(&mut store, &call, now_ms / 1000).unwrap_or(Reply::Failed),
            (Ok(mut store), command) => run(&mut store, command, now_ms),
            (Err(StoreError), _) => Reply::Failed,
        }
    }

    /// An upstream-token cache's ask: the cached token, or the one this
    /// call mints while holding the lease; other asks wait for it (woken
    /// by the holder, bounded by `wait_s`). See [`crate::state::tokens`].
    async fn token(&self, tool: &str, credential: &str, scope: Scope<'_>, wait_s: u64) -> Answer {
        let failed = |e: MintError| {
            let misconfigured = matches!(e, MintError::Misconfigured(_) | MintError::Scope(_));
            let detail = e.into_error(tool).detail();
            Answer::Failed { misconfigured, detail }
        };
        let Some((secret, upstream)) = crate::policy::minted_credential(credential) else {
            return failed(MintError::Misconfigured("the credential does not parse".into()));
        };
        let (cache, body) = match plan(tool, &upstream.kind, &scope) {
            Ok(p) => (p.cache, p.body),
            Err(e) => return failed(e),
        };
        // A secret of the airlock-state script, or a Secrets Store binding.
        let root = crate::secrets::secret_value(&self.env, &secret).await;
        let Some(root) = root.map(Secret::from_string) else {
            return failed(MintError::Misconfigured(format!("secret {secret} is not set in the airlock-state script")));
        };
        let Some(key) = seal_key(root.expose(), &cache) else { return failed(MintError::Misconfigured(format!("secret {secret} is empty"))) };
        let Some(lease) = minter::lease_id() else { return failed(MintError::Unreachable("no randomness".into())) };
        let lease_s = upstream.timeout_ms.div_ceil(1000) + 5;
        let asked_ms = js_sys::Date::now() as u64;
        let deadline_ms = asked_ms.saturating_add(wait_s.saturating_mul(1000));
        loop {
            let now_ms = js_sys::Date::now() as u64;
            let now_s = now_ms / 1000;
            let grant = match self.store().and_then(|mut s| {
                s.purge(now_s)?;
                tokens::begin(&mut s, &lease, lease_s, asked_ms, now_ms)
            }) {
                Ok(g) => g,
                Err(StoreError) => return failed(MintError::Unreachable("cache storage failed".into())),
            };
            match grant {
                Grant::Hit { sealed, expires_at } => match minter::open(&key, &cache, &sealed).await {
                    Some(token) => return Answer::Token { token: String::from_utf8_lossy(token.expose()).into_owned(), expires_at, minted: false },
                    // Sealed under a rotated root: gone, and minted again.
                    None => {
                        let _ = self.store().and_then(|mut s| tokens::forget(&mut s));
                    }
                },
                Grant::Busy if now_ms < deadline_ms => self.wait_for_ms(TOKEN_WAITER, deadline_ms - now_ms).await,
                Grant::Busy => return failed(MintError::Busy),
                Grant::Failed { misconfigured, detail } => return Answer::Failed { misconfigured, detail },
                Grant::Lease { refresh } => {
                    let refresh = match refresh {
                        Some(sealed) => minter::open(&key, &cache, &sealed).await,
                        None => None,
                    };
                    let minted = minter::mint(&self.env, &upstream.kind, &root, refresh, (body.as_deref(), scope.level), upstream.timeout_ms, now_s).await;
                    let answer = match minted {
                        Ok(token) => {
                            let sealed = minter::seal(&key, &cache, token.value.expose()).await;
                            let refresh = match &token.refresh {
                                Some(r) => minter::seal(&key, &cache, r.expose()).await.map(Some),
                                None => Some(None),
                            };
                            let now_s = (js_sys::Date::now() as u64) / 1000;
                            let stored = match (sealed, refresh) {
                                (Some(sealed), Some(refresh)) => {
                                    self.store().and_then(|mut s| tokens::put(&mut s, &lease, &sealed, token.expires_at, refresh.as_deref(), now_s))
                                }
                                _ => Ok(false),
                            };
                            if !matches!(stored, Ok(true)) {
                                let _ = self.store().and_then(|mut s| tokens::abort(&mut s, &lease));
                            }
                            Answer::Token { token: String::from_utf8_lossy(token.value.expose()).into_owned(), expires_at: token.expires_at, minted: true }
                        }
                        Err(e) => {
                            let answer = failed(e);
                            if let Answer::Failed { misconfigured, detail } = &answer {
                                let at_ms = js_sys::Date::now() as u64;
                                let _ = self.store().and_then(|mut s| tokens::fail(&mut s, &lease, *misconfigured, detail, at_ms));
                            }
                            answer
                        }
                    };
                    self.wake(TOKEN_WAITER);
                    return answer;
                }
            }
        }
    }

    /// Until approval `id` is decided or `wait_s` seconds passed. Costs a
    /// waker and a timer, no CPU while waiting.
    async fn wait_for(&self, id: &str, wait_s: u64) {
        self.wait_for_ms(id, wait_s.saturating_mul(1000)).await
    }

    async fn wait_for_ms(&self, id: &str, wait_ms: u64) {
        let waiter = Rc::new(Waiter::default());
        self.waiters.borrow_mut().push((id.to_string(), waiter.clone()));
        let woken = Woken(waiter.clone());
        let timer = Delay::from(Duration::from_millis(wait_ms));
        futures_util::pin_mut!(woken);
        futures_util::pin_mut!(timer);
        select(woken, timer).await;
        self.waiters.borrow_mut().retain(|(_, w)| !Rc::ptr_eq(w, &waiter));
    }

    fn wake(&self, id: &str) {
        for (_, w) in self.waiters.borrow().iter().filter(|(i, _)| i == id) {
            w.woken.set(true);
            if let Some(waker) = w.waker.borrow_mut().take() {
                waker.wake();
            }
        }
    }

    /// Sets the alarm for the next queued webhook event; `false` when none is queued.
    async fn arm_outbox(&self) -> worker::Result<bool> {
        let next = self.store().and_then(|s| outbox::next_at(&s)).map_err(|_| worker::Error::RustError("outbox".into()))?;
        match next {
            Some(at) => self.state.storage().set_alarm(at_ms(at)).await.map(|_| true),
            None => Ok(false),
        }
    }

    /// One delivery attempt: whether the receiver took it (2xx), and its status.
    async fn deliver(&self, entry: &Entry, now_ms: u64) -> (bool, Option<u16>) {
        // The secret is read at every attempt, so a rotated one signs retries.
        let Ok(secret) = self.env.var(&entry.secret).map(|v| v.to_string()) else { return (false, None) };
        let headers = Headers::new();
        let _ = headers.set("content-type", "application/json");
        let _ = headers.set(SIGNATURE_HEADER, &signature(secret.as_bytes(), now_ms / 1000, &entry.body));
        let _ = headers.set("user-agent", "airlock-webhook");
        let mut init = RequestInit::new();
        init.with_method(Method::Post).with_headers(headers).with_body(Some(entry.body.clone().into()));
        let send = async {
            match &entry.dest {
                WebhookDest::Url(url) => Fetch::Request(Request::new_with_init(url, &init)?).send().await,
                WebhookDest::Service(name) => self.env.service(name)?.fetch_request(Request::new_with_init("https://airlock-webhook.invalid/", &init)?).await,
            }
        };
        let timer = Delay::from(DELIVERY_TIMEOUT);
        futures_util::pin_mut!(send);
        futures_util::pin_mut!(timer);
        match select(send, timer).await {
            Either::Left((Ok(r), _)) => ((200..300).contains(&r.status_code()), Some(r.status_code())),
            _ => (false, None),
        }
    }

    fn store(&self) -> Result<Cached<'_, SqlStore<'_>>, StoreError> {
        let sql = self.state.storage().sql();
        if !self.ready.get() {
            sql.exec("CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires INTEGER NOT NULL)", None)
                .map_err(|_| StoreError)?;
            sql.exec("CREATE INDEX IF NOT EXISTS entries_expires ON entries (expires)", None).map_err(|_| StoreError)?;
            self.ready.set(true);
        }
        Ok(Cached { inner: SqlStore { sql, purged_s: &self.purged_s }, cache: &self.cache })
    }
}

/// The object's SQLite table as a [`Store`].
///
/// Every command purges first (`DELETE … WHERE expires < now`), but within
/// one second a second purge finds nothing the first did not: the purge runs
/// once per second per instance, and reads skip entries that expired before
/// the last purge's second, so what a command sees is exactly what it would
/// see after a purge of its own. This saves one SQL statement on most
/// commands of a busy session.
struct SqlStore<'a> {
    sql: worker::SqlStorage,
    purged_s: &'a Cell<u64>,
}

fn int(v: u64) -> worker::SqlStorageValue {
    worker::SqlStorageValue::Integer(v.min(i64::MAX as u64 >> 11) as i64)
}

thread_local! {
    // `scripts/state-entry.js`'s reader of one-column rows: the query, its
    // rows and their strings in one call instead of a row object per row
    // decoded through serde-wasm-bindgen.
    static SQL_VALUES: Option<js_sys::Function> =
        js_sys::Reflect::get(&js_sys::global(), &"airlockSqlValues".into()).ok().and_then(|f| f.dyn_into().ok());
}

impl SqlStore<'_> {
    fn values(&self, query: &str, args: Vec<worker::SqlStorageValue>) -> Result<Vec<String>, StoreError> {
        // Without the entry module's reader, storage is unusable: fail closed.
        let read = SQL_VALUES.with(Clone::clone).ok_or(StoreError)?;
        let bindings: js_sys::Array = args.into_iter().map(wasm_bindgen::JsValue::from).collect();
        let rows = read.call3(&wasm_bindgen::JsValue::NULL, self.sql.as_ref(), &query.into(), &bindings).map_err(|_| StoreError)?;
        let rows: js_sys::Array = rows.dyn_into().map_err(|_| StoreError)?;
        rows.iter().map(|v| v.as_string().ok_or(StoreError)).collect()
    }

    fn is_empty(&self) -> bool {
        self.values("SELECT key AS value FROM entries LIMIT 1", Vec::new()).map(|v| v.is_empty()).unwrap_or(false)
    }
}

/// Keys are ASCII; the range [prefix, prefix with its last byte + 1) holds
/// exactly the keys starting with it.
fn prefix_end(prefix: &str) -> Result<String, StoreError> {
    let mut end = prefix.as_bytes().to_vec();
    match end.last_mut() {
        Some(b) if *b < 0x7f => *b += 1,
        _ => return Err(StoreError),
    }
    String::from_utf8(end).map_err(|_| StoreError)
}

impl Store for SqlStore<'_> {
    fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        Ok(self.values("SELECT value FROM entries WHERE key = ? AND expires >= ?", vec![key.into(), int(self.purged_s.get())])?.pop())
    }

    fn put(&mut self, key: &str, value: &str, expires_s: u64) -> Result<(), StoreError> {
        self.sql
            .exec(
                "INSERT INTO entries (key, value, expires) VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value, expires = excluded.expires",
                vec![key.into(), value.into(), int(expires_s)],
            )
            .map(drop)
            .map_err(|_| StoreError)
    }

    fn delete(&mut self, key: &str) -> Result<(), StoreError> {
        self.sql.exec("DELETE FROM entries WHERE key = ?", vec![key.into()]).map(drop).map_err(|_| StoreError)
    }

    fn scan(&self, prefix: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        self.values(
            "SELECT value FROM entries WHERE key >= ? AND key < ? AND expires >= ? ORDER BY key LIMIT ?",
            vec![prefix.into(), prefix_end(prefix)?.into(), int(self.purged_s.get()), int(limit as u64)],
        )
    }

    fn scan_after(&self, prefix: &str, after: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        self.values(
            "SELECT value FROM entries WHERE key >= ? AND key > ? AND key < ? AND expires >= ? ORDER BY key LIMIT ?",
            vec![prefix.into(), after.into(), prefix_end(prefix)?.into(), int(self.purged_s.get()), int(limit as u64)],
        )
    }

    fn purge(&mut self, now_s: u64) -> Result<(), StoreError> {
        if now_s <= self.purged_s.get() {
            return Ok(());
        }
        self.sql.exec("DELETE FROM entries WHERE expires < ?", vec![int(now_s)]).map_err(|_| StoreError)?;
        self.purged_s.set(now_s);
        Ok(())
    }
}
