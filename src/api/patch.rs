//! The PATCH content types of the Kubernetes API, applied to JSON objects: RFC 6902 JSON
//! patch, RFC 7386 merge patch, Kubernetes' strategic merge patch, and server-side apply.
//!
//! Owns: decoding a PATCH body by its content type and computing the patched object, plus the
//! code, reason and message kube-apiserver would answer for each failure. Must not: read or
//! write the store, or check that name/namespace/uid stay unchanged (the caller does that).
//!
//! Mirrors kube-apiserver's `staging/src/k8s.io/apiserver/pkg/endpoints/handlers/patch.go`
//! (decoding, error codes) and apimachinery's `pkg/util/strategicpatch/patch.go` (merge rules,
//! list order). Deliberate simplifications:
//! * **Server-side apply has no field managers.** An `application/apply-patch+yaml` body is
//!   applied like a strategic merge patch onto the live object (or onto `{}` when the caller
//!   passes `Value::Null` to create). There are no conflicts, and fields left out of an apply
//!   body are not removed.
//! * Patch metadata comes from a static table of core/v1 struct tags, not reflection; lists it
//!   does not name are replaced, as in a merge patch. `metadata` lists apply to every kind.
//! * Where the live object has no value, Go copies the patch value raw and its typed decode
//!   later drops `$patch` keys and nulls; here the value is normalised (directives applied, nulls
//!   dropped). `$patch: delete` on a map removes the field (Go leaves `{}`, which the typed round
//!   trip drops for map fields). `$deleteFromPrimitiveList/<f>` only ever removes items: Go
//!   sets `f` to the deletion list when `f` is absent or has no merge strategy. A patch list that
//!   contradicts its `$setElementOrder` list is not rejected: the order list wins.

use std::collections::{HashMap, HashSet};

use http::StatusCode;
use serde::Deserialize;
use serde_json::{Map, Value};

/// Deepest nesting accepted in a patch or a patched object. It bounds recursion (no stack
/// overflow) and keeps stored objects below serde_json's own parse limit of 128.
pub(crate) const MAX_DEPTH: usize = 100;
/// `maxJSONPatchOperations` in kube-apiserver's `patch.go`.
const MAX_JSON_PATCH_OPERATIONS: usize = 10_000;
/// Bytes all `copy` operations of one JSON patch may add: kube-apiserver sets
/// `jsonpatch.AccumulatedCopySizeLimit` to its request body limit (3 MiB) against copy bombs.
const MAX_COPIED_BYTES: usize = 3 * 1024 * 1024;

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const DELETE_FROM_PRIMITIVE_LIST: &str = "$deleteFromPrimitiveList";
const SET_ELEMENT_ORDER: &str = "$setElementOrder";
// mergepatch/errors.go
const ERR_PRIMITIVE_LIST: &str = "invalid patch format of primitive list";
const ERR_RETAIN_KEYS: &str = "invalid patch format of retainKeys";
const ERR_SET_ELEMENT_ORDER: &str = "invalid patch format of setElementOrder list";
const ERR_LIST_OF_LISTS: &str = "lists of lists are not supported";

/// The PATCH content types kube-apiserver accepts for built-in resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PatchType {
    Json,
    Merge,
    StrategicMerge,
    Apply,
}

impl PatchType {
    /// In the order kube-apiserver lists them in its 415 message.
    pub(crate) const ALL: [PatchType; 4] = [
        PatchType::Json,
        PatchType::Merge,
        PatchType::StrategicMerge,
        PatchType::Apply,
    ];

    pub(crate) fn media_type(self) -> &'static str {
        match self {
            PatchType::Json => "application/json-patch+json",
            PatchType::Merge => "application/merge-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }

    /// The patch type of a `Content-Type` header; parameters such as `;charset=utf-8` are
    /// ignored, as `PatchResource` cuts them off at the first `;`.
    pub(crate) fn from_content_type(ct: &str) -> Option<PatchType> {
        let essence = ct.split_once(';').map_or(ct, |(e, _)| e).trim();
        Self::ALL
            .into_iter()
            .find(|t| t.media_type().eq_ignore_ascii_case(essence))
    }
}

/// Why a patch could not be applied. The Display text is the detail for logs;
/// [`PatchError::status_message`] is what kube-apiserver puts in its Status.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PatchError {
    /// The body does not decode (400 BadRequest), worded like kube-apiserver.
    #[error("{0}")]
    BadRequest(String),
    /// The patch decoded but does not apply: a failing `test`, a missing path, a list of
    /// lists. kube-apiserver answers 422 Invalid with a generic message.
    #[error("{0}")]
    Unprocessable(String),
    /// More JSON patch operations than kube-apiserver allows (413).
    #[error(
        "The allowed maximum operations in a JSON patch is {MAX_JSON_PATCH_OPERATIONS}, got {0}"
    )]
    TooManyOperations(usize),
    /// The patched document is not a JSON object (422 Invalid).
    #[error("the patched document is {0}, not an object")]
    NotAnObject(&'static str),
    /// The patch or the patched object nests deeper than [`MAX_DEPTH`] (400 BadRequest).
    #[error("the patch or the patched object nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    /// A strategic-merge failure kube-apiserver returns as an untyped error, which it answers
    /// with 500 and an empty reason (e.g. a list item without its merge key).
    #[error("{0}")]
    Strategic(String),
}

