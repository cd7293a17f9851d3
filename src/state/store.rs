//! The storage a state machine runs against: string keys, JSON values, an
//! expiry per entry.
//!
//! Invariant: an entry past its expiry is gone for every reader once
//! [`Store::purge`] ran, and every command purges before it decides, so no
//! decision ever rests on an expired record.

use std::cell::{Cell, RefCell};
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

/// Values read with [`Store::get`], kept between commands by a store's
/// only writer (a Durable Object instance owns its storage), so the
/// entries every request reads and writes — the session record, the trail
/// head — are read from storage once, not on each command.
#[derive(Debug, Default)]
pub struct ReadCache {
    entries: RefCell<Vec<(String, String)>>,
    /// The last purge's time: a purge that can delete something empties
    /// the cache (at most once a second).
    floor: Cell<u64>,
}

/// Most entries a [`ReadCache`] keeps; past it, it starts over.
pub const READ_CACHE_MAX: usize = 32;

impl ReadCache {
    /// Drops everything (the storage was emptied behind the store).
    pub fn clear(&self) {
        self.entries.borrow_mut().clear();
    }

    fn find(&self, key: &str) -> Option<String> {
        self.entries.borrow().iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }

    fn forget(&self, key: &str) {
        self.entries.borrow_mut().retain(|(k, _)| k != key);
    }
}

/// `inner` read through `cache`: reads answer from the cache when they
/// can, writes go to `inner` first and then update what the cache holds
/// (a failed write forgets the key). Only values present are kept (an
/// absence is not: most are asked once, a proof nonce for instance), and
/// only keys read once: entries written but never read, like the trail's
/// records, are not kept. Answers exactly what `inner` answers, as long as
/// every write to `inner` goes through here.
pub struct Cached<'a, S> {
    pub inner: S,
    pub cache: &'a ReadCache,
}

impl<S: Store> Store for Cached<'_, S> {
    fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
        if let Some(value) = self.cache.find(key) {
            return Ok(Some(value));
        }
        let value = self.inner.get(key)?;
        if let Some(v) = &value {
            let mut entries = self.cache.entries.borrow_mut();
            if entries.len() >= READ_CACHE_MAX {
                entries.clear();
            }
            entries.push((key.to_string(), v.clone()));
        }
        Ok(value)
    }

    fn put(&mut self, key: &str, value: &str, expires_s: u64) -> Result<(), StoreError> {
        let result = self.inner.put(key, value, expires_s);
        let mut entries = self.cache.entries.borrow_mut();
        match entries.iter_mut().find(|(k, _)| k == key) {
            // Kept only if a reader would still see it (not already past
            // the last purge), and only if the write took.
            Some(entry) if result.is_ok() && expires_s >= self.cache.floor.get() => entry.1 = value.to_string(),
            Some(_) => entries.retain(|(k, _)| k != key),
            None => {}
        }
        result
    }

    fn delete(&mut self, key: &str) -> Result<(), StoreError> {
        let result = self.inner.delete(key);
        self.cache.forget(key);
        result
    }

    fn scan(&self, prefix: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        self.inner.scan(prefix, limit)
    }

    fn scan_after(&self, prefix: &str, after: &str, limit: usize) -> Result<Vec<String>, StoreError> {
        self.inner.scan_after(prefix, after, limit)
    }

    fn purge(&mut self, now_s: u64) -> Result<(), StoreError> {
        if now_s > self.cache.floor.get() {
            self.cache.clear();
            self.cache.floor.set(now_s);
        }
        self.inner.purge(now_s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts the reads that reach the store.
    struct Counting {
        store: MemStore,
        gets: Cell<usize>,
    }

    impl Store for Counting {
        fn get(&self, key: &str) -> Result<Option<String>, StoreError> {
            self.gets.set(self.gets.get() + 1);
            self.store.get(key)
        }
        fn put(&mut self, key: &str, value: &str, expires_s: u64) -> Result<(), StoreError> {
            self.store.put(key, value, expires_s)
        }
        fn delete(&mut self, key: &str) -> Result<(), StoreError> {
            self.store.delete(key)
        }
        fn scan(&self, prefix: &str, limit: usize) -> Result<Vec<String>, StoreError> {
            self.store.scan(prefix, limit)
        }
        fn scan_after(&self, prefix: &str, after: &str, limit: usize) -> Result<Vec<String>, StoreError> {
            self.store.scan_after(prefix, after, limit)
        }
        fn purge(&mut self, now_s: u64) -> Result<(), StoreError> {
            self.store.purge(now_s)
        }
    }

    #[test]
    fn a_cached_store_answers_exactly_what_the_store_answers() {
        let cache = ReadCache::default();
        let mut cached = Cached { inner: MemStore::new(), cache: &cache };
        let mut plain = MemStore::new();
        let keys = ["record", "head", "t:1", "t:2", "n:1"];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let mut now = 100;
        for step in 0..20_000 {
            let key = keys[next(keys.len() as u64) as usize];
            match next(10) {
                0..=3 => assert_eq!(cached.get(key), plain.get(key), "step {step}: get {key}"),
                4..=6 => {
                    let (value, expires) = (format!("v{step}"), now + next(5));
                    cached.put(key, &value, expires).unwrap();
                    plain.put(key, &value, expires).unwrap();
                }
                7 => {
                    cached.delete(key).unwrap();
                    plain.delete(key).unwrap();
                }
                8 => {
                    now += next(3);
                    cached.purge(now).unwrap();
                    plain.purge(now).unwrap();
                }
                _ => assert_eq!(cached.scan("t:", 10), plain.scan("t:", 10)),
            }
            assert!(cache.entries.borrow().len() <= READ_CACHE_MAX);
        }
    }

    #[test]
    fn the_entries_read_on_every_command_are_read_from_storage_once() {
        let cache = ReadCache::default();
        let mut store = Cached { inner: Counting { store: MemStore::new(), gets: Cell::new(0) }, cache: &cache };
        store.put("record", "r0", 1_000).unwrap();
        // Many commands within one second: one read reaches the storage,
        // and a write keeps the cached value current.
        for n in 1..50 {
            store.purge(10).unwrap();
            assert_eq!(store.get("record").unwrap().as_deref(), Some(format!("r{}", n - 1).as_str()));
            store.put("record", &format!("r{n}"), 1_000).unwrap();
            // Written, never read: not kept.
            store.put(&format!("t:{n}"), "line", 1_000).unwrap();
        }
        assert_eq!(store.inner.gets.get(), 1);
        assert_eq!(cache.entries.borrow().len(), 1, "only the record is kept");
        // The next second's purge starts over.
        store.purge(11).unwrap();
        store.get("record").unwrap();
        assert_eq!(store.inner.gets.get(), 2);
        // A failed write forgets the key; an absence is not kept.
        store.inner.store.broken = true;
        assert_eq!(store.put("record", "lost", 1_000), Err(StoreError));
        assert_eq!(store.get("record"), Err(StoreError));
        store.inner.store.broken = false;
        assert_eq!(store.get("record").unwrap().as_deref(), Some("r49"));
        assert_eq!(store.get("missing").unwrap(), None);
        assert_eq!(store.get("missing").unwrap(), None);
        assert_eq!(store.inner.gets.get(), 6, "the failed read, the read after it, and each absence");
    }
}
