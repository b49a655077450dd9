//! The one record the registry keeps that is not an API object: the service-account signing
//! key ring, as `tokens::rotation` encodes it (each private key sealed). It lives at a key
//! under the registry's root that no resource's prefix covers, so no list, watch or
//! namespace deletion ever meets it, and it is never served.
//!
//! Owns: its key and its create/compare-and-swap writes. Must not: look inside the value.

use super::{KEY_ROOT, Registry, RegistryError, Result};
use crate::store::StoreError;

/// The record's name in errors.
const RECORD: &str = "signingkeys";

/// A version of the record: its bytes and the revision of its last write.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) value: Vec<u8>,
    pub(crate) revision: i64,
}

fn key() -> String {
    format!("{KEY_ROOT}/tokenwarden.io/{RECORD}")
}

impl Registry {
    /// The signing key ring's record, if one was written.
    pub(crate) async fn signing_keys(&self) -> Result<Option<Record>> {
        Ok(self.store.get(&key()).await?.map(|kv| Record {
            value: kv.value,
            revision: kv.mod_revision,
        }))
    }

    /// Writes the record: creates it when `over` is `None` (`AlreadyExists` if another
    /// replica was first), else replaces the version at revision `over` (`Conflict` if it
    /// changed since). Returns the new revision.
    pub(crate) async fn put_signing_keys(&self, value: Vec<u8>, over: Option<i64>) -> Result<i64> {
        let written = match over {
            None => self.store.create(&key(), value).await,
            Some(revision) => self.store.update(&key(), value, Some(revision)).await,
        };
        match written {
            Ok(kv) => Ok(kv.mod_revision),
            Err(StoreError::AlreadyExists(_)) => Err(RegistryError::AlreadyExists {
                resource: RECORD.into(),
                name: RECORD.into(),
            }),
            Err(StoreError::Conflict { .. } | StoreError::NotFound(_)) => {
                Err(RegistryError::Conflict {
                    resource: RECORD.into(),
                    name: RECORD.into(),
                    message: "the signing keys changed meanwhile".into(),
                })
            }
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FakeClock;

    #[tokio::test]
    async fn created_once_then_replaced_only_over_the_version_read() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::sqlite::SqliteStore::open(&dir.path().join("db")).unwrap();
        let registry = Registry::new(store, FakeClock::at(1_795_392_244));
        assert!(registry.signing_keys().await.unwrap().is_none());
        let first = registry
            .put_signing_keys(b"a".to_vec(), None)
            .await
            .unwrap();
        assert!(matches!(
            registry.put_signing_keys(b"b".to_vec(), None).await,
            Err(RegistryError::AlreadyExists { .. })
        ));
        let second = registry
            .put_signing_keys(b"c".to_vec(), Some(first))
            .await
            .unwrap();
        assert!(matches!(
            registry.put_signing_keys(b"d".to_vec(), Some(first)).await,
            Err(RegistryError::Conflict { .. })
        ));
        let record = registry.signing_keys().await.unwrap().unwrap();
        assert_eq!(
            (record.value.as_slice(), record.revision),
            (b"c".as_slice(), second)
        );
        // Under the root (etcd's prefix maps it), outside every resource's prefix.
        assert!(key().starts_with(&format!("{KEY_ROOT}/")));
        let resources = crate::registry::resources::RESOURCES;
        assert!(
            !resources
                .iter()
                .any(|r| key().starts_with(&format!("{KEY_ROOT}/{}/", r.plural)))
        );
    }
}
