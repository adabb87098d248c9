//! Endpoints as the dispatcher last read them. Entries live a few seconds only, so
//! a rotated secret, a disabled or a deleted endpoint takes effect promptly, and
//! at once for the jobs of events accepted after the change: a job names the
//! version of its endpoint the fan-out read, and an entry older than that is read
//! again, consistently. The endpoints a batch's jobs name that the cache lacks are
//! read together, in one BatchGetItem (eventually consistent, so an endpoint it
//! does not find, perhaps one created a moment ago, is not taken as deleted until
//! a consistent read says so); records that miss the same endpoint share one read.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_lambda_events::event::sqs::SqsMessage;
use shared::account::Account;
use shared::ids::EndpointId;
use shared::model::{Endpoint, EndpointSecrets};
use time::OffsetDateTime;
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

    /// The endpoint from the cache while fresh and at least as new as `seen` (the
    /// version the job's fan-out read), else from `read`, a consistent read, which
    /// runs once however many callers miss the same endpoint at the same time.
    pub async fn get<E, F, Fut>(
        &self,
        account: &Account,
        id: &EndpointId,
        seen: Option<OffsetDateTime>,
        read: F,
    ) -> Result<Found, E>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<(Endpoint, EndpointSecrets)>, E>>,
    {
        let slot = self.slot((account.clone(), id.clone()), seen);
        slot.get_or_try_init(|| async { Ok(read().await?.map(Arc::new)) })
            .await
            .cloned()
    }

    /// Fills the entries of `keys` the cache lacks from one `read` of them all. An
    /// endpoint it does not return, like every entry when the read fails, is left
    /// to [`EndpointCache::get`]: an eventually consistent read proves no deletion.
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
            let slot = self.slot(key.clone(), None);
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
            if let Some(found) = found.remove(&key) {
                // Set already only if a concurrent `get` read it meanwhile: as good.
                let _ = slot.set(Some(found));
            }
        }
        Ok(())
    }

    /// The entry of `key` while fresh and not older than `seen`, else a new, empty one.
    fn slot(&self, key: Key, seen: Option<OffsetDateTime>) -> Slot {
        let mut entries = self.entries.lock().expect("not poisoned");
        if let Some((made_at, slot)) = entries.get(&key)
            && made_at.elapsed() < self.ttl
            && !is_older(slot, seen)
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

/// Whether `slot` holds a version of its endpoint older than `seen`. An endpoint
/// not found (only a consistent read says so) has gone for good: ids are never reused.
fn is_older(slot: &Slot, seen: Option<OffsetDateTime>) -> bool {
    match (slot.get(), seen) {
        (Some(Some(found)), Some(seen)) => found.0.updated_at < seen,
        _ => false,
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
            cache.get(&jane, id, None, || counted_read(&reads))
        });
        let found = futures::future::join_all(lookups).await;
        assert!(found.iter().all(|f| matches!(f, Ok(None))));
        assert_eq!(reads.load(Ordering::SeqCst), 2, "one read per endpoint");

        // Fresh entries answer without a read; a forgotten one is read again.
        cache
            .get(&jane, &id, None, || counted_read(&reads))
            .await
            .unwrap();
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        cache.forget(&jane, &id);
        cache
            .get(&jane, &id, None, || counted_read(&reads))
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
            .get(&jane, &id, None, || async { Err("throttled".to_string()) })
            .await;
        assert_eq!(failed.unwrap_err(), "throttled");
        let reads = AtomicUsize::new(0);
        cache
            .get(&jane, &id, None, || counted_read(&reads))
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
                .get(&jane, &id, None, || counted_read(&reads))
                .await
                .unwrap();
        }
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }

    /// jane's endpoint `id` as changed at `updated_at`.
    fn version(id: &EndpointId, updated_at: OffsetDateTime) -> (Endpoint, EndpointSecrets) {
        let endpoint = Endpoint {
            id: id.clone(),
            ..hookline_tests::endpoint("jane", "https://example.com/hook", updated_at)
        };
        let secrets = EndpointSecrets::new(shared::signing::Secret::generate());
        (endpoint, secrets)
    }

    #[tokio::test]
    async fn an_entry_older_than_the_version_a_job_names_is_read_again_once() {
        let jane: Account = "jane".parse().unwrap();
        let cache = EndpointCache::new(ENDPOINT_TTL);
        let id = EndpointId::new();
        let before = OffsetDateTime::now_utc();
        let rotated = before + time::Duration::seconds(1);
        let reads = AtomicUsize::new(0);
        let read_as_of = |updated_at| {
            reads.fetch_add(1, Ordering::SeqCst);
            let found = version(&id, updated_at);
            async move { Ok::<_, String>(Some(found)) }
        };
        let cached = cache
            .get(&jane, &id, Some(before), || read_as_of(before))
            .await
            .unwrap();
        assert_eq!(cached.unwrap().0.updated_at, before);
        // Jobs that name that version, or none, or an older one, take the entry.
        for seen in [
            Some(before),
            None,
            Some(before - time::Duration::seconds(1)),
        ] {
            cache
                .get(&jane, &id, seen, || read_as_of(rotated))
                .await
                .unwrap();
        }
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        // Jobs of a later version share one read of it.
        let lookups = (0..5).map(|_| cache.get(&jane, &id, Some(rotated), || read_as_of(rotated)));
        for found in futures::future::join_all(lookups).await {
            assert_eq!(found.unwrap().unwrap().0.updated_at, rotated);
        }
        assert_eq!(reads.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn an_endpoint_the_batch_read_did_not_find_is_read_again_before_it_counts_as_gone() {
        let jane: Account = "jane".parse().unwrap();
        let cache = EndpointCache::new(ENDPOINT_TTL);
        let (found, created) = (EndpointId::new(), EndpointId::new());
        let now = OffsetDateTime::now_utc();
        let batch_read = cache
            .fill(
                [
                    (jane.clone(), found.clone()),
                    (jane.clone(), created.clone()),
                ],
                |_| async { Ok::<_, String>(vec![version(&found, now)]) },
            )
            .await;
        assert!(batch_read.is_ok());
        let reads = AtomicUsize::new(0);
        let consistent = || {
            reads.fetch_add(1, Ordering::SeqCst);
            async { Ok::<_, String>(Some(version(&created, now))) }
        };
        let got = cache.get(&jane, &found, None, consistent).await.unwrap();
        assert!(got.is_some());
        assert_eq!(reads.load(Ordering::SeqCst), 0, "found by the batch read");
        let got = cache.get(&jane, &created, None, consistent).await.unwrap();
        assert!(got.is_some(), "not taken as deleted");
        assert_eq!(reads.load(Ordering::SeqCst), 1);
    }
}
