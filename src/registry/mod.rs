//! Typed resources over the revisioned store: key layout, metadata the server owns (uid,
//! creationTimestamp, resourceVersion, generation), generateName, defaulting and
//! validation, optimistic concurrency, graceful deletion and finalizers, selectors,
//! pagination and watch. Mirrors `staging/src/k8s.io/apiserver/pkg/registry/generic/registry/store.go`.
//!
//! Objects are kept as their JSON wire form (`serde_json::Value`) so one code path
//! serves every kind; per-kind rules live in [`resources`]. This module knows neither
//! HTTP nor tokens.

pub(crate) mod event_memo;
pub(crate) mod rbac;
pub(crate) mod resources;
pub(crate) mod selectors;
pub(crate) mod shared_watch;
pub(crate) mod signing_keys;
pub(crate) mod validation;

use std::sync::Arc;

use base64::Engine as _;
use futures::{Stream, StreamExt};
use serde_json::{Map, Value, json};

use crate::clock::{SharedClock, format_time};
use crate::store::{KeyValue, Revision, Store, StoreError, WatchEvent as StoreEvent};
use crate::wellknown;
pub(crate) use resources::Resource;
use selectors::{FieldSelector, LabelSelector};
use validation::FieldError;

/// What went wrong, in the terms Kubernetes' `StatusError`s use. `api` maps each
/// variant to a `Status` in one place.
#[derive(Debug, thiserror::Error)]
pub(crate) enum RegistryError {
    #[error("{resource} {name:?} not found")]
    NotFound { resource: String, name: String },
    #[error("{resource} {name:?} already exists")]
    AlreadyExists { resource: String, name: String },
    /// A write lost a race or a precondition failed; `message` is the full text.
    #[error("{message}")]
    Conflict {
        resource: String,
        name: String,
        message: String,
    },
    #[error("{kind} {name:?} is invalid")]
    Invalid {
        kind: String,
        group: String,
        name: String,
        causes: Vec<FieldError>,
    },
    #[error("{0}")]
    BadRequest(String),
    #[error("{message}")]
    Forbidden {
        resource: String,
        name: String,
        message: String,
    },
    /// A create into a namespace that is being deleted (NamespaceLifecycle admission):
    /// Forbidden, with a `NamespaceTerminating` cause.
    #[error("unable to create new content in namespace {namespace} because it is being terminated")]
    NamespaceTerminating {
        resource: String,
        name: String,
        namespace: String,
    },
    /// A resourceVersion or continue token that is too old (HTTP 410, reason Expired).
    #[error("{0}")]
    Expired(String),
    #[error("storage error: {0}")]
    Internal(String),
    /// The store could not be reached (etcd down or without quorum); worth retrying.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
}

impl From<StoreError> for RegistryError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Compacted {
                requested,
                compacted,
            } => RegistryError::Expired(format!(
                "too old resource version: {requested} ({compacted})"
            )),
            StoreError::Unavailable(m) => RegistryError::Unavailable(m),
            other => RegistryError::Internal(other.to_string()),
        }
    }
}

pub(crate) type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// Options of a list or watch (`?labelSelector=&fieldSelector=&limit=&continue=`).
#[derive(Debug, Default, Clone)]
pub(crate) struct ListOptions {
    pub(crate) label_selector: LabelSelector,
    pub(crate) field_selector: FieldSelector,
    pub(crate) limit: usize,
    pub(crate) continue_token: Option<String>,
    /// `?resourceVersion=` (for watch: where to start; "" and "0" mean "now, with the
    /// current state replayed as ADDED").
    pub(crate) resource_version: Option<String>,
    /// List at exactly `resource_version` (`resourceVersionMatch=Exact`).
    pub(crate) exact: bool,
    /// For a watch, `sendInitialEvents`: `Some(true)` replays the current state and then
    /// marks its end with a [`EventType::Bookmark`]; `Some(false)` never replays; `None`
    /// is the legacy rule of `resource_version` above.
    pub(crate) send_initial_events: Option<bool>,
}

/// A page of objects.
#[derive(Debug)]
pub(crate) struct ObjectList {
    pub(crate) items: Vec<Value>,
    pub(crate) resource_version: Revision,
    pub(crate) continue_token: Option<String>,
}

/// `DeleteOptions` as far as the registry needs them.
#[derive(Debug, Default, Clone)]
pub(crate) struct DeleteOptions {
    pub(crate) grace_period_seconds: Option<i64>,
    pub(crate) precondition_uid: Option<String>,
    pub(crate) precondition_resource_version: Option<String>,
    pub(crate) dry_run: bool,
}

/// The outcome of a delete: gone now, or marked for deletion (finalizers, graceful pods).
#[derive(Debug)]
pub(crate) enum Deleted {
    Now(Value),
    Pending(Value),
}

/// One change as a watch client sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum EventType {
    Added,
    Modified,
    Deleted,
    /// The end of a watch's initial events: the object is only metadata, with the
    /// revision the initial state was read at and the `k8s.io/initial-events-end`
    /// annotation (sent only to watches that asked for `sendInitialEvents`).
    Bookmark,
}

impl EventType {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
            EventType::Bookmark => "BOOKMARK",
        }
    }
}

/// A watch: each change with the object as of it, shared with every other watcher that got
/// the same change ([`event_memo`]).
pub(crate) type ObjectStream =
    std::pin::Pin<Box<dyn Stream<Item = Result<(EventType, Arc<Value>)>> + Send>>;

/// Typed access to every stored resource.
#[derive(Clone)]
pub(crate) struct Registry {
    store: Arc<dyn Store>,
    clock: SharedClock,
    limits: resources::Limits,
    /// `--testing-create-delay`: a pause between a namespaced create's admission and its
    /// write, so tests can make a create race a namespace deletion on purpose.
    create_delay: std::time::Duration,
    /// One watch per resource for in-process subscribers ([`Registry::shared_watch`]).
    shared_watches: Arc<shared_watch::SharedWatches>,
    /// Watch objects and lines shared by every watcher.
    events: Arc<event_memo::EventMemo>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").finish_non_exhaustive()
    }
}

/// How many times a write retries after losing a race to another writer.
const MAX_CONFLICT_RETRIES: usize = 16;

/// `utilrand.String`'s alphabet: no vowels (no words) and no look-alike characters.
const GENERATE_ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";

/// A random suffix as `generateName` uses (5 characters).
pub(crate) fn random_suffix(len: usize) -> String {
    use rand::Rng as _;
    let mut rng = rand::rng();
    (0..len)
        .map(|_| GENERATE_ALPHABET[rng.random_range(0..GENERATE_ALPHABET.len())] as char)
        .collect()
}

/// The start of every key (kube-apiserver's default `--etcd-prefix`); a store may keep the
/// keys under another prefix (the etcd store does, for `--etcd-prefix`).
pub(crate) const KEY_ROOT: &str = wellknown::DEFAULT_ETCD_PREFIX;

/// The kinds held in memory in front of the store (`store::cache`): every object a token can
/// name, so that token checks, admission lookups and their GETs never read the store.
const CACHED_RESOURCES: [&str; 4] = ["serviceaccounts", "secrets", "pods", "nodes"];

/// The key ranges of [`CACHED_RESOURCES`], and the root that holds every key, for
/// `store::cache::CachedStore::start`.
pub(crate) fn cached_ranges() -> (String, Vec<String>) {
    let ranges = CACHED_RESOURCES
        .iter()
        .map(|plural| prefix(resources::core(plural), None))
        .collect();
    (format!("{KEY_ROOT}/"), ranges)
}

fn key(res: &Resource, ns: Option<&str>, name: &str) -> String {
    format!("{}{name}", prefix(res, ns))
}