impl PatchError {
    pub(crate) fn status_code(&self) -> StatusCode {
        match self {
            PatchError::BadRequest(_) | PatchError::TooDeep => StatusCode::BAD_REQUEST,
            PatchError::Unprocessable(_) | PatchError::NotAnObject(_) => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            PatchError::TooManyOperations(_) => StatusCode::PAYLOAD_TOO_LARGE,
            PatchError::Strategic(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The Status `reason`; `""` is metav1.StatusReasonUnknown.
    pub(crate) fn reason(&self) -> &'static str {
        match self {
            PatchError::BadRequest(_) | PatchError::TooDeep => "BadRequest",
            PatchError::Unprocessable(_) | PatchError::NotAnObject(_) => "Invalid",
            PatchError::TooManyOperations(_) => "RequestEntityTooLarge",
            PatchError::Strategic(_) => "",
        }
    }

    /// The Status `message` kube-apiserver sends. JSON-patch failures go through
    /// `NewGenericServerResponse(422, …, isUnexpectedResponse=false)`, which drops the detail.
    pub(crate) fn status_message(&self) -> String {
        match self {
            PatchError::Unprocessable(_) => {
                "the server rejected our request due to an error in our request".to_owned()
            }
            PatchError::TooManyOperations(_) => format!("Request entity too large: {self}"),
            PatchError::NotAnObject(got) => {
                format!(" \"\" is invalid: patch: Invalid value: \"{got}\": not an object")
            }
            _ => self.to_string(),
        }
    }
}

/// Applies `patch_body` of `patch_type` to `original`, an object of Kind `kind`. For
/// strategic merge and apply, a `Value::Null` original stands for `{}` (apply's create).
pub(crate) fn apply(
    kind: &str,
    original: &Value,
    patch_type: PatchType,
    patch_body: &[u8],
) -> Result<Value, PatchError> {
    let patched = match patch_type {
        PatchType::Json => json_patch(original, patch_body)?,
        PatchType::Merge => merge_patch(original, patch_body)?,
        PatchType::StrategicMerge => {
            let patch = serde_json::from_slice(patch_body).map_err(|e| e.to_string());
            strategic(
                kind,
                original,
                patch.and_then(into_map).map_err(PatchError::BadRequest)?,
            )?
        }
        PatchType::Apply => strategic(kind, original, decode_apply(patch_body)?)?,
    };
    if !patched.is_object() {
        return Err(PatchError::NotAnObject(go_kind(&patched)));
    }
    if depth(&patched) > MAX_DEPTH {
        return Err(PatchError::TooDeep);
    }
    Ok(patched)
}

/// Go's name for a JSON value's kind, as in `json: cannot unmarshal array into …`.
fn go_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// Nesting depth without recursion: a scalar is 0, `{}` is 1, `{"a":[]}` is 2.
fn depth(v: &Value) -> usize {
    let mut max = 0;
    let mut stack = vec![(v, 1)];
    while let Some((v, d)) = stack.pop() {
        match v {
            Value::Object(m) => {
                max = max.max(d);
                stack.extend(m.values().map(|c| (c, d + 1)));
            }
            Value::Array(a) => {
                max = max.max(d);
                stack.extend(a.iter().map(|c| (c, d + 1)));
            }
            _ => {}
        }
    }
    max
}

fn not_a_map(v: &Value) -> String {
    let kind = go_kind(v);
    format!("json: cannot unmarshal {kind} into Go value of type map[string]interface {{}}")
}

/// A decoded body as a patch object; `null` is an empty patch, as Go's unmarshal into a map
/// treats it.
fn into_map(v: Value) -> Result<Map<String, Value>, String> {
    match v {
        Value::Object(m) => Ok(m),
        Value::Null => Ok(Map::new()),
        other => Err(not_a_map(&other)),
    }
}

/// The fields kube-apiserver's strict decode of a JSON patch checks (`jsonPatchOp`).
#[derive(Deserialize)]
#[allow(dead_code)] // read only for the type check during decoding
struct RawOp {
    op: Option<String>,
    path: Option<String>,
    from: Option<String>,
}

fn json_patch(original: &Value, body: &[u8]) -> Result<Value, PatchError> {
    let raw: Vec<RawOp> = serde_json::from_slice(body)
        .map_err(|e| PatchError::BadRequest(format!("error decoding patch: {e}")))?;
    if raw.len() > MAX_JSON_PATCH_OPERATIONS {
        return Err(PatchError::TooManyOperations(raw.len()));
    }
    // Unknown ops and bad pointers surface in evanphx/json-patch only when applied (422).
    let ops: json_patch::Patch =
        serde_json::from_slice(body).map_err(|e| PatchError::Unprocessable(e.to_string()))?;
    let mut doc = original.clone();
    let mut depth_bound = depth(&doc);
    let mut copied = 0usize;
    for op in ops.iter() {
        use json_patch::PatchOperation as Op;
        // A bound on the document's depth after this op, so that no intermediate document
        // can nest deep enough to overflow the stack when cloned or dropped.
        depth_bound = match op {
            Op::Add(json_patch::AddOperation { path, value })
            | Op::Replace(json_patch::ReplaceOperation { path, value }) => {
                depth_bound.max(path.count() + depth(value))
            }
            Op::Move(o) => {
                depth_bound.max(o.path.count() + depth_bound.saturating_sub(o.from.count()))
            }
            Op::Copy(o) => {
                // Serialising a Value cannot fail; the buffer is bounded by the limit checked here.
                let src = doc.pointer(o.from.as_str()).map(serde_json::to_vec);
                copied += src.and_then(Result::ok).map_or(0, |b| b.len());
                if copied > MAX_COPIED_BYTES {
                    return Err(PatchError::Unprocessable(format!(
                        "Unable to copy, would accumulate more than {MAX_COPIED_BYTES} bytes"
                    )));
                }
                depth_bound.max(o.path.count() + depth_bound.saturating_sub(o.from.count()))
            }
            Op::Remove(_) | Op::Test(_) => depth_bound,
        };
        if depth_bound > MAX_DEPTH {
            return Err(PatchError::TooDeep);
        }
        // `patch_unsafe` skips the undo log (and its `unreachable!`): on error the copy is dropped.
        json_patch::patch_unsafe(&mut doc, std::slice::from_ref(op))
            .map_err(|e| PatchError::Unprocessable(e.to_string()))?;
    }
    Ok(doc)
}

fn merge_patch(original: &Value, body: &[u8]) -> Result<Value, PatchError> {
    let bad = |m: String| PatchError::BadRequest(format!("error decoding patch: {m}"));
    let patch: Value = serde_json::from_slice(body).map_err(|e| bad(e.to_string()))?;
    if !patch.is_object() && !patch.is_null() {
        return Err(bad(not_a_map(&patch)));
    }
    if depth(&patch) > MAX_DEPTH {
        return Err(PatchError::TooDeep);
    }
    let mut doc = original.clone();
    json_patch::merge(&mut doc, &patch);
    Ok(doc)
}

/// An apply body: JSON (valid YAML) first, then YAML. Like `yaml.Unmarshal` into a map, an
/// empty document is an empty object.
fn decode_apply(body: &[u8]) -> Result<Map<String, Value>, PatchError> {
    let bad = |m: String| PatchError::BadRequest(format!("error decoding YAML: {m}"));
    let value = match serde_json::from_slice::<Value>(body) {
        Ok(v) => v,
        Err(_) if body.iter().all(u8::is_ascii_whitespace) => Value::Null,
        Err(_) => serde_saphyr::from_slice::<Value>(body).map_err(|e| bad(e.to_string()))?,
    };
    into_map(value).map_err(bad)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListStrategy {
    /// No `patchStrategy` tag: the patch's list replaces the live one.
    Replace,
    /// `patchStrategy:"merge" patchMergeKey:"<key>"`: items merge by that key.
    MergeByKey(&'static str),
    /// `patchStrategy:"merge"` on a list of primitives: a union.
    Union,
}

/// (Kind, or "" for every kind; JSON path of the list, items adding no segment; strategy),
/// from the struct tags in `staging/src/k8s.io/api/core/v1/types.go` and
/// `apimachinery/pkg/apis/meta/v1/types.go`. Lists not named here have no patch tags, e.g.
/// ServiceAccount.imagePullSecrets, tolerations, readinessGates, containerStatuses,
/// Node taints and images, Namespace spec.finalizers.
const LISTS: &[(&str, &str, ListStrategy)] = {
    use ListStrategy::{MergeByKey as By, Union};
    &[
        ("", "metadata.finalizers", Union),
        ("", "metadata.ownerReferences", By("uid")),
        ("ServiceAccount", "secrets", By("name")),
        ("Pod", "spec.volumes", By("name")), // "merge,retainKeys"
        ("Pod", "spec.initContainers", By("name")),
        ("Pod", "spec.containers", By("name")),
        ("Pod", "spec.ephemeralContainers", By("name")),
        ("Pod", "spec.imagePullSecrets", By("name")),
        ("Pod", "spec.hostAliases", By("ip")),
        ("Pod", "spec.topologySpreadConstraints", By("topologyKey")),
        ("Pod", "spec.resourceClaims", By("name")), // "merge,retainKeys"
        ("Pod", "spec.schedulingGates", By("name")),
        ("Pod", "status.conditions", By("type")),
        ("Pod", "status.podIPs", By("ip")),
        ("Pod", "status.hostIPs", By("ip")),
        ("Pod", "status.resourceClaimStatuses", By("name")), // "merge,retainKeys"
        ("Node", "spec.podCIDRs", Union),
        ("Node", "status.conditions", By("type")),
        ("Node", "status.addresses", By("type")),
        ("Namespace", "status.conditions", By("type")),
    ]
};

/// Lists inside Container and EphemeralContainerCommon, which carry the same tags.
const CONTAINER_LISTS: &[(&str, ListStrategy)] = &[
    ("ports", ListStrategy::MergeByKey("containerPort")),
    ("env", ListStrategy::MergeByKey("name")),
    ("volumeMounts", ListStrategy::MergeByKey("mountPath")),
    ("volumeDevices", ListStrategy::MergeByKey("devicePath")),
];

fn list_strategy(kind: &str, path: &str) -> ListStrategy {
    if let Some((_, _, s)) = LISTS
        .iter()
        .find(|(k, p, _)| (k.is_empty() || *k == kind) && *p == path)
    {
        return *s;
    }
    if kind == "Pod" {
        for prefix in [
            "spec.containers.",
            "spec.initContainers.",
            "spec.ephemeralContainers.",
        ] {
            if let Some((_, s)) = path
                .strip_prefix(prefix)
                .and_then(|f| CONTAINER_LISTS.iter().find(|(name, _)| *name == f))
            {
                return *s;
            }
        }
    }
    ListStrategy::Replace
}

/// Lists whose `patchStrategy` tag also has `retainKeys` (the `"merge,retainKeys"` rows above).
const RETAIN_KEYS_LISTS: &[(&str, &str)] =
    &[("Pod", "spec.volumes"), ("Pod", "spec.resourceClaims")];

/// The `x-kubernetes-patch-strategy` and `x-kubernetes-patch-merge-key` OpenAPI extensions
/// of the list at `path` in `kind`, from the same table the server merges by. kubectl builds
/// its strategic merge patches from them once `/openapi/v2` is served; without them it
/// would treat such a list as atomic and never ask for an item's removal.
pub(crate) fn patch_extensions(
    kind: &str,
    path: &str,
) -> Option<(&'static str, Option<&'static str>)> {
    let retain = RETAIN_KEYS_LISTS.contains(&(kind, path));
    match list_strategy(kind, path) {
        ListStrategy::Replace => None,
        ListStrategy::MergeByKey(key) if retain => Some(("merge,retainKeys", Some(key))),
        ListStrategy::MergeByKey(key) => Some(("merge", Some(key))),
        ListStrategy::Union => Some(("merge", None)),
    }
}

fn strategic(kind: &str, original: &Value, patch: Map<String, Value>) -> Result<Value, PatchError> {
    // The live object is always an object; anything else (Null for apply's create) is `{}`.
    let base = original.as_object().cloned().unwrap_or_default();
    let merged = (Smp { kind }).merge_map("", base, patch, 1)?;
    Ok(Value::Object(merged.unwrap_or_default()))
}

/// The strategic merge of one patch into one object of Kind `kind`.
struct Smp<'k> {
    kind: &'k str,
}

fn child_path(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// `<prefix>/<field>` → `field`, as `extractKey` splits directive keys.
fn directive_field<'a>(key: &'a str, prefix: &str) -> Option<&'a str> {
    key.strip_prefix(prefix)?.strip_prefix('/')
}

/// Identity of a list item: its merge key's value for maps (missing = null, as Go's nil),
/// the value itself for primitives.
fn item_id(v: &Value, key: Option<&str>) -> String {
    match (key, v) {
        (Some(k), Value::Object(m)) => m.get(k).unwrap_or(&Value::Null).to_string(),
        _ => v.to_string(),
    }
}

fn no_merge_key(m: &Map<String, Value>, key: &str) -> PatchError {
    let m = Value::Object(m.clone());
    PatchError::Strategic(format!(
        "map: {m} does not contain declared merge key: {key}"
    ))
}

impl Smp<'_> {
    /// `mergeMap`: merges `patch` into `original`; `None` is `$patch: delete`.
    fn merge_map(
        &self,
        path: &str,
        mut original: Map<String, Value>,
        mut patch: Map<String, Value>,
        depth: usize,
    ) -> Result<Option<Map<String, Value>>, PatchError> {
        if depth > MAX_DEPTH {
            return Err(PatchError::TooDeep);
        }
        if let Some(directive) = patch.shift_remove(DIRECTIVE) {
            return match directive.as_str() {
                // The patch minus `$patch` replaces the map; merged onto {} to apply what it holds.
                Some("replace") => self.merge_map(path, Map::new(), patch, depth + 1),
                Some("delete") => Ok(None),
                // `handleDirectiveInMergeMap` rejects everything else, `merge` included.
                _ => Err(PatchError::Strategic(format!(
                    "unknown patch type: {directive} in map: {}",
                    Value::Object(patch)
                ))),
            };
        }
        retain_keys(&mut original, &mut patch)?;
        self.set_element_order(path, &mut original, &mut patch, depth)?;
        for (key, patch_value) in patch {
            if key.starts_with(DELETE_FROM_PRIMITIVE_LIST) {
                let field = directive_field(&key, DELETE_FROM_PRIMITIVE_LIST);
                let (Some(field), Value::Array(gone)) = (field, patch_value) else {
                    return Err(PatchError::BadRequest(ERR_PRIMITIVE_LIST.to_owned()));
                };
                let gone: HashSet<String> = gone.iter().map(|v| item_id(v, None)).collect();
                if let Some(Value::Array(items)) = original.get_mut(field) {
                    items.retain(|v| !gone.contains(&item_id(v, None)));
                }
                continue;
            }
            if patch_value.is_null() {
                original.shift_remove(&key);
                continue;
            }
            let child = child_path(path, &key);
            let merged = match (original.get_mut(&key).map(Value::take), patch_value) {
                (Some(Value::Object(o)), Value::Object(p)) => {
                    self.merge_map(&child, o, p, depth + 1)?.map(Value::Object)
                }
                (Some(Value::Array(o)), Value::Array(p)) => {
                    Some(Value::Array(self.merge_list(&child, o, p, depth + 1)?))
                }
                // Absent, or a different type: the patch value wins (`mergeMap`).
                (_, p) => self.normalize(&child, p, depth + 1)?,
            };
            match merged {
                Some(v) => original.insert(key, v),
                None => original.shift_remove(&key),
            };
        }
        Ok(Some(original))
    }

    /// A patch value placed where the live object has none: directives applied, nulls dropped.
    fn normalize(&self, path: &str, v: Value, depth: usize) -> Result<Option<Value>, PatchError> {
        Ok(match v {
            Value::Object(p) => self
                .merge_map(path, Map::new(), p, depth)?
                .map(Value::Object),
            Value::Array(p) => Some(Value::Array(self.merge_list(path, Vec::new(), p, depth)?)),
            scalar => Some(scalar),
        })
    }

    /// `mergeSliceHandler` + `mergeSlice`.
    fn merge_list(
        &self,
        path: &str,
        original: Vec<Value>,
        patch: Vec<Value>,
        depth: usize,
    ) -> Result<Vec<Value>, PatchError> {
        if depth > MAX_DEPTH {
            return Err(PatchError::TooDeep);
        }
        let strategy = list_strategy(self.kind, path);
        if strategy == ListStrategy::Replace {
            let mut out = Vec::with_capacity(patch.len());
            for item in patch {
                match item {
                    Value::Object(_) => out.extend(self.normalize(path, item, depth + 1)?),
                    other => out.push(other),
                }
            }
            return Ok(out);
        }
        if original.is_empty() && patch.is_empty() {
            return Ok(original);
        }
        let all_objects = element_kind(&original, &patch)?;
        match (all_objects, strategy) {
            (true, ListStrategy::MergeByKey(key)) => {
                self.merge_object_list(path, original, patch, key, depth)
            }
            (true, _) => Err(PatchError::Strategic(format!(
                "cannot merge lists without merge key for {path}"
            ))),
            (false, _) => {
                let mut seen = HashSet::new();
                let merged: Vec<Value> = original
                    .iter()
                    .chain(patch.iter())
                    .filter(|v| seen.insert(item_id(v, None)))
                    .cloned()
                    .collect();
                let ids = |l: &[Value]| l.iter().map(|v| item_id(v, None)).collect::<Vec<_>>();
                Ok(order_by(merged, &ids(&patch), &ids(&original), None))
            }
        }
    }

    /// `mergeSliceWithSpecialElements` + `mergeSliceWithoutSpecialElements` + ordering.
    fn merge_object_list(
        &self,
        path: &str,
        mut original: Vec<Value>,
        patch: Vec<Value>,
        key: &'static str,
        depth: usize,
    ) -> Result<Vec<Value>, PatchError> {
        let mut plain = Vec::with_capacity(patch.len());
        let mut replace = false;
        for item in patch {
            let Value::Object(m) = item else {
                return Err(PatchError::Strategic(format!("{path}: expected a map")));
            };
            match m.get(DIRECTIVE).map(|d| d.as_str()) {
                None => plain.push(m),
                Some(Some("delete")) => {
                    let id = m.get(key).ok_or_else(|| no_merge_key(&m, key))?;
                    original.retain(|o| o.get(key) != Some(id));
                }
                Some(Some("replace")) => replace = true,
                Some(Some("merge")) => {
                    return Err(PatchError::Strategic(
                        "merging lists cannot yet be specified in the patch".to_owned(),
                    ));
                }
                Some(_) => {
                    let d = m.get(DIRECTIVE).cloned().unwrap_or_default();
                    let m = Value::Object(m);
                    return Err(PatchError::Strategic(format!(
                        "unknown patch type: {d} in map: {m}"
                    )));
                }
            }
        }
        if replace {
            let mut out = Vec::with_capacity(plain.len());
            for m in plain {
                out.extend(self.normalize(path, Value::Object(m), depth + 1)?);
            }
            return Ok(out);
        }
        let server_ids: Vec<String> = original.iter().map(|v| item_id(v, Some(key))).collect();
        let mut position: HashMap<String, usize> = HashMap::new();
        for (i, id) in server_ids.iter().enumerate() {
            position.entry(id.clone()).or_insert(i);
        }
        let mut patch_ids = Vec::with_capacity(plain.len());
        for m in plain {
            let id = m.get(key).ok_or_else(|| no_merge_key(&m, key))?.to_string();
            patch_ids.push(id.clone());
            if let Some(&i) = position.get(&id) {
                let live = match original[i].take() {
                    Value::Object(o) => o,
                    _ => Map::new(),
                };
                // Never None: items with `$patch` were taken out above.
                let merged = self.merge_map(path, live, m, depth + 1)?;
                original[i] = Value::Object(merged.unwrap_or_default());
            } else if let Some(v) = self.normalize(path, Value::Object(m), depth + 1)? {
                position.insert(id, original.len());
                original.push(v);
            }
        }
        Ok(order_by(original, &patch_ids, &server_ids, Some(key)))
    }

    /// `mergePatchIntoOriginal`: merges each list named by `$setElementOrder/<f>` and puts its
    /// items in the order given there (patch order > live order).
    fn set_element_order(
        &self,
        path: &str,
        original: &mut Map<String, Value>,
        patch: &mut Map<String, Value>,
        depth: usize,
    ) -> Result<(), PatchError> {
        let keys: Vec<String> = patch
            .keys()
            .filter(|k| k.starts_with(SET_ELEMENT_ORDER))
            .cloned()
            .collect();
        for dkey in keys {
            let Some(order) = patch.shift_remove(&dkey) else {
                continue;
            };
            let field = directive_field(&dkey, SET_ELEMENT_ORDER)
                .ok_or_else(|| PatchError::BadRequest(ERR_SET_ELEMENT_ORDER.to_owned()))?;
            let not_list = |v: &Value| {
                PatchError::Strategic(format!(
                    "expected a []interface {{}}, but received a {}",
                    go_kind(v)
                ))
            };
            let Value::Array(order) = order else {
                return Err(not_list(&order));
            };
            let child = child_path(path, field);
            let key = match list_strategy(self.kind, &child) {
                ListStrategy::MergeByKey(k) => Some(k),
                _ => None,
            };
            let live = match original.get_mut(field).map(Value::take) {
                None => None,
                Some(Value::Array(a)) => Some(a),
                Some(other) => return Err(not_list(&other)),
            };
            let patched = match patch.shift_remove(field) {
                None => None,
                Some(Value::Array(a)) => Some(a),
                Some(other) => return Err(not_list(&other)),
            };
            let ids = |l: &[Value]| l.iter().map(|v| item_id(v, key)).collect::<Vec<_>>();
            let live_ids = ids(live.as_deref().unwrap_or_default());
            let merged = match (live, patched) {
                (Some(l), None) => l,
                (None, Some(p)) => self.merge_list(&child, Vec::new(), p, depth + 1)?,
                (Some(l), Some(p)) => self.merge_list(&child, l, p, depth + 1)?,
                (None, None) => continue,
            };
            let objects_without_key = key.is_none() && merged.iter().any(Value::is_object);
            let ordered = if objects_without_key {
                merged
            } else {
                order_by(merged, &ids(&order), &live_ids, key)
            };
            original.insert(field.to_owned(), Value::Array(ordered));
        }
        Ok(())
    }
}

/// `applyRetainKeysDirective`: drops live fields not listed; every non-null patch field must be listed.
fn retain_keys(
    original: &mut Map<String, Value>,
    patch: &mut Map<String, Value>,
) -> Result<(), PatchError> {
    let Some(list) = patch.shift_remove(RETAIN_KEYS) else {
        return Ok(());
    };
    let bad = || PatchError::BadRequest(ERR_RETAIN_KEYS.to_owned());
    let Value::Array(list) = list else {
        return Err(bad());
    };
    let keep: HashSet<&str> = list.iter().filter_map(Value::as_str).collect();
    let unlisted = patch.iter().any(|(k, v)| {
        !v.is_null()
            && !k.starts_with(DELETE_FROM_PRIMITIVE_LIST)
            && !k.starts_with(SET_ELEMENT_ORDER)
            && !keep.contains(k.as_str())
    });
    if unlisted {
        return Err(bad());
    }
    original.retain(|k, _| keep.contains(k.as_str()));
    Ok(())
}

/// `sliceElementType`: all items must share a type and must not be lists. Returns whether
/// they are objects.
fn element_kind(original: &[Value], patch: &[Value]) -> Result<bool, PatchError> {
    let mut items = original.iter().chain(patch.iter());
    let Some(first) = items.next() else {
        return Ok(false);
    };
    if first.is_array() {
        return Err(PatchError::Unprocessable(ERR_LIST_OF_LISTS.to_owned()));
    }
    let kind = go_kind(first);
    if first.is_null() || items.any(|v| go_kind(v) != kind) {
        return Err(PatchError::Strategic(
            "list element types are not identical".to_owned(),
        ));
    }
    Ok(first.is_object())
}

/// `normalizeElementOrder` + `mergeSortedSlice`: items named in `patch_order` come in that
/// order, the others in `server_order`; the two runs are interleaved by their live positions,
/// and an item the live list lacks is emitted as soon as it is reached (new items go first).
fn order_by(
    merged: Vec<Value>,
    patch_order: &[String],
    server_order: &[String],
    key: Option<&str>,
) -> Vec<Value> {
    let index = |ids: &[String]| {
        let mut idx: HashMap<String, usize> = HashMap::new();
        for (i, id) in ids.iter().enumerate() {
            idx.entry(id.clone()).or_insert(i);
        }
        idx
    };
    let (in_patch, in_server) = (index(patch_order), index(server_order));
    let (mut from_patch, mut server_only): (Vec<_>, Vec<_>) = merged
        .into_iter()
        .map(|v| (item_id(&v, key), v))
        .partition(|(id, _)| in_patch.contains_key(id));
    // Go's comparator only orders items found in the list; the rest sort last here.
    from_patch.sort_by_key(|(id, _)| in_patch.get(id).copied().unwrap_or(usize::MAX));
    server_only.sort_by_key(|(id, _)| in_server.get(id).copied().unwrap_or(usize::MAX));
    let mut out = Vec::with_capacity(from_patch.len() + server_only.len());
    let (mut left, mut right) = (
        server_only.into_iter().peekable(),
        from_patch.into_iter().peekable(),
    );
    while let (Some((l, _)), Some((r, _))) = (left.peek(), right.peek()) {
        let take_left =
            matches!((in_server.get(l), in_server.get(r)), (Some(li), Some(ri)) if li < ri);
        let next = if take_left { left.next() } else { right.next() };
        out.extend(next.map(|(_, v)| v));
    }
    out.extend(left.map(|(_, v)| v));
    out.extend(right.map(|(_, v)| v));
    out
}
#[cfg(test)]
#[allow(clippy::unwrap_used)] // a failed unwrap is a failed test
mod tests {
    use super::*;
    use serde_json::json;

