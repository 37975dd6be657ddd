//! What an instance keeps of events for a moment, behind one registry.
//!
//! Each domain keeps its own cache type (the rendered public programme, the settings public
//! registrations are checked against, the registration form with its compiled schema) and
//! asks the registry for it by type: `state.caches.get::<Catalog>()`. The registry makes
//! each on first use with the time-to-live of `REGISTRAR_PUBLIC_CACHE_MS`, and drops what all
//! of them keep of an event when it changes: through this instance at once, through another
//! as soon as this one hears of it (`changes::Signals`). So the edge names no domain's cache,
//! and a new cache is forgotten with the others without anyone having to remember it.

use std::any::{Any, TypeId};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use uuid::Uuid;

/// A cache of what concerns events, kept per instance for at most its time-to-live.
pub trait EventCache: Send + Sync + 'static {
    /// An empty cache whose copies are good for `ttl` (zero: keeps nothing).
    fn new(ttl: Duration) -> Self
    where
        Self: Sized;
    /// Drops every copy of what concerns the event.
    fn forget_event(&self, event_id: Uuid);
    /// Drops every copy.
    fn clear(&self);
}

struct Made {
    kind: TypeId,
    typed: Arc<dyn Any + Send + Sync>,
    cache: Arc<dyn EventCache>,
}

pub struct Caches {
    ttl: Duration,
    made: RwLock<Vec<Made>>,
}

impl Caches {
    pub fn new(ttl: Duration) -> Self {
        Caches {
            ttl,
            made: RwLock::new(Vec::new()),
        }
    }

    /// The instance's cache of type `C`, made on first use.
    pub fn get<C: EventCache>(&self) -> Arc<C> {
        if let Some(found) = self.find::<C>() {
            return found;
        }
        let mut made = self
            .made
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        // Another request may have made it meanwhile.
        if let Some(found) = made.iter().find(|m| m.kind == TypeId::of::<C>()) {
            return downcast(found);
        }
        let cache = Arc::new(C::new(self.ttl));
        made.push(Made {
            kind: TypeId::of::<C>(),
            typed: cache.clone(),
            cache: cache.clone(),
        });
        cache
    }

    fn find<C: EventCache>(&self) -> Option<Arc<C>> {
        let made = self
            .made
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        made.iter()
            .find(|m| m.kind == TypeId::of::<C>())
            .map(downcast)
    }

    fn each(&self, f: impl Fn(&dyn EventCache)) {
        let made = self
            .made
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        for m in made.iter() {
            f(m.cache.as_ref());
        }
    }

    /// Drops what every cache keeps of the event.
    pub fn forget_event(&self, event_id: Uuid) {
        self.each(|cache| cache.forget_event(event_id));
    }

    /// Drops everything every cache keeps.
    pub fn clear(&self) {
        self.each(|cache| cache.clear());
    }
}

fn downcast<C: EventCache>(made: &Made) -> Arc<C> {
    Arc::clone(&made.typed)
        .downcast::<C>()
        .unwrap_or_else(|_| unreachable!("a cache is filed under its own type"))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::sync::Mutex;

    use super::*;

    #[derive(Default)]
    struct Seen {
        events: Mutex<HashSet<Uuid>>,
    }

    impl EventCache for Seen {
        fn new(_: Duration) -> Self {
            Seen::default()
        }
        fn forget_event(&self, event_id: Uuid) {
            self.events.lock().unwrap().remove(&event_id);
        }
        fn clear(&self) {
            self.events.lock().unwrap().clear();
        }
    }

    #[derive(Default)]
    struct Other(Seen);

    impl EventCache for Other {
        fn new(_: Duration) -> Self {
            Other::default()
        }
        fn forget_event(&self, event_id: Uuid) {
            self.0.forget_event(event_id);
        }
        fn clear(&self) {
            self.0.clear();
        }
    }

    #[test]
    fn one_cache_per_type_and_all_of_them_forget() {
        let caches = Caches::new(Duration::from_secs(1));
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        caches.get::<Seen>().events.lock().unwrap().extend([a, b]);
        caches.get::<Other>().0.events.lock().unwrap().insert(a);
        assert!(Arc::ptr_eq(&caches.get::<Seen>(), &caches.get::<Seen>()));

        caches.forget_event(a);
        assert_eq!(
            *caches.get::<Seen>().events.lock().unwrap(),
            HashSet::from([b])
        );
        assert!(caches.get::<Other>().0.events.lock().unwrap().is_empty());

        caches.clear();
        assert!(caches.get::<Seen>().events.lock().unwrap().is_empty());
    }
}