fn prefix(res: &Resource, ns: Option<&str>) -> String {
    match ns {
        Some(ns) if res.namespaced => format!("{KEY_ROOT}/{}/{ns}/", res.plural),
        _ => format!("{KEY_ROOT}/{}/", res.plural),
    }
}

fn meta(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata").and_then(Value::as_object)
}

fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = json!({});
    }
    // Just ensured to be an object above.
    #[allow(clippy::expect_used)]
    obj.get_mut("metadata")
        .and_then(Value::as_object_mut)
        .expect("metadata is an object")
}

/// A metadata string field, treating `""` as unset (protobuf clients send empty strings).
pub(crate) fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    meta(obj)
        .and_then(|m| m.get(field))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// Decodes a stored value and stamps its resourceVersion, as the etcd3 versioner does.
fn decode(kv: &KeyValue) -> Result<Value> {
    let mut obj: Value = serde_json::from_slice(&kv.value)
        .map_err(|e| RegistryError::Internal(format!("corrupt object at {}: {e}", kv.key)))?;
    meta_mut(&mut obj).insert(
        "resourceVersion".into(),
        Value::from(kv.mod_revision.to_string()),
    );
    Ok(obj)
}

/// The object as of `rev`: a deleted object carries the delete's revision, as in
/// Kubernetes' DELETED events and delete responses.
fn at_revision(mut obj: Value, rev: Revision) -> Value {
    meta_mut(&mut obj).insert("resourceVersion".into(), Value::from(rev.to_string()));
    obj
}

fn encode(obj: &Value) -> Result<Vec<u8>> {
    let mut copy = obj.clone();
    meta_mut(&mut copy).remove("resourceVersion");
    serde_json::to_vec(&copy).map_err(|e| RegistryError::Internal(e.to_string()))
}

/// Two objects are the same write if they differ at most in resourceVersion.
fn same_content(a: &Value, b: &Value) -> bool {
    let strip = |v: &Value| {
        let mut c = v.clone();
        meta_mut(&mut c).remove("resourceVersion");
        c
    };
    strip(a) == strip(b)
}

fn invalid(res: &Resource, name: &str, causes: Vec<FieldError>) -> RegistryError {
    RegistryError::Invalid {
        kind: res.kind.to_string(),
        group: res.group.to_string(),
        name: name.to_string(),
        causes,
    }
}

fn not_found(res: &Resource, name: &str) -> RegistryError {
    RegistryError::NotFound {
        resource: res.qualified(),
        name: name.to_string(),
    }
}

fn conflict(res: &Resource, name: &str) -> RegistryError {
    RegistryError::Conflict {
        resource: res.qualified(),
        name: name.to_string(),
        message: format!(
            "Operation cannot be fulfilled on {} {name:?}: the object has been modified; please apply your changes to the latest version and try again",
            res.qualified()
        ),
    }
}

/// A continue token: the revision of the first page and the last key returned, in
/// the same base64(JSON) shape kube-apiserver uses.
#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    v: String,
    rv: Revision,
    start: String,
}

fn encode_continue(rv: Revision, last_key: &str, prefix: &str) -> String {
    let token = ContinueToken {
        v: "meta.k8s.io/v1".into(),
        rv,
        start: last_key
            .strip_prefix(prefix)
            .unwrap_or(last_key)
            .to_string(),
    };
    let json = serde_json::to_vec(&token).unwrap_or_default();
    base64::engine::general_purpose::URL_SAFE.encode(json)
}

fn invalid_continue() -> RegistryError {
    RegistryError::BadRequest("continue key is not valid: invalid continue token".into())
}

fn decode_continue(token: &str) -> Result<ContinueToken> {
    let bad = invalid_continue;
    let bytes = base64::engine::general_purpose::URL_SAFE
        .decode(token)
        .map_err(|_| bad())?;
    let t: ContinueToken = serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if t.v != "meta.k8s.io/v1" || t.start.contains("..") || t.rv <= 0 {
        return Err(bad());
    }
    Ok(t)
}

fn parse_rv(s: &str) -> Result<Revision> {
    s.parse::<Revision>()
        .map_err(|_| RegistryError::BadRequest(format!("invalid resource version: {s:?}")))
}

impl Registry {
    pub(crate) fn new(store: Arc<dyn Store>, clock: SharedClock) -> Self {
        Registry {
            store,
            clock,
            limits: resources::Limits::default(),
            create_delay: std::time::Duration::ZERO,
            shared_watches: Arc::default(),
            events: Arc::default(),
        }
    }

    /// The same registry, pausing `delay` between a namespaced create's admission and its
    /// write (a test-only flag).
    pub(crate) fn with_testing_create_delay(mut self, delay: std::time::Duration) -> Self {
        self.create_delay = delay;
        self
    }

    /// The same registry with other validation limits (test-only flags).
    pub(crate) fn with_limits(mut self, limits: resources::Limits) -> Self {
        self.limits = limits;
        self
    }

    pub(crate) fn clock(&self) -> &SharedClock {
        &self.clock
    }

    pub(crate) async fn current_revision(&self) -> Result<Revision> {
        Ok(self.store.current_revision().await?)
    }