    fn v(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }

    fn run(kind: &str, original: &Value, t: PatchType, body: &str) -> Result<Value, PatchError> {
        apply(kind, original, t, body.as_bytes())
    }

    /// The strategic merge of `body` into `original`, read at JSON pointer `at`.
    fn smp(kind: &str, original: &Value, body: &str, at: &str) -> Value {
        let out = run(kind, original, PatchType::StrategicMerge, body).unwrap();
        out.pointer(at).cloned().unwrap_or(Value::Null)
    }

    fn smp_err(kind: &str, original: &Value, body: &str) -> PatchError {
        run(kind, original, PatchType::StrategicMerge, body).unwrap_err()
    }

    fn names(v: &Value) -> Vec<&str> {
        let items = v.as_array().unwrap().iter();
        items.map(|c| c["name"].as_str().unwrap()).collect()
    }

    fn code(e: &PatchError) -> (u16, &'static str) {
        (e.status_code().as_u16(), e.reason())
    }

    const SA: &str = r#"{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"example-sa","namespace":"default","uid":"u1","labels":{"app":"x"}},"secrets":[{"name":"a"},{"name":"b"}],"imagePullSecrets":[{"name":"p1"},{"name":"p2"}]}"#;
    const POD: &str = r#"{"kind":"Pod","metadata":{"name":"p"},"spec":{"containers":[{"name":"app","image":"nginx:1","env":[{"name":"A","value":"1"},{"name":"B","value":"2"}],"ports":[{"containerPort":80}]},{"name":"side","image":"busybox"}],"volumes":[{"name":"v1","emptyDir":{}},{"name":"tok","projected":{"sources":[]}}],"tolerations":[{"key":"a"}]}}"#;

