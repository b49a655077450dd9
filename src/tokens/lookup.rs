//! How token code reads the objects a token names: a read-only lookup trait, so that
//! `tokens` never touches the store and tests can stand in a map. The registry
//! implements it; reads are consistent (straight from the store), so a deleted object is
//! seen as deleted by the very next authentication.

use serde_json::Value;

use crate::registry::{Registry, RegistryError, resources};

/// The kinds a token can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Kind {
    ServiceAccount,
    Pod,
    Secret,
    Node,
}

impl Kind {
    pub(crate) fn plural(self) -> &'static str {
        match self {
            Kind::ServiceAccount => "serviceaccounts",
            Kind::Pod => "pods",
            Kind::Secret => "secrets",
            Kind::Node => "nodes",
        }
    }
}

/// A failed lookup other than "not there".
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub(crate) struct LookupError(pub(crate) String);

/// Read access to the objects tokens are bound to.
#[async_trait::async_trait]
pub(crate) trait ObjectLookup: Send + Sync {
    /// The object, `None` when it does not exist. `namespace` is ignored for Nodes.
    async fn get(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, LookupError>;
}

#[async_trait::async_trait]
impl ObjectLookup for Registry {
    async fn get(
        &self,
        kind: Kind,
        namespace: &str,
        name: &str,
    ) -> Result<Option<Value>, LookupError> {
        let res = resources::core(kind.plural());
        let ns = (kind != Kind::Node).then_some(namespace);
        match Registry::get(self, res, ns, name).await {
            Ok(v) => Ok(Some(v)),
            Err(RegistryError::NotFound { .. }) => Ok(None),
            Err(e) => Err(LookupError(e.to_string())),
        }
    }
}

/// `metadata.uid` of an object ("" when absent).
pub(crate) fn uid(obj: &Value) -> &str {
    obj.pointer("/metadata/uid")
        .and_then(Value::as_str)
        .unwrap_or_default()
}

/// `metadata.deletionTimestamp` as unix seconds, if set.
pub(crate) fn deletion_timestamp(obj: &Value) -> Option<i64> {
    obj.pointer("/metadata/deletionTimestamp")
        .and_then(Value::as_str)
        .and_then(|s| s.parse::<jiff::Timestamp>().ok())
        .map(|t| t.as_second())
}
