//! The event-type catalog an event is checked against. Built-in types never
//! change, so events naming only those are checked against the built-in catalog
//! at no call. An event naming any other type reads the registered types as
//! stored now (one consistent Query), so a type registered, changed or archived
//! through any instance applies to the next event at every instance; only the
//! types the events name have their schemas compiled.

use std::collections::BTreeSet;
use std::sync::Arc;

use shared::catalog::{self, Catalog};
use shared::store::{Store, StoreError};

/// The catalogs events are checked against.
#[derive(Default)]
pub struct Catalogs {
    /// The built-in types alone: what every event of those is checked against.
    builtin: Arc<Catalog>,
}

impl Catalogs {
    /// The catalog for events naming `names`.
    pub async fn get<'a>(
        &self,
        store: &Store,
        names: impl Iterator<Item = &'a str>,
    ) -> Result<Arc<Catalog>, StoreError> {
        let others: BTreeSet<&str> = names.filter(|name| !catalog::is_builtin(name)).collect();
        if others.is_empty() {
            return Ok(self.builtin.clone());
        }
        let named = store
            .event_types()
            .await?
            .into_iter()
            .filter(|registered| others.contains(registered.name.as_str()))
            .collect();
        Catalog::new(named)
            .map(Arc::new)
            .map_err(StoreError::Corrupt)
    }
}