    #[test]
    fn content_types_ignore_parameters_and_reject_others() {
        let ct = PatchType::from_content_type;
        let smp = "application/strategic-merge-patch+json; charset=utf-8";
        assert_eq!(ct(smp), Some(PatchType::StrategicMerge));
        assert_eq!(ct("application/json-patch+json"), Some(PatchType::Json));
        assert_eq!(ct("application/merge-patch+json"), Some(PatchType::Merge));
        assert_eq!(ct("application/apply-patch+yaml"), Some(PatchType::Apply));
        assert_eq!(ct("application/json"), None);
        assert_eq!(ct(""), None);
    }

    #[test]
    fn kubectl_label_and_annotate_send_merge_patches() {
        // `kubectl label sa example-sa team=blue`, then `team-`; annotate has the same shape.
        let sa = v(SA);
        let add = r#"{"metadata":{"labels":{"team":"blue"}}}"#;
        let labelled = run("ServiceAccount", &sa, PatchType::Merge, add).unwrap();
        let want = json!({"app": "x", "team": "blue"});
        assert_eq!(labelled["metadata"]["labels"], want);
        let remove = r#"{"metadata":{"labels":{"team":null}}}"#;
        let back = run("ServiceAccount", &labelled, PatchType::Merge, remove).unwrap();
        assert_eq!(back, sa, "removing the label restores the object exactly");
        let annotate = r#"{"metadata":{"annotations":{"owner":"me"}}}"#;
        let annotated = run("ServiceAccount", &sa, PatchType::Merge, annotate).unwrap();
        assert_eq!(annotated["metadata"]["annotations"], json!({"owner": "me"}));
    }

