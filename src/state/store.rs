//! The storage a state machine runs against: string keys, JSON values, an
//! expiry per entry.
//!
//! Invariant: an entry past its expiry is gone for every reader once
//! [`Store::purge`] ran, and every command purges before it decides, so no
//! decision ever rests on an expired record.

use std::collections::BTreeMap;

/// The storage failed; the request must be refused (fail closed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError;

pub trait Store {
    fn get(&self, key: &str) -> Result<Option<String>, StoreError>;
    /// Inserts or replaces `key`, kept until `expires_s` (unix seconds).
    fn put(&mut self, key: &str, value: &str, expires_s: u64) -> Result<(), StoreError>;
    fn delete(&mut self, key: &str) -> Result<(), StoreError>;
    /// Values of the keys starting with `prefix`, in key order, at most `limit`.
    fn scan(&self, prefix: &str, limit: usize) -> Result<Vec<String>, StoreError>;
    /// Values of the keys starting with `prefix` and greater than `after`,
    /// in key order, at most `limit` (a page after a cursor).
    fn scan_after(&self, prefix: &str, after: &str, limit: usize) -> Result<Vec<String>, StoreError>;
    /// Removes every entry whose expiry is before `now_s`.
    fn purge(&mut self, now_s: u64) -> Result<(), StoreError>;
}

/// Reads and decodes a JSON value; an undecodable value is a storage fault.
pub(crate) fn get_json<T: serde::de::DeserializeOwned>(store: &impl Store, key: &str) -> Result<Option<T>, StoreError> {
    match store.get(key)? {
        Some(raw) => serde_json::from_str(&raw).map(Some).map_err(|_| StoreError),
        None => Ok(None),
    }
}

pub(crate) fn put_json<T: serde::Serialize>(store: &mut impl Store, key: &str, value: &T, expires_s: u64) -> Result<(), StoreError> {
    let raw = serde_json::to_string(value).map_err(|_| StoreError)?;
    store.put(key, &raw, expires_s)
}

/// An in-memory store, for tests and tools: the same contract as the
/// Durable Object's SQLite table.
#[derive(Debug, Default, Clone)]
pub struct MemStore {
    entries: BTreeMap<String, (String, u64)>,
    /// When set, every call fails (to test fail-closed paths).
    pub broken: bool,
}

impl MemStore {
    pub fn new() -> MemStore {
        MemStore::default()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every stored value, for tests that assert what is (not) persisted.
    pub fn dump(&self) -> String {
        self.entries.iter().map(|(k, (v, _))| format!("{k}={v}\n")).collect()
    }

    fn check(&self) -> Result<(), StoreError> {
        if self.broken {
            Err(StoreError)
        } else {
            Ok(())
        }
    }
}

impl Store for MemStore {
    fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.check()?;
        Ok(self.entries.get(key).map(|(v, _)| v.clone()))
    }

    fn put(&mut self, key: &str, value: &str, expires_s: u64) -> Result<(), StoreError> {
        self.check()?;
        self.entries.insert(key.to_string(), (value.to_string(), expires_s));
        Ok(())
    }

    fn delete(&mut self, key: &str) -> Result<(), StoreError> {
        self.check()?;
        self.entries.remove(key);
        Ok(())
    }

    fn scan(&self, prefix: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        self.check()?;
        Ok(self.entries.range(prefix.to_string()..).take_while(|(k, _)| k.starts_with(prefix)).take(limit).map(|(_, (v, _))| v.clone()).collect())
    }

    fn scan_after(&self, prefix: &str, after: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        self.check()?;
        use std::ops::Bound::{Excluded, Unbounded};
        Ok(self
            .entries
            .range::<str, _>((Excluded(after), Unbounded))
            .skip_while(|(k, _)| !k.starts_with(prefix) && k.as_str() < prefix)
            .take_while(|(k, _)| k.starts_with(prefix))
            .take(limit)
            .map(|(_, (v, _))| v.clone())
            .collect())
    }

    fn purge(&mut self, now_s: u64) -> Result<(), StoreError> {
        self.check()?;
        self.entries.retain(|_, (_, exp)| *exp >= now_s);
        Ok(())
    }
}
