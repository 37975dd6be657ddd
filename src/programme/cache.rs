//! A per-instance cache of rendered public programmes.
//!
//! The public programme is the most read resource and the same for every caller. Each
//! instance keeps a rendered copy for a short time (`REGISTRAR_PUBLIC_CACHE_MS`); a change
//! made through an instance drops its copies at once, and the other instances' as soon as
//! they hear of it (`changes::Signals`), or when the time is up should they not. Only
//! programmes of published events are cached.
//!
//! When a copy gets too old, one request rebuilds it while the others keep answering with
//! the old copy (for at most `STALE_FOR` times the time-to-live), so a popular programme is
//! rebuilt once per period, not once per request in flight.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::web::Bytes;
use uuid::Uuid;

const MAX_ENTRIES: usize = 1024;
const STALE_FOR: u32 = 10;

pub struct Cached {
    pub event_id: Uuid,
    pub etag: String,
    pub body: Bytes,
    built: Instant,
    /// A request is rebuilding this copy.
    refreshing: AtomicBool,
}

impl Cached {
    pub fn new(event_id: Uuid, etag: String, body: Bytes) -> Self {
        Cached {
            event_id,
            etag,
            body,
            built: Instant::now(),
            refreshing: AtomicBool::new(false),
        }
    }

    /// The rebuild failed: let another request try.
    pub fn refresh_failed(&self) {
        self.refreshing.store(false, Ordering::Release);
    }
}

/// What the cache has for a key.
pub enum Lookup {
    /// A copy to answer with.
    Hit(Arc<Cached>),
    /// Nothing usable: build it (and, when there is an old copy, call `refresh_failed` on it
    /// should that fail).
    Build(Option<Arc<Cached>>),
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

    /// A fresh copy; an old one while another request rebuilds it; otherwise the request
    /// that asks is the one to rebuild it.
    pub fn lookup(&self, key: &str) -> Lookup {
        let Some(entry) = self.entries().get(key).cloned() else {
            return Lookup::Build(None);
        };
        let age = entry.built.elapsed();
        if age < self.ttl {
            return Lookup::Hit(entry);
        }
        let claimed = entry
            .refreshing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok();
        if !claimed && age < self.ttl * STALE_FOR {
            Lookup::Hit(entry)
        } else {
            Lookup::Build(Some(entry))
        }
    }

    /// A copy built less than the time-to-live ago.
    #[cfg(test)]
    fn get(&self, key: &str) -> Option<Arc<Cached>> {
        match self.lookup(key) {
            Lookup::Hit(entry) => Some(entry),
            Lookup::Build(_) => None,
        }
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

    /// Drops every copy.
    pub fn clear(&self) {
        self.entries().clear();
    }

    /// Drops every copy of an event's programme (after any change to it).
    pub fn invalidate(&self, event_id: Uuid) {
        self.entries().retain(|_, e| e.event_id != event_id);
    }
}

impl crate::caches::EventCache for ProgrammeCache {
    fn new(ttl: Duration) -> Self {
        ProgrammeCache::new(ttl)
    }

    fn forget_event(&self, event_id: Uuid) {
        self.invalidate(event_id);
    }

    fn clear(&self) {
        ProgrammeCache::clear(self);
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
    fn one_request_rebuilds_an_old_copy_while_the_others_use_it() {
        // Long enough that a busy machine cannot make the old copy too old to serve between
        // two lookups.
        let cache = ProgrammeCache::new(Duration::from_millis(200));
        cache.put(
            "a".into(),
            Arc::new(Cached::new(Uuid::now_v7(), "\"1\"".into(), Bytes::new())),
        );
        std::thread::sleep(Duration::from_millis(210));
        let first = cache.lookup("a");
        assert!(matches!(first, Lookup::Build(Some(_))));
        assert!(
            matches!(cache.lookup("a"), Lookup::Hit(_)),
            "the old copy serves meanwhile"
        );
        if let Lookup::Build(Some(old)) = first {
            old.refresh_failed();
        }
        assert!(
            matches!(cache.lookup("a"), Lookup::Build(Some(_))),
            "another may try again"
        );
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