    #[test]
    fn kubectl_apply_and_edit_bodies() {
        let secret = r#"{"kind":"Secret","type":"kubernetes.io/service-account-token","data":{"token":"dG9r"},"metadata":{"name":"t","annotations":{"kubernetes.io/service-account.name":"example-sa","kubectl.kubernetes.io/last-applied-configuration":"{}\n"}}}"#;
        let secret = v(secret);
        // Second `kubectl apply -f secret.yaml` after adding a label (kubectl-wire.md §3.7).
        let body = r#"{"metadata":{"annotations":{"kubectl.kubernetes.io/last-applied-configuration":"{\"kind\":\"Secret\"}\n"},"labels":{"team":"blue"}}}"#;
        let applied = smp("Secret", &secret, body, "");
        assert_eq!(applied["metadata"]["labels"], json!({"team": "blue"}));
        let ann = &applied["metadata"]["annotations"];
        assert_eq!(ann["kubernetes.io/service-account.name"], "example-sa");
        let last = "{\"kind\":\"Secret\"}\n";
        assert_eq!(
            ann["kubectl.kubernetes.io/last-applied-configuration"],
            last
        );
        assert_eq!(applied["data"], secret["data"]);
        // `kubectl edit` sends only the changed fields (§3.11).
        let body = r#"{"metadata":{"labels":{"edited":"yes"}}}"#;
        let want = json!({"app": "x", "edited": "yes"});
        assert_eq!(
            smp("ServiceAccount", &v(SA), body, "/metadata/labels"),
            want
        );
        // A no-op patch leaves the object equal, so kubectl prints "patched (no change)".
        let body = r#"{"metadata":{"labels":{"app":"x"}}}"#;
        assert_eq!(smp("ServiceAccount", &v(SA), body, ""), v(SA));
    }