    /// Creates the namespaces that exist from the first start (idempotent).
    pub(crate) async fn ensure_system_namespaces(&self) -> Result<()> {
        let ns = resources::core("namespaces");
        for name in wellknown::SYSTEM_NAMESPACES {
            let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
            match self.create(ns, None, obj, false).await {
                Ok(_) | Err(RegistryError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    pub(crate) async fn get(&self, res: &Resource, ns: Option<&str>, name: &str) -> Result<Value> {
        match self.store.get(&key(res, ns, name)).await? {
            Some(kv) => decode(&kv),
            None => Err(not_found(res, name)),
        }
    }

    async fn get_kv(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
    ) -> Result<(KeyValue, Value)> {
        match self.store.get(&key(res, ns, name)).await? {
            Some(kv) => {
                let obj = decode(&kv)?;
                Ok((kv, obj))
            }
            None => Err(not_found(res, name)),
        }
    }

    /// Lists objects, filtering by selectors and paging by `limit`/`continue` at one
    /// consistent revision.
    pub(crate) async fn list(
        &self,
        res: &Resource,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> Result<ObjectList> {
        let prefix = prefix(res, ns);
        let (mut start, at) = match &opts.continue_token {
            Some(t) => {
                let t = decode_continue(t)?;
                // A token from the future was not made by this server.
                if t.rv > self.store.current_revision().await? {
                    return Err(invalid_continue());
                }
                (Some(format!("{prefix}{}", t.start)), Some(t.rv))
            }
            None if opts.exact => (
                None,
                opts.resource_version.as_deref().map(parse_rv).transpose()?,
            ),
            None => (None, None),
        };
        let mut items = Vec::new();
        let mut revision = at.unwrap_or(0);
        // Read in chunks until the page is full of matches or the range is exhausted.
        let chunk = if opts.limit == 0 {
            0
        } else {
            opts.limit.max(64)
        };
        loop {
            let page = match self
                .store
                .list(
                    &prefix,
                    start.as_deref(),
                    chunk,
                    at.or(Some(revision)).filter(|r| *r > 0),
                )
                .await
            {
                Ok(p) => p,
                Err(StoreError::Compacted {
                    requested,
                    compacted,
                }) if opts.exact => {
                    return Err(RegistryError::Expired(format!(
                        "too old resource version: {requested} ({compacted})"
                    )));
                }
                Err(StoreError::Compacted { .. }) if opts.continue_token.is_some() => {
                    return Err(RegistryError::Expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter, or use the continue token in this response to retrieve the remainder of the results. Continuing with the provided token results in an inconsistent list - objects that were created, modified, or deleted between the time the first chunk was returned and now may show up in the list.".into()));
                }
                Err(e) => return Err(e.into()),
            };
            revision = page.revision;
            let mut last_key = None;
            for kv in &page.items {
                last_key = Some(kv.key.clone());
                let obj = decode(kv)?;
                if self.matches(opts, &obj) {
                    items.push(obj);
                    if opts.limit > 0 && items.len() == opts.limit {
                        let more = page.more
                            || kv.key
                                != page.items.last().map(|k| k.key.clone()).unwrap_or_default();
                        let token = more.then(|| encode_continue(revision, &kv.key, &prefix));
                        return Ok(ObjectList {
                            items,
                            resource_version: revision,
                            continue_token: token,
                        });
                    }
                }
            }
            match (page.more, last_key) {
                (true, Some(k)) => start = Some(k),
                _ => break,
            }
        }
        Ok(ObjectList {
            items,
            resource_version: revision,
            continue_token: None,
        })
    }

    fn matches(&self, opts: &ListOptions, obj: &Value) -> bool {
        (opts.label_selector.is_empty() || opts.label_selector.matches(&selectors::labels_of(obj)))
            && (opts.field_selector.is_empty() || opts.field_selector.matches(obj))
    }

    /// Fills the metadata the server owns and runs defaulting and validation for a new
    /// object. Returns the object ready to store (without uid/timestamps for dry runs too).
    fn prepare_create(&self, res: &Resource, ns: Option<&str>, mut obj: Value) -> Result<Value> {
        let Some(map) = obj.as_object_mut() else {
            return Err(RegistryError::BadRequest(
                "the body of the request must be an object".into(),
            ));
        };
        map.insert("apiVersion".into(), Value::from(res.api_version()));
        map.insert("kind".into(), Value::from(res.kind));
        let now = format_time(self.clock.now());
        {
            let m = meta_mut(&mut obj);
            // Server-owned fields: whatever the client sent is dropped (`FillObjectMetaSystemFields`).
            for f in [
                "uid",
                "resourceVersion",
                "selfLink",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "managedFields",
                "creationTimestamp",
            ] {
                m.remove(f);
            }
            // Empty strings are "unset" (protobuf clients send them).
            for f in ["name", "generateName", "namespace"] {
                if m.get(f).and_then(Value::as_str) == Some("") {
                    m.remove(f);
                }
            }
            if res.namespaced {
                let ns = ns.unwrap_or("default");
                match m.get("namespace").and_then(Value::as_str) {
                    Some(body) if body != ns => {
                        return Err(RegistryError::BadRequest(
                            "the namespace of the provided object does not match the namespace sent on the request".into(),
                        ));
                    }
                    _ => {
                        m.insert("namespace".into(), Value::from(ns));
                    }
                }
            } else {
                m.remove("namespace");
            }
            m.insert("creationTimestamp".into(), Value::from(now));
            m.insert("uid".into(), Value::from(uuid::Uuid::new_v4().to_string()));
            if res.kind == "Pod" {
                m.insert("generation".into(), Value::from(1));
            }
        }
        if meta_str(&obj, "name").is_none() {
            match meta_str(&obj, "generateName").map(str::to_string) {
                Some(base) => {
                    meta_mut(&mut obj).insert(
                        "name".into(),
                        Value::from(format!("{base}{}", random_suffix(5))),
                    );
                }
                None => {
                    return Err(invalid(
                        res,
                        "",
                        vec![FieldError::required(
                            "metadata.name",
                            "name or generateName is required",
                        )],
                    ));
                }
            }
        }
        if let Some(map) = obj.as_object_mut() {
            resources::default_on_create(res, map);
        }
        self.check(res, &obj, None)?;
        Ok(obj)
    }

    fn check(&self, res: &Resource, obj: &Value, old: Option<&Value>) -> Result<()> {
        let name = meta_str(obj, "name").unwrap_or_default();
        resources::typed_check(res, obj).map_err(RegistryError::BadRequest)?;
        let errs = resources::validate_with(res, obj, old, &self.limits);
        if errs.is_empty() {
            Ok(())
        } else {
            Err(invalid(res, name, errs))
        }
    }

    /// kube-apiserver's NamespaceLifecycle admission for a create
    /// (`plugin/pkg/admission/namespace/lifecycle/admission.go`): the namespace must exist
    /// (`namespaces "q" not found`) and must not be Terminating. [`Registry::create`] runs it
    /// itself; `api` runs it first for creates that other admission or a subresource handles
    /// (Pods, TokenRequests), as the plugin comes first. Returns the namespace's uid, for
    /// [`Registry::recheck_namespace`].
    pub(crate) async fn admit_into_namespace(
        &self,
        res: &Resource,
        ns: Option<&str>,
        obj: &Value,
    ) -> Result<Option<String>> {
        if !res.namespaced {
            return Ok(None);
        }
        let ns_name = ns.unwrap_or("default");
        let namespace = self
            .get(resources::core("namespaces"), None, ns_name)
            .await?;
        if namespace.pointer("/status/phase").and_then(Value::as_str) == Some(NAMESPACE_TERMINATING)
        {
            return Err(terminating(res, ns_name, obj));
        }
        Ok(meta_str(&namespace, "uid").map(str::to_string))
    }

    /// After a create into a namespace: if the namespace started terminating, or went (and
    /// perhaps came back), between the admission check and the write, the new object may
    /// have been missed by the namespace controller's last listing. It is taken back and the
    /// create fails as if admission had refused it, so no object outlives its namespace.
    async fn recheck_namespace(
        &self,
        res: &Resource,
        ns: &str,
        admitted_uid: &str,
        created: &KeyValue,
        obj: &Value,
    ) -> Result<()> {
        let refusal = match self.get(resources::core("namespaces"), None, ns).await {
            Ok(n) if meta_str(&n, "uid") != Some(admitted_uid) => {
                not_found(resources::core("namespaces"), ns)
            }
            Ok(n)
                if n.pointer("/status/phase").and_then(Value::as_str)
                    == Some(NAMESPACE_TERMINATING) =>
            {
                terminating(res, ns, obj)
            }
            Ok(_) => return Ok(()),
            Err(RegistryError::NotFound { .. }) => not_found(resources::core("namespaces"), ns),
            Err(e) => return Err(e),
        };
        match self
            .store
            .delete(&created.key, Some(created.mod_revision))
            .await
        {
            // Changed or deleted since (by the namespace controller): it is not ours to
            // take back, and the controller's listing saw it.
            Ok(_) | Err(StoreError::NotFound(_) | StoreError::Conflict { .. }) => Err(refusal),
            Err(e) => Err(e.into()),
        }
    }

    /// Creates an object. With `dry_run` everything but the write happens.
    pub(crate) async fn create(
        &self,
        res: &Resource,
        ns: Option<&str>,
        obj: Value,
        dry_run: bool,
    ) -> Result<Value> {
        let generate = meta_str(&obj, "name").is_none();
        let admitted_uid = self.admit_into_namespace(res, ns, &obj).await?;
        if admitted_uid.is_some() && !self.create_delay.is_zero() {
            tokio::time::sleep(self.create_delay).await;
        }
        let original = obj;
        // generateName collisions are retried with a fresh suffix, as the apiserver does
        // for a few attempts before surfacing AlreadyExists.
        let attempts = if generate { 8 } else { 1 };
        let mut last = None;
        for _ in 0..attempts {
            let obj = self.prepare_create(res, ns, original.clone())?;
            let name = meta_str(&obj, "name").unwrap_or_default().to_string();
            if dry_run {
                return Ok(obj);
            }
            match self.store.create(&key(res, ns, &name), encode(&obj)?).await {
                Ok(kv) => {
                    if let Some(uid) = &admitted_uid {
                        let ns = ns.unwrap_or("default");
                        self.recheck_namespace(res, ns, uid, &kv, &original).await?;
                    }
                    return decode(&kv);
                }
                Err(StoreError::AlreadyExists(_)) => {
                    last = Some(RegistryError::AlreadyExists {
                        resource: res.qualified(),
                        name,
                    });
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(last.unwrap_or_else(|| RegistryError::Internal("create failed".into())))
    }

    /// Reads, transforms and writes back, retrying when another writer got in between.
    /// `mutate` receives the current object and returns the desired one; a desired
    /// object that carries a resourceVersion different from the current one is a
    /// Conflict (the client's precondition). Returns the stored object and whether
    /// anything changed.
    pub(crate) async fn update_with<F>(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        subresource: Option<&str>,
        dry_run: bool,
        mut mutate: F,
    ) -> Result<(Value, bool)>
    where
        F: FnMut(&Value) -> Result<Value> + Send,
    {
        for _ in 0..MAX_CONFLICT_RETRIES {
            let (kv, current) = self.get_kv(res, ns, name).await?;
            let desired = mutate(&current)?;
            let precondition = meta_str(&desired, "resourceVersion").map(str::to_string);
            if let Some(rv) = &precondition
                && *rv != kv.mod_revision.to_string()
            {
                return Err(conflict(res, name));
            }
            let next = self.prepare_update(res, name, &current, desired, subresource)?;
            if same_content(&next, &current) {
                return Ok((current, false));
            }
            if dry_run {
                return Ok((next, true));
            }
            // Finalizers all gone from an object that is being deleted: finish the delete
            // (`ShouldDeleteDuringUpdate`; for a namespace, its spec.finalizers too:
            // `ShouldDeleteNamespaceDuringUpdate` in pkg/registry/core/namespace/storage).
            if is_deleting(&next)
                && finalizers(&next).is_empty()
                && namespace_finalizers(&next).is_empty()
                && !graceful_pending(&next, &*self.clock)
            {
                match self.store.delete(&kv.key, Some(kv.mod_revision)).await {
                    Ok((_, rev)) => {
                        return Ok((at_revision(next, rev), true));
                    }
                    Err(StoreError::Conflict { .. }) => continue,
                    Err(e) => return Err(e.into()),
                }
            }
            match self
                .store
                .update(&kv.key, encode(&next)?, Some(kv.mod_revision))
                .await
            {
                Ok(kv) => return Ok((decode(&kv)?, true)),
                Err(StoreError::Conflict { .. }) if precondition.is_none() => continue,
                Err(StoreError::Conflict { .. }) => return Err(conflict(res, name)),
                Err(StoreError::NotFound(_)) => return Err(not_found(res, name)),
                Err(e) => return Err(e.into()),
            }
        }
        Err(conflict(res, name))
    }

    /// Merges what the server owns from `current` into `desired` and validates.
    fn prepare_update(
        &self,
        res: &Resource,
        url_name: &str,
        current: &Value,
        mut desired: Value,
        subresource: Option<&str>,
    ) -> Result<Value> {
        if !desired.is_object() {
            return Err(RegistryError::BadRequest(
                "the body of the request must be an object".into(),
            ));
        }
        if let Some(body_name) = meta_str(&desired, "name")
            && body_name != url_name
        {
            return Err(RegistryError::BadRequest(format!(
                "the name of the object ({body_name}) does not match the name on the URL ({url_name})"
            )));
        }
        if let (Some(want), Some(have)) = (meta_str(&desired, "uid"), meta_str(current, "uid"))
            && want != have
        {
            return Err(RegistryError::Conflict {
                resource: res.qualified(),
                name: url_name.to_string(),
                message: format!(
                    "Precondition failed: UID in precondition: {want}, UID in object meta: {have}"
                ),
            });
        }
        if let Some(body_ns) = meta_str(&desired, "namespace")
            && Some(body_ns) != meta_str(current, "namespace")
        {
            return Err(RegistryError::BadRequest(
                    "the namespace of the provided object does not match the namespace sent on the request".into(),
                ));
        }
        if let Some(map) = desired.as_object_mut() {
            map.insert("apiVersion".into(), Value::from(res.api_version()));
            map.insert("kind".into(), Value::from(res.kind));
            resources::default_on_decode(res, map);
        }
        match subresource {
            // A status write changes only status (`PrepareForUpdate` of the status strategies).
            Some("status") => {
                let status = desired.get("status").cloned();
                desired = current.clone();
                match status {
                    Some(s) => desired["status"] = s,
                    None => {
                        if let Some(m) = desired.as_object_mut() {
                            m.remove("status");
                        }
                    }
                }
            }
            // A namespace's finalize subresource changes only spec.finalizers
            // (`namespaceFinalizeStrategy`).
            Some("finalize") => {
                let wanted = desired.pointer("/spec/finalizers").cloned();
                desired = current.clone();
                set_namespace_finalizers(&mut desired, wanted);
            }
            // A main-resource write cannot change status of kinds that have a status subresource.
            _ if res.has_status() => match current.get("status") {
                Some(s) => desired["status"] = s.clone(),
                None => {
                    if let Some(m) = desired.as_object_mut() {
                        m.remove("status");
                    }
                }
            },
            _ => {}
        }
        // Nor a namespace's spec.finalizers: only `finalize` does (`namespaceStrategy`).
        if res.kind == "Namespace" && subresource != Some("finalize") {
            let kept = current.pointer("/spec/finalizers").cloned();
            set_namespace_finalizers(&mut desired, kept);
        }
        let cur_meta = meta(current).cloned().unwrap_or_default();
        {
            let m = meta_mut(&mut desired);
            for f in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "namespace",
                "name",
                "generation",
            ] {
                match cur_meta.get(f) {
                    Some(v) => {
                        m.insert(f.into(), v.clone());
                    }
                    None => {
                        m.remove(f);
                    }
                }
            }
            m.remove("selfLink");
            m.remove("managedFields");
            m.insert(
                "resourceVersion".into(),
                cur_meta
                    .get("resourceVersion")
                    .cloned()
                    .unwrap_or(Value::Null),
            );
            // Once deleting, finalizers may only be removed.
            if cur_meta.contains_key("deletionTimestamp") {
                let old: Vec<Value> = cur_meta
                    .get("finalizers")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let new: Vec<Value> = m
                    .get("finalizers")
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                if new.iter().any(|f| !old.contains(f)) {
                    return Err(invalid(
                        res,
                        url_name,
                        vec![FieldError::forbidden(
                            "metadata.finalizers",
                            "no new finalizers can be added if the object is being deleted",
                        )],
                    ));
                }
            }
        }
        // generation counts spec changes (kinds that carry one).
        if let Some(g) = cur_meta.get("generation").and_then(Value::as_i64)
            && desired.get("spec") != current.get("spec")
        {
            meta_mut(&mut desired).insert("generation".into(), Value::from(g + 1));
        }
        self.check(res, &desired, Some(current))?;
        Ok(desired)
    }

    /// Deletes an object, or marks it for deletion when finalizers or a grace period
    /// keep it around.
    pub(crate) async fn delete(
        &self,
        res: &Resource,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Deleted> {
        // NamespaceLifecycle admission: these namespaces are never deleted.
        if res.kind == "Namespace" && wellknown::IMMORTAL_NAMESPACES.contains(&name) {
            return Err(RegistryError::Forbidden {
                resource: res.qualified(),
                name: name.to_string(),
                message: "this namespace may not be deleted".into(),
            });
        }
        for _ in 0..MAX_CONFLICT_RETRIES {
            let (kv, current) = self.get_kv(res, ns, name).await?;
            if let Some(uid) = &opts.precondition_uid {
                let have = meta_str(&current, "uid").unwrap_or_default();
                if uid != have {
                    return Err(RegistryError::Conflict {
                        resource: res.qualified(),
                        name: name.to_string(),
                        message: format!(
                            "Precondition failed: UID in precondition: {uid}, UID in object meta: {have}"
                        ),
                    });
                }
            }
            if let Some(rv) = &opts.precondition_resource_version {
                let have = kv.mod_revision.to_string();
                if *rv != have {
                    return Err(RegistryError::Conflict {
                        resource: res.qualified(),
                        name: name.to_string(),
                        message: format!(
                            "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {have}"
                        ),
                    });
                }
            }
            // A namespace is not deleted by a DELETE but marked Terminating; the namespace
            // controller empties it and finalizes it, which deletes it. Until then another
            // DELETE changes nothing (`REST.Delete` in pkg/registry/core/namespace/storage).
            if res.kind == "Namespace" && !namespace_finalizers(&current).is_empty() {
                if is_deleting(&current) {
                    return Ok(Deleted::Pending(current));
                }
                let mut marked = current.clone();
                meta_mut(&mut marked).insert(
                    "deletionTimestamp".into(),
                    Value::from(format_time(self.clock.now())),
                );
                if !marked.get("status").is_some_and(Value::is_object) {
                    marked["status"] = json!({});
                }
                marked["status"]["phase"] = Value::from(NAMESPACE_TERMINATING);
                if opts.dry_run {
                    return Ok(Deleted::Pending(marked));
                }
                match self.write_mark(&kv, &marked).await? {
                    Some(done) => return Ok(done),
                    None => continue,
                }
            }
            if let Some(marked) = self.deletion_mark(res, &current, opts) {
                if dry_run_or_same(opts.dry_run, &marked, &current) {
                    return Ok(Deleted::Pending(if opts.dry_run {
                        marked
                    } else {
                        current
                    }));
                }
                match self.write_mark(&kv, &marked).await? {
                    Some(done) => return Ok(done),
                    None => continue,
                }
            }
            if opts.dry_run {
                return Ok(Deleted::Now(current));
            }
            match self.store.delete(&kv.key, Some(kv.mod_revision)).await {
                Ok((_, rev)) => {
                    return Ok(Deleted::Now(at_revision(current, rev)));
                }
                Err(StoreError::Conflict { .. }) => continue,
                Err(StoreError::NotFound(_)) => return Err(not_found(res, name)),
                Err(e) => return Err(e.into()),
            }
        }
        Err(conflict(res, name))
    }

    /// The object with deletionTimestamp set when it cannot go away at once: finalizers
    /// remain, or a pod on a node gets its grace period (`BeforeDelete` in
    /// `pkg/registry/rest/delete.go`). `None` means delete now.
    fn deletion_mark(
        &self,
        res: &Resource,
        current: &Value,
        opts: &DeleteOptions,
    ) -> Option<Value> {
        let now = self.clock.now();
        let mut grace = 0;
        if res.kind == "Pod" {
            let scheduled = current
                .pointer("/spec/nodeName")
                .and_then(Value::as_str)
                .is_some_and(|n| !n.is_empty());
            let phase = current
                .pointer("/status/phase")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let terminal = phase == "Succeeded" || phase == "Failed";
            // An unscheduled or finished pod has nothing to stop: it is deleted at once.
            if scheduled && !terminal {
                grace = opts
                    .grace_period_seconds
                    .unwrap_or_else(|| {
                        current
                            .pointer("/spec/terminationGracePeriodSeconds")
                            .and_then(Value::as_i64)
                            .unwrap_or(wellknown::DEFAULT_TERMINATION_GRACE_SECONDS)
                    })
                    .max(0);
            }
        }
        if grace == 0 && finalizers(current).is_empty() {
            return None;
        }
        let mut marked = current.clone();
        let m = meta_mut(&mut marked);
        let existing_grace = m.get("deletionGracePeriodSeconds").and_then(Value::as_i64);
        // A second delete may shorten the grace period, never lengthen it.
        if existing_grace.is_none_or(|g| grace < g) || !m.contains_key("deletionTimestamp") {
            let at = now
                .checked_add(jiff::SignedDuration::from_secs(grace))
                .unwrap_or(now);
            m.insert("deletionTimestamp".into(), Value::from(format_time(at)));
            m.insert("deletionGracePeriodSeconds".into(), Value::from(grace));
        }
        Some(marked)
    }

    /// Stores `marked` (a deletion mark: `deletionTimestamp`, Terminating) over `kv` if it has
    /// not changed since it was read: the pending deletion, or `None` when a concurrent write
    /// won and the caller must read again.
    async fn write_mark(&self, kv: &KeyValue, marked: &Value) -> Result<Option<Deleted>> {
        match self
            .store
            .update(&kv.key, encode(marked)?, Some(kv.mod_revision))
            .await
        {
            Ok(kv) => Ok(Some(Deleted::Pending(decode(&kv)?))),
            Err(StoreError::Conflict { .. }) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Watches changes. `resource_version` "" or "0" first replays the current state as
    /// ADDED events; a number streams changes after it. Selector transitions become
    /// ADDED/DELETED as the watch cache does.
    pub(crate) async fn watch(
        &self,
        res: &Resource,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> Result<ObjectStream> {
        let pfx = prefix(res, ns);
        let rv = opts.resource_version.as_deref().unwrap_or("");
        let legacy_replay = rv.is_empty() || rv == "0";
        let replay = opts.send_initial_events.unwrap_or(legacy_replay);
        let (initial, after) = if replay {
            let all = self
                .list(
                    res,
                    ns,
                    &ListOptions {
                        limit: 0,
                        continue_token: None,
                        ..opts.clone()
                    },
                )
                .await?;
            (all.items, all.resource_version)
        } else if legacy_replay {
            (Vec::new(), self.store.current_revision().await?)
        } else {
            (Vec::new(), parse_rv(rv)?)
        };
        // With sendInitialEvents, a bookmark closes the initial state (`k8s.io/initial-events-end`).
        let end_marker = (opts.send_initial_events == Some(true)).then(|| {
            Ok((
                EventType::Bookmark,
                Arc::new(json!({"metadata": {
                    "resourceVersion": after.to_string(),
                    "annotations": {wellknown::ANNOTATION_INITIAL_EVENTS_END: "true"},
                }})),
            ))
        });
        // A watch from a revision the store has not reached waits for it, as the watch
        // cache does: it starts now and skips changes up to the one asked for.
        let current = self.store.current_revision().await?;
        let start = after.min(current);
        let changes = match self.store.watch(&pfx, start).await {
            Ok(s) => s,
            Err(StoreError::Compacted {
                requested,
                compacted,
            }) => {
                return Err(RegistryError::Expired(format!(
                    "too old resource version: {requested} ({compacted})"
                )));
            }
            Err(e) => return Err(e.into()),
        };
        let opts = opts.clone();
        let this = self.clone();
        let initial = futures::stream::iter(
            initial
                .into_iter()
                .map(|o| Ok((EventType::Added, Arc::new(o))))
                .chain(end_marker),
        );
        let live = changes.filter_map(move |ev| {
            let out = match ev {
                Ok(ev) if ev.revision() <= after => None,
                Ok(ev) => this.translate(&opts, ev).transpose(),
                Err(StoreError::Compacted {
                    requested,
                    compacted,
                }) => Some(Err(RegistryError::Expired(format!(
                    "too old resource version: {requested} ({compacted})"
                )))),
                Err(StoreError::WatchLagged) => Some(Err(RegistryError::Expired(
                    "the watch fell behind; list again".into(),
                ))),
                Err(e) => Some(Err(e.into())),
            };
            futures::future::ready(out)
        });
        Ok(Box::pin(initial.chain(live)))
    }

    fn translate(
        &self,
        opts: &ListOptions,
        ev: StoreEvent,
    ) -> Result<Option<(EventType, Arc<Value>)>> {
        let selects_all = opts.label_selector.is_empty() && opts.field_selector.is_empty();
        match ev {
            StoreEvent::Put { kv, prev } => {
                let obj = self.events.object(kv.mod_revision, || decode(&kv))?;
                let now_matches = self.matches(opts, &obj);
                let was = match &prev {
                    // Without selectors every state matches: the old one need not be read.
                    Some(_) if selects_all => Some(true),
                    Some(p) => {
                        let old = self.events.object(p.mod_revision, || decode(p))?;
                        Some(self.matches(opts, &old))
                    }
                    None => None,
                };
                Ok(match (was, now_matches) {
                    (None, true) | (Some(false), true) => Some((EventType::Added, obj)),
                    (Some(true), true) => Some((EventType::Modified, obj)),
                    // Left the selection: a DELETED of the new state at the new revision.
                    (Some(true), false) => Some((EventType::Deleted, obj)),
                    _ => None,
                })
            }
            StoreEvent::Delete { prev, revision } => {
                let obj = self
                    .events
                    .object(revision, || Ok(at_revision(decode(&prev)?, revision)))?;
                if !self.matches(opts, &obj) {
                    return Ok(None);
                }
                Ok(Some((EventType::Deleted, obj)))
            }
        }
    }

    /// The `{"type":…,"object":…}` line of a watch event, encoded once for every watcher
    /// that sends the same change as JSON; `revision` is the object's resourceVersion (none:
    /// not shared).
    pub(crate) fn watch_line(
        &self,
        kind: EventType,
        revision: Option<Revision>,
        obj: &Value,
    ) -> bytes::Bytes {
        let encode = || {
            let mut v = format!("{{\"type\":\"{}\",\"object\":", kind.as_str()).into_bytes();
            // A Value always serialises (its map keys are strings).
            let _ = serde_json::to_writer(&mut v, obj);
            v.extend_from_slice(b"}\n");
            bytes::Bytes::from(v)
        };
        match revision {
            Some(revision) => self.events.line(revision, kind, encode),
            None => encode(),
        }
    }
}

fn dry_run_or_same(dry_run: bool, marked: &Value, current: &Value) -> bool {
    dry_run || same_content(marked, current)
}

fn is_deleting(obj: &Value) -> bool {
    meta(obj).is_some_and(|m| m.contains_key("deletionTimestamp"))
}

fn finalizers(obj: &Value) -> Vec<Value> {
    meta(obj)
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

/// `status.phase` of a namespace that is being deleted.
const NAMESPACE_TERMINATING: &str = "Terminating";

/// A namespace's `spec.finalizers` (empty for other kinds).
fn namespace_finalizers(obj: &Value) -> Vec<Value> {
    obj.pointer("/spec/finalizers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn set_namespace_finalizers(obj: &mut Value, finalizers: Option<Value>) {
    match finalizers {
        Some(f) => {
            if !obj.get("spec").is_some_and(Value::is_object) {
                obj["spec"] = json!({});
            }
            obj["spec"]["finalizers"] = f;
        }
        None => {
            if let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) {
                spec.remove("finalizers");
            }
        }
    }
}

/// The refusal of a create into a terminating namespace. The name is the object's, or its
/// generateName, or `Unknown` (`extractResourceName` in apiserver's admission errors).
fn terminating(res: &Resource, ns: &str, obj: &Value) -> RegistryError {
    let name = meta_str(obj, "name")
        .filter(|n| !n.is_empty())
        .or_else(|| meta_str(obj, "generateName").filter(|n| !n.is_empty()))
        .unwrap_or("Unknown");
    RegistryError::NamespaceTerminating {
        resource: res.qualified(),
        name: name.to_string(),
        namespace: ns.to_string(),
    }
}

/// A pod whose grace period has not run out stays until its node confirms it stopped.
fn graceful_pending(obj: &Value, _clock: &dyn crate::clock::Clock) -> bool {
    obj.get("kind").and_then(Value::as_str) == Some("Pod")
        && meta(obj)
            .and_then(|m| m.get("deletionGracePeriodSeconds"))
            .and_then(Value::as_i64)
            .is_some_and(|g| g > 0)
}

/// A registry over a fresh SQLite store in a temporary directory (kept while the returned
/// `TempDir` lives), with the system namespaces made: for the unit tests of modules that may
/// use `registry` but not `store` (STYLE.md module table).
#[cfg(test)]
pub(crate) async fn temp_registry(clock: SharedClock) -> (Registry, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store: Arc<dyn Store> =
        crate::store::sqlite::SqliteStore::open(&dir.path().join("db")).expect("a fresh store");
    let registry = Registry::new(store, clock);
    registry
        .ensure_system_namespaces()
        .await
        .expect("the system namespaces");
    (registry, dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FakeClock;
    use crate::store::sqlite::SqliteStore;

    struct Fixture {
        registry: Registry,
        store: Arc<dyn Store>,
        _dir: tempfile::TempDir,
    }

    async fn fixture() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = SqliteStore::open(&dir.path().join("db")).unwrap();
        let clock = FakeClock::at(1_795_392_244);
        let registry = Registry::new(store.clone(), clock.clone());
        registry.ensure_system_namespaces().await.unwrap();
        Fixture {
            registry,
            store,
            _dir: dir,
        }
    }

    fn sa(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": name}})
    }

    fn rv(obj: &Value) -> &str {
        obj["metadata"]["resourceVersion"].as_str().unwrap()
    }

    #[tokio::test]
    async fn create_fills_server_owned_metadata() {
        let f = fixture().await;
        let res = resources::core("serviceaccounts");
        let mut body = sa("example-sa");
        body["metadata"]["uid"] = json!("client-chosen");
        body["metadata"]["namespace"] = json!("");
        let obj = f
            .registry
            .create(res, Some("default"), body, false)
            .await
            .unwrap();
        assert_eq!(obj["metadata"]["namespace"], "default");
        assert_eq!(obj["metadata"]["creationTimestamp"], "2026-11-23T00:04:04Z");
        assert_ne!(obj["metadata"]["uid"], "client-chosen");
        assert_eq!(obj["metadata"]["uid"].as_str().unwrap().len(), 36);
        assert!(rv(&obj).parse::<i64>().unwrap() > 0);
        let again = f
            .registry
            .create(res, Some("default"), sa("example-sa"), false)
            .await;
        assert!(matches!(again, Err(RegistryError::AlreadyExists { .. })));
    }

    #[tokio::test]
    async fn generate_name_and_required_name() {
        let f = fixture().await;
        let res = resources::core("configmaps");
        let obj = f
            .registry
            .create(
                res,
                Some("default"),
                json!({"metadata": {"generateName": "cm-"}}),
                false,
            )
            .await
            .unwrap();
        let name = obj["metadata"]["name"].as_str().unwrap();
        assert!(name.starts_with("cm-") && name.len() == 8, "{name}");
        let err = f
            .registry
            .create(res, Some("default"), json!({"metadata": {}}), false)
            .await
            .unwrap_err();
        match err {
            RegistryError::Invalid { causes, .. } => {
                assert_eq!(
                    causes[0].to_string(),
                    "metadata.name: Required value: name or generateName is required"
                )
            }
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn namespaced_objects_need_their_namespace() {
        let f = fixture().await;
        let res = resources::core("serviceaccounts");
        let err = f
            .registry
            .create(res, Some("nope"), sa("a"), false)
            .await
            .unwrap_err();
        assert!(
            matches!(err, RegistryError::NotFound { ref resource, ref name } if resource == "namespaces" && name == "nope")
        );
        let mut wrong = sa("a");
        wrong["metadata"]["namespace"] = json!("kube-system");
        assert!(matches!(
            f.registry.create(res, Some("default"), wrong, false).await,
            Err(RegistryError::BadRequest(_))
        ));
    }

    #[tokio::test]
    async fn updates_are_optimistic_and_noops_keep_the_revision() {
        let f = fixture().await;
        let res = resources::core("serviceaccounts");
        let created = f
            .registry
            .create(res, Some("default"), sa("a"), false)
            .await
            .unwrap();
        let mut stale = created.clone();
        let (updated, changed) = f
            .registry
            .update_with(res, Some("default"), "a", None, false, |cur| {
                let mut next = cur.clone();
                next["metadata"]["labels"] = json!({"team": "blue"});
                Ok(next)
            })
            .await
            .unwrap();
        assert!(changed);
        assert_ne!(rv(&updated), rv(&created));
        // A write based on the old resourceVersion loses.
        stale["metadata"]["labels"] = json!({"team": "red"});
        let err = f
            .registry
            .update_with(
                res,
                Some("default"),
                "a",
                None,
                false,
                |_| Ok(stale.clone()),
            )
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("Operation cannot be fulfilled on serviceaccounts \"a\""),
            "{err}"
        );
        // Writing back what is stored changes nothing, not even the resourceVersion.
        let (same, changed) = f
            .registry
            .update_with(
                res,
                Some("default"),
                "a",
                None,
                false,
                |cur| Ok(cur.clone()),
            )
            .await
            .unwrap();
        assert!(!changed);
        assert_eq!(rv(&same), rv(&updated));
        // uid and creationTimestamp cannot be rewritten; a foreign uid is a precondition failure.
        let err = f
            .registry
            .update_with(res, Some("default"), "a", None, false, |cur| {
                let mut next = cur.clone();
                next["metadata"]["uid"] = json!("other");
                Ok(next)
            })
            .await
            .unwrap_err();
        assert!(matches!(err, RegistryError::Conflict { .. }));
    }

    #[tokio::test]
    async fn status_and_spec_are_written_separately() {
        let f = fixture().await;
        let res = resources::core("pods");
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "c", "image": "nginx"}]}});
        f.registry
            .create(res, Some("default"), pod, false)
            .await
            .unwrap();
        let (obj, _) = f
            .registry
            .update_with(res, Some("default"), "p", None, false, |cur| {
                let mut next = cur.clone();
                next["status"]["phase"] = json!("Running");
                next["metadata"]["labels"] = json!({"a": "b"});
                Ok(next)
            })
            .await
            .unwrap();
        assert_eq!(
            obj["status"]["phase"], "Pending",
            "main resource may not change status"
        );
        assert_eq!(obj["metadata"]["labels"]["a"], "b");
        let (obj, _) = f
            .registry
            .update_with(res, Some("default"), "p", Some("status"), false, |cur| {
                let mut next = cur.clone();
                next["status"]["phase"] = json!("Running");
                next["metadata"]["labels"] = json!({});
                Ok(next)
            })
            .await
            .unwrap();
        assert_eq!(obj["status"]["phase"], "Running");
        assert_eq!(
            obj["metadata"]["labels"]["a"], "b",
            "status writes keep metadata"
        );
        assert_eq!(obj["metadata"]["generation"], 1);
    }

    #[tokio::test]
    async fn lists_page_at_one_revision() {
        let f = fixture().await;
        let res = resources::core("configmaps");
        for i in 0..5 {
            let obj = json!({"metadata": {"name": format!("cm-{i}"), "labels": {"even": (i % 2 == 0).to_string()}}});
            f.registry
                .create(res, Some("default"), obj, false)
                .await
                .unwrap();
        }
        let opts = ListOptions {
            limit: 2,
            ..Default::default()
        };
        let first = f.registry.list(res, Some("default"), &opts).await.unwrap();
        assert_eq!(first.items.len(), 2);
        let token = first.continue_token.clone().unwrap();
        // A create after the first page is not seen by the continuation.
        f.registry
            .create(
                res,
                Some("default"),
                json!({"metadata": {"name": "cm-9"}}),
                false,
            )
            .await
            .unwrap();
        let mut names = Vec::new();
        let mut next = Some(token);
        while let Some(t) = next {
            let page = f
                .registry
                .list(
                    res,
                    Some("default"),
                    &ListOptions {
                        limit: 2,
                        continue_token: Some(t),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            assert_eq!(page.resource_version, first.resource_version);
            names.extend(
                page.items
                    .iter()
                    .map(|o| o["metadata"]["name"].as_str().unwrap().to_string()),
            );
            next = page.continue_token;
        }
        assert_eq!(names, vec!["cm-2", "cm-3", "cm-4"]);
        let even = ListOptions {
            label_selector: selectors::LabelSelector::parse("even=true").unwrap(),
            limit: 1,
            ..Default::default()
        };
        let page = f.registry.list(res, Some("default"), &even).await.unwrap();
        assert_eq!(page.items[0]["metadata"]["name"], "cm-0");
        let all = f
            .registry
            .list(res, None, &ListOptions::default())
            .await
            .unwrap();
        assert_eq!(all.items.len(), 6);
        assert!(matches!(
            f.registry
                .list(
                    res,
                    None,
                    &ListOptions {
                        continue_token: Some("garbage".into()),
                        ..Default::default()
                    }
                )
                .await,
            Err(RegistryError::BadRequest(_))
        ));
    }

    #[tokio::test]
    async fn finalizers_and_graceful_pods_delay_deletion() {
        let f = fixture().await;
        let cm = resources::core("configmaps");
        let body = json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}});
        f.registry
            .create(cm, Some("default"), body, false)
            .await
            .unwrap();
        let pending = f
            .registry
            .delete(cm, Some("default"), "held", &DeleteOptions::default())
            .await
            .unwrap();
        let Deleted::Pending(obj) = pending else {
            panic!("expected pending")
        };
        assert_eq!(obj["metadata"]["deletionTimestamp"], "2026-11-23T00:04:04Z");
        f.registry
            .update_with(cm, Some("default"), "held", None, false, |cur| {
                let mut next = cur.clone();
                next["metadata"]["finalizers"] = json!([]);
                Ok(next)
            })
            .await
            .unwrap();
        assert!(matches!(
            f.registry.get(cm, Some("default"), "held").await,
            Err(RegistryError::NotFound { .. })
        ));

        let pods = resources::core("pods");
        let pod = |name: &str, node: Option<&str>| {
            let mut p = json!({"metadata": {"name": name}, "spec": {"containers": [{"name": "c", "image": "i"}]}});
            if let Some(n) = node {
                p["spec"]["nodeName"] = json!(n);
            }
            p
        };
        f.registry
            .create(pods, Some("default"), pod("unscheduled", None), false)
            .await
            .unwrap();
        let gone = f
            .registry
            .delete(
                pods,
                Some("default"),
                "unscheduled",
                &DeleteOptions::default(),
            )
            .await
            .unwrap();
        assert!(
            matches!(gone, Deleted::Now(_)),
            "an unscheduled pod goes at once"
        );
        f.registry
            .create(pods, Some("default"), pod("running", Some("node-a")), false)
            .await
            .unwrap();
        let Deleted::Pending(p) = f
            .registry
            .delete(pods, Some("default"), "running", &DeleteOptions::default())
            .await
            .unwrap()
        else {
            panic!("a scheduled pod gets its grace period")
        };
        assert_eq!(p["metadata"]["deletionGracePeriodSeconds"], 30);
        assert_eq!(p["metadata"]["deletionTimestamp"], "2026-11-23T00:04:34Z");
        let shorter = DeleteOptions {
            grace_period_seconds: Some(0),
            ..Default::default()
        };
        assert!(matches!(
            f.registry
                .delete(pods, Some("default"), "running", &shorter)
                .await
                .unwrap(),
            Deleted::Now(_)
        ));
    }

    #[tokio::test]
    async fn delete_preconditions() {
        let f = fixture().await;
        let ns = resources::core("namespaces");
        let cm = resources::core("configmaps");
        f.registry
            .create(ns, None, json!({"metadata": {"name": "x"}}), false)
            .await
            .unwrap();
        let created = f
            .registry
            .create(cm, Some("x"), json!({"metadata": {"name": "c"}}), false)
            .await
            .unwrap();
        let wrong = DeleteOptions {
            precondition_uid: Some("nope".into()),
            ..Default::default()
        };
        let err = f
            .registry
            .delete(cm, Some("x"), "c", &wrong)
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("Precondition failed: UID in precondition: nope"),
            "{err}"
        );
        let right = DeleteOptions {
            precondition_resource_version: Some(rv(&created).to_string()),
            ..Default::default()
        };
        f.registry
            .create(cm, Some("x"), json!({"metadata": {"name": "d"}}), false)
            .await
            .unwrap();
        f.registry.delete(cm, Some("x"), "c", &right).await.unwrap();
    }

    #[tokio::test]
    async fn namespaces_terminate_and_go_once_finalized() {
        let f = fixture().await;
        let ns = resources::core("namespaces");
        let cm = resources::core("configmaps");
        let created = f
            .registry
            .create(
                ns,
                None,
                json!({"metadata": {"name": "x"}, "spec": {"finalizers": ["example.com/a"]}}),
                false,
            )
            .await
            .unwrap();
        assert_eq!(
            created["spec"]["finalizers"],
            json!(["example.com/a", "kubernetes"]),
            "the kubernetes finalizer is always added"
        );
        f.registry
            .create(cm, Some("x"), json!({"metadata": {"name": "d"}}), false)
            .await
            .unwrap();
        // A DELETE marks it; its content stays for the namespace controller.
        let Deleted::Pending(marked) = f
            .registry
            .delete(ns, None, "x", &DeleteOptions::default())
            .await
            .unwrap()
        else {
            panic!("a namespace is not deleted at once")
        };
        assert_eq!(marked["status"]["phase"], "Terminating");
        assert!(marked["metadata"]["deletionTimestamp"].is_string());
        assert!(f.registry.get(cm, Some("x"), "d").await.is_ok());
        // Creates are refused, with the object's name (or generateName) in the error.
        for (body, name) in [
            (json!({"metadata": {"name": "late"}}), "late"),
            (json!({"metadata": {"generateName": "gen-"}}), "gen-"),
        ] {
            match f.registry.create(cm, Some("x"), body, false).await {
                Err(RegistryError::NamespaceTerminating {
                    resource,
                    name: n,
                    namespace,
                }) => assert_eq!(
                    (resource.as_str(), n.as_str(), namespace.as_str()),
                    ("configmaps", name, "x")
                ),
                other => panic!("expected NamespaceTerminating, got {other:?}"),
            }
        }
        // Updates of its content still work; a second DELETE changes nothing.
        let again = f
            .registry
            .delete(ns, None, "x", &DeleteOptions::default())
            .await
            .unwrap();
        assert!(matches!(again, Deleted::Pending(ref o) if rv(o) == rv(&marked)));
        // A main-resource write cannot drop spec.finalizers; only finalize can.
        let (kept, _) = f
            .registry
            .update_with(ns, None, "x", None, false, |cur| {
                let mut next = cur.clone();
                next["spec"]["finalizers"] = json!([]);
                Ok(next)
            })
            .await
            .unwrap();
        assert_eq!(
            kept["spec"]["finalizers"],
            json!(["example.com/a", "kubernetes"])
        );
        let finalize = |keep: Value| {
            let registry = f.registry.clone();
            async move {
                registry
                    .update_with(ns, None, "x", Some("finalize"), false, move |cur| {
                        let mut next = cur.clone();
                        next["spec"]["finalizers"] = keep.clone();
                        next["metadata"]["labels"] = json!({"ignored": "yes"});
                        Ok(next)
                    })
                    .await
            }
        };
        let (one_left, _) = finalize(json!(["example.com/a"])).await.unwrap();
        assert_eq!(one_left["spec"]["finalizers"], json!(["example.com/a"]));
        assert!(one_left["metadata"]["labels"].get("ignored").is_none());
        finalize(json!([])).await.unwrap();
        assert!(matches!(
            f.registry.get(ns, None, "x").await,
            Err(RegistryError::NotFound { .. })
        ));
        // The namespaces Kubernetes never deletes.
        for name in ["default", "kube-system", "kube-public"] {
            let err = f
                .registry
                .delete(ns, None, name, &DeleteOptions::default())
                .await
                .unwrap_err();
            assert_eq!(err.to_string(), "this namespace may not be deleted");
        }
    }

    #[tokio::test]
    async fn watch_replays_filters_and_expires() {
        let f = fixture().await;
        let res = resources::core("serviceaccounts");
        f.registry
            .create(res, Some("default"), sa("before"), false)
            .await
            .unwrap();
        let opts = ListOptions {
            label_selector: selectors::LabelSelector::parse("team=blue").unwrap(),
            ..Default::default()
        };
        let mut all = f
            .registry
            .watch(res, Some("default"), &ListOptions::default())
            .await
            .unwrap();
        let mut blue = f.registry.watch(res, Some("default"), &opts).await.unwrap();
        let (t, o) = all.next().await.unwrap().unwrap();
        assert_eq!(
            (t, o["metadata"]["name"].as_str()),
            (EventType::Added, Some("before"))
        );
        let label = |v: &'static str| {
            move |cur: &Value| {
                let mut next = cur.clone();
                next["metadata"]["labels"] = json!({"team": v});
                Ok(next)
            }
        };
        f.registry
            .update_with(res, Some("default"), "before", None, false, label("blue"))
            .await
            .unwrap();
        f.registry
            .update_with(res, Some("default"), "before", None, false, label("red"))
            .await
            .unwrap();
        let (t, _) = all.next().await.unwrap().unwrap();
        assert_eq!(t, EventType::Modified);
        // Entering and leaving the selection are ADDED and DELETED for the filtered watcher.
        let (t, _) = blue.next().await.unwrap().unwrap();
        assert_eq!(t, EventType::Added);
        let (t, o) = blue.next().await.unwrap().unwrap();
        assert_eq!(
            (t, o["metadata"]["labels"]["team"].as_str()),
            (EventType::Deleted, Some("red"))
        );
        // Resuming from a compacted revision is 410 Expired.
        let current = f.registry.current_revision().await.unwrap();
        f.store.compact(current).await.unwrap();
        let old = ListOptions {
            resource_version: Some("1".into()),
            ..Default::default()
        };
        match f.registry.watch(res, Some("default"), &old).await {
            Err(RegistryError::Expired(m)) => {
                assert!(m.starts_with("too old resource version: 1"), "{m}")
            }
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("a compacted revision must not be watchable"),
        }
    }
}
