//! Endpoints as the dispatcher last read them. Entries live a few seconds only, so
//! a rotated secret, a disabled or a deleted endpoint takes effect promptly.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shared::ids::EndpointId;
use shared::model::{Endpoint, EndpointSecrets};
use shared::store::{Store, StoreError};

/// How long an endpoint read is reused.
pub const ENDPOINT_TTL: Duration = Duration::from_secs(3);

/// An endpoint with its secrets; `None` when it does not exist.
pub type Found = Option<Arc<(Endpoint, EndpointSecrets)>>;

type Key = (String, EndpointId);

pub struct EndpointCache {
    ttl: Duration,
    entries: Mutex<HashMap<Key, (Instant, Found)>>,
}

impl EndpointCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::default(),
        }
    }

    /// The endpoint from the cache while fresh, else from the store.
    pub async fn get(
        &self,
        store: &Store,
        account: &str,
        id: &EndpointId,
    ) -> Result<Found, StoreError> {
        let key = (account.to_string(), id.clone());
        if let Some((read_at, found)) = self.entries.lock().expect("not poisoned").get(&key)
            && read_at.elapsed() < self.ttl
        {
            return Ok(found.clone());
        }
        let found = store.get_endpoint(account, id).await?.map(Arc::new);
        let mut entries = self.entries.lock().expect("not poisoned");
        // Stale entries of other endpoints go too, so the map stays as small as the working set.
        entries.retain(|_, (read_at, _)| read_at.elapsed() < self.ttl);
        entries.insert(key, (Instant::now(), found.clone()));
        Ok(found)
    }

    /// Forgets an endpoint this instance just changed.
    pub fn forget(&self, account: &str, id: &EndpointId) {
        self.entries
            .lock()
            .expect("not poisoned")
            .remove(&(account.to_string(), id.clone()));
    }
}