    #[test]
    fn pod_containers_merge_by_name() {
        let (pod, at) = (v(POD), "/spec/containers");
        // Add one: a new item goes first, as in Go's mergeSortedSlice (and the kubectl patch docs).
        let body = r#"{"spec":{"containers":[{"name":"new","image":"redis"}]}}"#;
        let added = smp("Pod", &pod, body, at);
        assert_eq!(names(&added), ["new", "app", "side"]);
        assert_eq!(added[1], pod["spec"]["containers"][0]);
        // Patch one's image: the rest of it and the order stay.
        let body = r#"{"spec":{"containers":[{"name":"side","image":"b:2"}]}}"#;
        let image = smp("Pod", &pod, body, at);
        assert_eq!(names(&image), ["app", "side"]);
        assert_eq!(image[1], json!({"name": "side", "image": "b:2"}));
        assert_eq!(image[0], pod["spec"]["containers"][0]);
        // Delete one; no directive is left behind.
        let body = r#"{"spec":{"containers":[{"$patch":"delete","name":"app"}]}}"#;
        let gone = smp("Pod", &pod, body, "");
        assert_eq!(names(&gone["spec"]["containers"]), ["side"]);
        assert!(!gone.to_string().contains("$patch"));
        // `kubectl edit` reordering env: the nested order directive is found by its path.
        let body = r#"{"spec":{"$setElementOrder/containers":[{"name":"app"},{"name":"side"}],"containers":[{"$setElementOrder/env":[{"name":"B"},{"name":"A"}],"name":"app"}]}}"#;
        assert_eq!(
            names(&smp("Pod", &pod, body, "/spec/containers/0/env")),
            ["B", "A"]
        );
        // Lists without patch tags replace.
        let body = r#"{"spec":{"tolerations":[{"key":"c"}]}}"#;
        assert_eq!(
            smp("Pod", &pod, body, "/spec/tolerations"),
            json!([{"key": "c"}])
        );
    }

    #[test]
    fn env_ports_and_volumes_merge_by_their_keys() {
        let body = r#"{"spec":{"containers":[{"name":"app","env":[{"name":"B","value":"two"},{"name":"C","value":"3"}],"ports":[{"containerPort":443}]}],"volumes":[{"name":"tok","projected":{"sources":[{"serviceAccountToken":{"path":"t"}}]}},{"name":"v2","emptyDir":{}}]}}"#;
        let out = smp("Pod", &v(POD), body, "/spec");
        let app = &out["containers"][0];
        // A live item goes before a later live item the patch names; new ones come as reached.
        let env =
            r#"[{"name":"A","value":"1"},{"name":"B","value":"two"},{"name":"C","value":"3"}]"#;
        assert_eq!(app["env"], v(env));
        let ports = json!([{"containerPort": 443}, {"containerPort": 80}]);
        assert_eq!((&app["ports"], &app["image"]), (&ports, &json!("nginx:1")));
        assert_eq!(names(&out["volumes"]), ["v1", "tok", "v2"]);
        let token = out.pointer("/volumes/1/projected/sources/0/serviceAccountToken/path");
        assert_eq!(token, Some(&json!("t")));
        // The same list in a merge patch, or in a strategic patch of an unknown kind, replaces.
        let body = r#"{"spec":{"containers":[{"name":"app"}]}}"#;
        let merged = run("Pod", &v(POD), PatchType::Merge, body).unwrap();
        assert_eq!(merged["spec"]["containers"], json!([{"name": "app"}]));
        let other = smp("Deployment", &v(POD), body, "/spec/containers");
        assert_eq!(other, json!([{"name": "app"}]));
    }

