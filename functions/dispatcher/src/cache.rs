//! Endpoints as the dispatcher last read them. Entries live a few seconds only, so
//! a rotated secret, a disabled or a deleted endpoint takes effect promptly. The
//! endpoints a batch's jobs name that the cache lacks are read together, in one
//! BatchGetItem, before its records are delivered; records that miss the same
//! endpoint all the same (that read failed) share one read of it.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::SqsMessage;
use shared::account::Account;
use shared::ids::EndpointId;
use shared::model::{Endpoint, EndpointSecrets};
use tokio::sync::OnceCell;

use crate::Deps;

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

    /// Fills the entries of `keys` the cache lacks from one `read` of them all; an
    /// endpoint it does not return does not exist. If the read fails, each entry
    /// is left to [`EndpointCache::get`].
    pub async fn fill<E, F, Fut>(
        &self,
        keys: impl IntoIterator<Item = Key>,
        read: F,
    ) -> Result<(), E>
    where
        F: FnOnce(Vec<Key>) -> Fut,
        Fut: Future<Output = Result<Vec<(Endpoint, EndpointSecrets)>, E>>,
    {
        let mut missing: Vec<(Key, Slot)> = Vec::new();
        for key in keys {
            if missing.iter().any(|(k, _)| *k == key) {
                continue;
            }
            let slot = self.slot(key.clone());
            if !slot.initialized() {
                missing.push((key, slot));
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let mut found: HashMap<Key, Arc<(Endpoint, EndpointSecrets)>> =
            read(missing.iter().map(|(key, _)| key.clone()).collect())
                .await?
                .into_iter()
                .map(|(endpoint, secrets)| {
                    (
                        (endpoint.account.clone(), endpoint.id.clone()),
                        Arc::new((endpoint, secrets)),
                    )
                })
                .collect();
        for (key, slot) in missing {
            // Set already only if a concurrent `get` read it meanwhile: as good.
            let _ = slot.set(found.remove(&key));
        }
        Ok(())
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

    /// Sets when the cached endpoint's run of failures began (`None`: it ended), unless
    /// the cache says so already; whether it changed. Under the lock, so of the
    /// records of a batch that see the same transition only one writes it.
    pub fn note_run(
        &self,
        account: &Account,
        id: &EndpointId,
        failing_since: Option<time::OffsetDateTime>,
    ) -> bool {
        let mut entries = self.entries.lock().expect("not poisoned");
        let Some((_, slot)) = entries.get_mut(&(account.clone(), id.clone())) else {
            return true;
        };
        let Some(Some(found)) = slot.get() else {
            return true;
        };
        if found.0.failing_since.is_some() == failing_since.is_some() {
            return false;
        }
        let (mut endpoint, secrets) = found.as_ref().clone();
        endpoint.failing_since = failing_since;
        *slot = Arc::new(OnceCell::new_with(Some(Some(Arc::new((
            endpoint, secrets,
        ))))));
        true
    }

    /// Forgets an endpoint this instance just changed.
    pub fn forget(&self, account: &Account, id: &EndpointId) {
        self.entries
            .lock()
            .expect("not poisoned")
            .remove(&(account.clone(), id.clone()));
    }
}

/// Who a record's delivery job is for, read without the rest of it.
#[derive(serde::Deserialize)]
pub(crate) struct Addressee {
    pub(crate) account: Account,
    pub(crate) endpoint_id: EndpointId,
}

/// Reads into the cache, in one BatchGetItem (eventually consistent), the
/// endpoints the batch's delivery jobs name that it lacks.
pub(crate) async fn read_ahead(deps: &Deps, records: &[&SqsMessage]) {
    let keys = records.iter().filter_map(|record| {
        let job: Addressee = serde_json::from_str(record.body.as_deref()?).ok()?;
        Some((job.account, job.endpoint_id))
    });
    let read = deps
        .endpoints
        .fill(
            keys,
            |keys| async move { deps.store.get_endpoints(&keys).await },
        )
        .await;
    if let Err(error) = read {
        tracing::warn!(%error, "could not read a batch's endpoints at once; reading them one by one");
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
