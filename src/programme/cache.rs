//! A per-instance cache of rendered public programmes.
//!
//! The public programme is the most read resource and the same for every caller. Each
//! instance keeps a rendered copy for a short time (`REGISTRAR_PROGRAMME_CACHE_MS`); a change
//! made through an instance drops its copies at once, and other instances catch up within
//! that time. Only programmes of published events are cached.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use uuid::Uuid;

const MAX_ENTRIES: usize = 1024;

pub struct Cached {
    pub event_id: Uuid,
    pub etag: String,
    pub body: Bytes,
    built: Instant,
}

impl Cached {
    pub fn new(event_id: Uuid, etag: String, body: Bytes) -> Self {
        Cached {
            event_id,
            etag,
            body,
            built: Instant::now(),
        }
    }
}

pub struct ProgrammeCache {
    ttl: Duration,
    entries: Mutex<HashMap<String, Arc<Cached>>>,
}

impl ProgrammeCache {
    pub fn new(ttl: Duration) -> Self {
        ProgrammeCache {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn entries(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Cached>>> {
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A copy built less than the time-to-live ago.
    pub fn get(&self, key: &str) -> Option<Arc<Cached>> {
        let entry = self.entries().get(key).cloned()?;
        (entry.built.elapsed() < self.ttl).then_some(entry)
    }

    pub fn put(&self, key: String, entry: Arc<Cached>) {
        if self.ttl.is_zero() {
            return;
        }
        let mut entries = self.entries();
        if entries.len() >= MAX_ENTRIES {
            entries.retain(|_, e| e.built.elapsed() < self.ttl);
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
        }
        entries.insert(key, entry);
    }

    /// Drops every copy of an event's programme (after any change to it).
    pub fn invalidate(&self, event_id: Uuid) {
        self.entries().retain(|_, e| e.event_id != event_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invalidation_drops_only_that_event() {
        let cache = ProgrammeCache::new(Duration::from_secs(60));
        let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
        cache.put(
            "a".into(),
            Arc::new(Cached::new(a, "\"1\"".into(), Bytes::new())),
        );
        cache.put(
            "b".into(),
            Arc::new(Cached::new(b, "\"2\"".into(), Bytes::new())),
        );
        cache.invalidate(a);
        assert!(cache.get("a").is_none());
        assert!(cache.get("b").is_some());
    }

    #[test]
    fn entries_expire() {
        let cache = ProgrammeCache::new(Duration::ZERO);
        cache.put(
            "a".into(),
            Arc::new(Cached::new(Uuid::now_v7(), "\"1\"".into(), Bytes::new())),
        );
        assert!(cache.get("a").is_none());
    }
}