    #[test]
    fn service_account_secrets_merge_but_image_pull_secrets_replace() {
        let body = r#"{"secrets":[{"name":"c"}],"imagePullSecrets":[{"name":"p3"}]}"#;
        let out = smp("ServiceAccount", &v(SA), body, "");
        assert_eq!(names(&out["secrets"]), ["c", "a", "b"]);
        assert_eq!(names(&out["imagePullSecrets"]), ["p3"]);
    }

    #[test]
    fn finalizers_union_and_delete_from_primitive_list() {
        let cm = v(r#"{"kind":"ConfigMap","metadata":{"name":"c","finalizers":["a","b"]}}"#);
        let at = "/metadata/finalizers";
        let body = r#"{"metadata":{"finalizers":["b","c"]}}"#;
        assert_eq!(smp("ConfigMap", &cm, body, at), json!(["a", "b", "c"]));
        let body = r#"{"metadata":{"$deleteFromPrimitiveList/finalizers":["a","zzz"]}}"#;
        let want = json!({"name": "c", "finalizers": ["b"]});
        assert_eq!(smp("ConfigMap", &cm, body, "/metadata"), want);
        // Unknown kinds still merge ObjectMeta lists; a merge patch replaces them.
        let body = r#"{"metadata":{"finalizers":["z"]}}"#;
        assert_eq!(smp("Widget", &cm, body, at), json!(["z", "a", "b"]));
        let merged = run("ConfigMap", &cm, PatchType::Merge, body).unwrap();
        assert_eq!(merged.pointer(at), Some(&json!(["z"])));
        let body = r#"{"metadata":{"$deleteFromPrimitiveListx":["a"]}}"#;
        let bad = smp_err("ConfigMap", &cm, body);
        assert!(matches!(bad, PatchError::BadRequest(m) if m == ERR_PRIMITIVE_LIST));
    }

    #[test]
    fn set_element_order_orders_the_merged_list() {
        // What client-side apply sends when the manifest reorders and adds secrets.
        let body = r#"{"$setElementOrder/secrets":[{"name":"b"},{"name":"c"},{"name":"a"}],"secrets":[{"name":"c"}]}"#;
        let out = smp("ServiceAccount", &v(SA), body, "");
        assert_eq!(names(&out["secrets"]), ["b", "c", "a"]);
        assert!(out.as_object().unwrap().keys().all(|k| !k.starts_with('$')));
        // A pure reorder, with no list in the patch.
        let body = r#"{"$setElementOrder/secrets":[{"name":"b"},{"name":"a"}]}"#;
        assert_eq!(
            names(&smp("ServiceAccount", &v(SA), body, "/secrets")),
            ["b", "a"]
        );
        // Primitives.
        let node = v(r#"{"kind":"Node","spec":{"podCIDRs":["10.0.0.0/24","fd00::/64"]}}"#);
        let body = r#"{"spec":{"$setElementOrder/podCIDRs":["fd00::/64","10.0.0.0/24"]}}"#;
        let want = json!(["fd00::/64", "10.0.0.0/24"]);
        assert_eq!(smp("Node", &node, body, "/spec/podCIDRs"), want);
        let bad = smp_err("Node", &node, r#"{"$setElementOrderspec":[]}"#);
        assert!(matches!(bad, PatchError::BadRequest(m) if m == ERR_SET_ELEMENT_ORDER));
    }

    #[test]
    fn retain_keys_clears_unlisted_fields() {
        let body = r#"{"spec":{"volumes":[{"name":"v1","$retainKeys":["name","hostPath"],"hostPath":{"path":"/x"}}]}}"#;
        let want = json!({"name": "v1", "hostPath": {"path": "/x"}});
        assert_eq!(smp("Pod", &v(POD), body, "/spec/volumes/0"), want);
        let body = r#"{"spec":{"$retainKeys":["containers"],"volumes":[]}}"#;
        let bad = smp_err("Pod", &v(POD), body);
        assert!(matches!(bad, PatchError::BadRequest(m) if m == ERR_RETAIN_KEYS));
    }

    #[test]
    fn null_deletes_and_map_directives() {
        let body = r#"{"spec":{"volumes":null,"tolerations":null,"x":null}}"#;
        let spec = smp("Pod", &v(POD), body, "/spec");
        assert_eq!(
            spec.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["containers"]
        );
        let body = r#"{"metadata":{"$patch":"replace","name":"example-sa","gone":null}}"#;
        let want = json!({"name": "example-sa"});
        assert_eq!(smp("ServiceAccount", &v(SA), body, "/metadata"), want);
        let body = r#"{"metadata":{"labels":{"$patch":"delete"}}}"#;
        let labels = smp("ServiceAccount", &v(SA), body, "/metadata/labels");
        assert_eq!(labels, Value::Null, "the field is gone");
        // kube-apiserver rejects `$patch: merge` in a map as an untyped error (500).
        let body = r#"{"metadata":{"labels":{"$patch":"merge"}}}"#;
        let err = smp_err("ServiceAccount", &v(SA), body);
        assert_eq!(code(&err), (500, ""));
        assert!(
            err.status_message()
                .starts_with("unknown patch type: \"merge\"")
        );
        // `$patch: replace` in a merge list replaces the whole list.
        let body = r#"{"secrets":[{"$patch":"replace"},{"name":"only"}]}"#;
        let secrets = smp("ServiceAccount", &v(SA), body, "/secrets");
        assert_eq!(secrets, json!([{"name": "only"}]));
    }

    #[test]
    fn strategic_list_errors() {
        let strategic = |e: PatchError, text: &str| {
            assert_eq!(code(&e), (500, ""));
            assert!(e.to_string().contains(text), "{e}");
        };
        let body = r#"{"secrets":[{"namespace":"x"}]}"#;
        strategic(smp_err("ServiceAccount", &v(SA), body), "merge key: name");
        let body = r#"{"secrets":[{"name":"a","$patch":"merge"}]}"#;
        strategic(
            smp_err("ServiceAccount", &v(SA), body),
            "cannot yet be specified",
        );
        let body = r#"{"secrets":[{"name":"a","$patch":null}]}"#;
        strategic(
            smp_err("ServiceAccount", &v(SA), body),
            "unknown patch type",
        );
        let node = v(r#"{"kind":"Node","spec":{"podCIDRs":["a"]}}"#);
        let body = r#"{"spec":{"podCIDRs":[1]}}"#;
        strategic(smp_err("Node", &node, body), "not identical");
        let empty = v(r#"{"kind":"Node","spec":{"podCIDRs":[]}}"#);
        let err = smp_err("Node", &empty, r#"{"spec":{"podCIDRs":[["b"]]}}"#);
        assert_eq!(code(&err), (422, "Invalid"));
    }

    #[test]
    fn json_patch_operations() {
        let ops = r#"[{"op":"test","path":"/metadata/labels/app","value":"x"},
            {"op":"add","path":"/metadata/labels/team","value":"blue"},
            {"op":"remove","path":"/metadata/labels/app"},
            {"op":"replace","path":"/secrets/0/name","value":"a2"},
            {"op":"copy","from":"/metadata/labels/team","path":"/metadata/labels/copy"},
            {"op":"move","from":"/imagePullSecrets/1","path":"/imagePullSecrets/0"},
            {"op":"add","path":"/secrets/-","value":{"name":"z"}}]"#;
        let out = run("ServiceAccount", &v(SA), PatchType::Json, ops).unwrap();
        let labels = json!({"team": "blue", "copy": "blue"});
        assert_eq!(out["metadata"]["labels"], labels);
        assert_eq!(names(&out["secrets"]), ["a2", "b", "z"]);
        assert_eq!(names(&out["imagePullSecrets"]), ["p2", "p1"]);
    }

    #[test]
    fn json_patch_failures_answer_like_kube_apiserver() {
        let fail = |body: &str| run("ServiceAccount", &v(SA), PatchType::Json, body).unwrap_err();
        let unprocessable = |e: PatchError, text: &str| {
            assert_eq!(code(&e), (422, "Invalid"));
            let generic = "the server rejected our request due to an error in our request";
            assert_eq!(e.status_message(), generic);
            assert!(matches!(e, PatchError::Unprocessable(m) if m.contains(text)));
        };
        let test = r#"[{"op":"test","path":"/metadata/name","value":"other"}]"#;
        unprocessable(fail(test), "value did not match");
        unprocessable(
            fail(r#"[{"op":"remove","path":"/nope"}]"#),
            "path is invalid",
        );
        unprocessable(fail(r#"[{"op":"frob","path":"/a"}]"#), "frob");
        // Doubling copies stop at the accumulated-copy limit instead of eating memory.
        let copy = |i| format!(r#"{{"op":"copy","from":"/secrets","path":"/secrets/{i}"}}"#);
        let bomb = (0..40).map(copy).collect::<Vec<_>>().join(",");
        unprocessable(fail(&format!("[{bomb}]")), "Unable to copy");
        let err = fail(r#"{"op":"add"}"#);
        assert!(
            matches!(err, PatchError::BadRequest(m) if m.starts_with("error decoding patch: "))
        );
        assert!(matches!(fail(r#"[{"op":7}]"#), PatchError::BadRequest(_)));
        let many = vec![r#"{"op":"test","path":"","value":1}"#; 10_001].join(",");
        let err = fail(&format!("[{many}]"));
        assert_eq!(code(&err), (413, "RequestEntityTooLarge"));
        assert!(err.status_message().ends_with("is 10000, got 10001"));
        let err = fail(r#"[{"op":"replace","path":"","value":[1]}]"#);
        assert!(matches!(err, PatchError::NotAnObject("array")));
        assert_eq!(code(&err), (422, "Invalid"));
    }

    #[test]
    fn malformed_bodies_are_bad_requests() {
        for (t, body) in [
            (PatchType::StrategicMerge, "{not json"),
            (PatchType::StrategicMerge, "[1]"),
            (PatchType::Merge, "[1]"),
            (PatchType::Merge, ""),
            (PatchType::Apply, "- a\n- b\n"),
            (PatchType::Apply, "a: [unclosed"),
        ] {
            let err = run("ServiceAccount", &v(SA), t, body).unwrap_err();
            assert_eq!(code(&err), (400, "BadRequest"), "{t:?} {body:?}");
        }
        let err = run("ServiceAccount", &v(SA), PatchType::Merge, "[1]").unwrap_err();
        let go = "json: cannot unmarshal array into Go value of type map[string]interface {}";
        assert_eq!(err.status_message(), format!("error decoding patch: {go}"));
        let err = run("ServiceAccount", &v(SA), PatchType::Apply, "- a\n").unwrap_err();
        assert!(err.status_message().starts_with("error decoding YAML: "));
    }

    #[test]
    fn server_side_apply_creates_and_merges() {
        let yaml = "kind: ServiceAccount\nmetadata:\n  name: sa\n  labels:\n    team: blue\nsecrets:\n- name: c\n";
        let created = run("ServiceAccount", &Value::Null, PatchType::Apply, yaml).unwrap();
        let want = json!({"name": "sa", "labels": {"team": "blue"}});
        assert_eq!(created["metadata"], want);
        assert_eq!(names(&created["secrets"]), ["c"]);
        let body = r#"{"kind":"ServiceAccount","metadata":{"name":"example-sa"},"automountServiceAccountToken":false}"#;
        let merged = run("ServiceAccount", &v(SA), PatchType::Apply, body).unwrap();
        assert_eq!(merged["automountServiceAccountToken"], false);
        assert_eq!(merged["metadata"]["uid"], "u1");
        assert_eq!(merged["secrets"], v(SA)["secrets"]);
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let nest = |n: usize| "{\"a\":".repeat(n) + "1" + &"}".repeat(n);
        for t in [
            PatchType::StrategicMerge,
            PatchType::Merge,
            PatchType::Apply,
        ] {
            for n in [120, 100_000] {
                let err = run("ConfigMap", &json!({}), t, &nest(n)).unwrap_err();
                assert_eq!(code(&err), (400, "BadRequest"), "{t:?} {n}");
            }
        }
        let yaml: String = (0..200).map(|i| format!("{}b:\n", " ".repeat(i))).collect();
        assert!(run("ConfigMap", &json!({}), PatchType::Apply, &yaml).is_err());
        // JSON patch can deepen the document op by op; the depth bound stops it first.
        let add = |i| format!(r#"{{"op":"add","path":"{}","value":{{}}}}"#, "/a".repeat(i));
        let ops = (1..150).map(add).collect::<Vec<_>>().join(",");
        let err = run(
            "ConfigMap",
            &json!({}),
            PatchType::Json,
            &format!("[{ops}]"),
        );
        assert!(matches!(err, Err(PatchError::TooDeep)));
        assert_eq!(depth(&json!({"a": [1, {"b": {}}]})), 4);
    }
}
