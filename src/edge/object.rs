//! The session-state Durable Object `AirlockState`: the whole of the
//! `airlock-state` worker script (built with the `state-object` feature, so
//! the request path's module carries none of it).
//!
//! The object is a thin shell: it decodes one [`Command`], runs it with
//! [`crate::state::run`] against its SQLite table in one synchronous step
//! (SQL calls do not yield, so commands never interleave) and returns the
//! [`Reply`]. Everything that decides lives in `crate::state`.

use std::cell::Cell;

use worker::{durable_object, event, Context, DurableObject, Env, Request, Response, State};

use crate::state::store::{Store, StoreError};
use crate::state::{run, Command, Reply};

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
    ready: Cell<bool>,
    /// The second of this instance's last purge (see [`SqlStore::purge`]).
    purged_s: Cell<u64>,
}

impl DurableObject for AirlockState {
    fn new(state: State, _env: Env) -> Self {
        AirlockState { state, ready: Cell::new(false), purged_s: Cell::new(0) }
    }

    async fn fetch(&self, mut req: Request) -> worker::Result<Response> {
        let command: Command = match req.text().await.ok().and_then(|t| serde_json::from_str(&t).ok()) {
            Some(c) => c,
            None => return Response::error("bad command", 400),
        };
        let arm_at = match &command {
            Command::Create { record } => Some(record.expires_at.saturating_add(crate::state::session::RECORD_RETENTION_S)),
            _ => None,
        };
        let now_ms = worker::Date::now().as_millis();
        let reply = match self.store() {
            Ok(mut store) => run(&mut store, command, now_ms),
            Err(StoreError) => Reply::Failed,
        };
        // A session's object deletes itself once its record is past retention.
        if let (Some(at), Reply::Created { created: true }) = (arm_at, &reply) {
            if self.state.storage().set_alarm(at.saturating_mul(1000) as i64).await.is_err() {
                return Response::error("alarm", 500);
            }
        }
        let body = serde_json::to_string(&reply).map_err(|e| worker::Error::RustError(e.to_string()))?;
        Response::ok(body)
    }

    async fn alarm(&self) -> worker::Result<Response> {
        let now_s = worker::Date::now().as_millis() / 1000;
        if let Ok(mut store) = self.store() {
            let _ = store.purge(now_s);
            if store.is_empty() {
                self.state.storage().delete_all().await?;
                // delete_all drops the table too: a later command on this
                // instance creates it again.
                self.ready.set(false);
            }
        }
        Response::ok("")
    }
}

impl AirlockState {
    fn store(&self) -> Result<SqlStore<'_>, StoreError> {
        let sql = self.state.storage().sql();
        if !self.ready.get() {
            sql.exec("CREATE TABLE IF NOT EXISTS entries (key TEXT PRIMARY KEY, value TEXT NOT NULL, expires INTEGER NOT NULL)", None)
                .map_err(|_| StoreError)?;
            sql.exec("CREATE INDEX IF NOT EXISTS entries_expires ON entries (expires)", None).map_err(|_| StoreError)?;
            self.ready.set(true);
        }
        Ok(SqlStore { sql, purged_s: &self.purged_s })
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

#[derive(serde::Deserialize)]
struct Row {
    value: String,
}

fn int(v: u64) -> worker::SqlStorageValue {
    worker::SqlStorageValue::Integer(v.min(i64::MAX as u64 >> 11) as i64)
}

impl SqlStore<'_> {
    fn values(&self, query: &str, args: Vec<worker::SqlStorageValue>) -> Result<Vec<String>, StoreError> {
        let rows: Vec<Row> = self.sql.exec(query, args).and_then(|c| c.to_array()).map_err(|_| StoreError)?;
        Ok(rows.into_iter().map(|r| r.value).collect())
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
