//! Endpoints as the dispatcher last read them. Entries live a few seconds only, so
//! a rotated secret, a disabled or a deleted endpoint takes effect promptly. Records
//! of one batch that miss the same endpoint together share one read.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use shared::account::Account;
use shared::ids::EndpointId;
use shared::model::{Endpoint, EndpointSecrets};
use tokio::sync::OnceCell;

/// How long an endpoint read is reused.
pub const ENDPOINT_TTL: Duration = Duration::from_secs(3);

/// An endpoint with its secrets; `None` when it does not exist.
pub type Found = Option<Arc<(Endpoint, EndpointSecrets)>>;

type Key = (Account, EndpointId);

/// One read of one endpoint: filled once, awaited by every record that wants it
/// meanwhile. A failed read leaves it empty for the next caller to try.
type Slot = Arc<OnceCell<Found>>;

pub struct EndpointCache {
    ttl: Duration,
    entries: Mutex<HashMap<Key, (Instant, Slot)>>,
}

impl EndpointCache {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::default(),
        }
    }

    /// The endpoint from the cache while fresh, else from `read`, which runs once
    /// however many callers miss the same endpoint at the same time.
    pub async fn get<E, F, Fut>(
        &self,
        account: &Account,
        id: &EndpointId,
        read: F,
    ) -> Result<Found, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<(Endpoint, EndpointSecrets)>, E>>,
    {
        let slot = self.slot((account.clone(), id.clone()));
        slot.get_or_try_init(|| async { Ok(read().await?.map(Arc::new)) })
            .await
            .cloned()
    }

    fn slot(&self, key: Key) -> Slot {
        let mut entries = self.entries.lock().expect("not poisoned");
        if let Some((made_at, slot)) = entries.get(&key)
            && made_at.elapsed() < self.ttl
        {
            return slot.clone();
        }
        // Stale entries of other endpoints go too, so the map stays as small as the working set.
        entries.retain(|_, (made_at, _)| made_at.elapsed() < self.ttl);
        let slot = Slot::default();
        entries.insert(key, (Instant::now(), slot.clone()));
        slot
    }

    /// Forgets an endpoint this instance just changed.
    pub fn forget(&self, account: &Account, id: &EndpointId) {
        self.entries
            .lock()
            .expect("not poisoned")
            .remove(&(account.clone(), id.clone()));
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// A read that counts itself and yields before answering, so callers overlap.
    async fn counted_read(
        reads: &AtomicUsize,
    ) -> Result<Option<(Endpoint, EndpointSecrets)>, String> {
        reads.fetch_add(1, Ordering::SeqCst);
        tokio::task::yield_now().await;
        Ok(None)
    }

    #[tokio::test]
    async fn concurrent_misses_of_one_endpoint_share_one_read() {
        let jane: Account = "jane".parse().unwrap();
        let cache = EndpointCache::new(ENDPOINT_TTL);
        let reads = AtomicUsize::new(0);
        let id = EndpointId::new();
        let other = EndpointId::new();
        let lookups = (0..10).map(|i| {
            let id = if i % 5 == 4 { &other } else { &id };
            cache.get(&jane, id, || counted_read(&reads))
        });
        let found = futures::future::join_all(lookups).await;
        assert!(found.iter().all(|f| matches!(f, Ok(None))));
        assert_eq!(reads.load(Ordering::SeqCst), 2, "one read per endpoint");

        // Fresh entries answer without a read; a forgotten one is read again.
        cache
            .get(&jane, &id, || counted_read(&reads))
            .await
            .unwrap();
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        cache.forget(&jane, &id);
        cache
            .get(&jane, &id, || counted_read(&reads))
            .await
            .unwrap();
        assert_eq!(reads.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_failed_read_is_not_kept() {
        let jane: Account = "jane".parse().unwrap();
        let cache = EndpointCache::new(ENDPOINT_TTL);
        let id = EndpointId::new();
        let failed: Result<Found, String> = cache
            .get(&jane, &id, || async { Err("throttled".to_string()) })
            .await;
        assert_eq!(failed.unwrap_err(), "throttled");
        let reads = AtomicUsize::new(0);
        cache
            .get(&jane, &id, || counted_read(&reads))
            .await
            .unwrap();
        assert_eq!(reads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn an_entry_expires_after_its_ttl() {
        let jane: Account = "jane".parse().unwrap();
        let cache = EndpointCache::new(Duration::ZERO);
        let reads = AtomicUsize::new(0);
        let id = EndpointId::new();
        for _ in 0..2 {
            cache
                .get(&jane, &id, || counted_read(&reads))
                .await
                .unwrap();
        }
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }
}
