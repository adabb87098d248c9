//! The event-type catalog as this instance last read it, so that events cost no
//! extra call: it is read again once [`CATALOG_TTL`] has passed, when an event
//! names a type it does not know (one registered since), and after this instance
//! changed the registry. A type changed or archived through another instance
//! takes effect here within the TTL.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shared::catalog::Catalog;
use shared::store::{Store, StoreError};

/// How long a read of the registry is reused.
pub const CATALOG_TTL: Duration = Duration::from_secs(10);

pub struct CatalogCache {
    ttl: Duration,
    current: Mutex<Option<(Instant, Arc<Catalog>)>>,
}

impl Default for CatalogCache {
    fn default() -> Self {
        Self::new(CATALOG_TTL)
    }
}

impl CatalogCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            current: Mutex::default(),
        }
    }

    /// The catalog while fresh, else read again; read again also when one of
    /// `names` is not in it (a type may have been registered since).
    pub async fn get<'a>(
        &self,
        store: &Store,
        mut names: impl Iterator<Item = &'a str>,
    ) -> Result<Arc<Catalog>, StoreError> {
        let fresh = self
            .current
            .lock()
            .expect("not poisoned")
            .as_ref()
            .filter(|(read_at, _)| read_at.elapsed() < self.ttl)
            .map(|(_, catalog)| catalog.clone());
        match fresh {
            Some(catalog) if names.all(|name| catalog.any(name).is_some()) => Ok(catalog),
            _ => self.read(store).await,
        }
    }

    /// The catalog as stored now, kept for the next callers.
    pub async fn read(&self, store: &Store) -> Result<Arc<Catalog>, StoreError> {
        let catalog = Arc::new(store.event_type_catalog().await?);
        *self.current.lock().expect("not poisoned") = Some((Instant::now(), catalog.clone()));
        Ok(catalog)
    }

    /// Forgets the catalog after this instance changed the registry.
    pub fn forget(&self) {
        *self.current.lock().expect("not poisoned") = None;
    }
}
