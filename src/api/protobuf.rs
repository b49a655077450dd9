//! Decoding of Kubernetes protobuf request bodies (`application/vnd.kubernetes.protobuf`)
//! into the JSON value the same object has on the wire as JSON.
//!
//! Owns: the `k8s\0` envelope (`runtime.Unknown`), a small protobuf wire reader, and one
//! static schema per supported message (field number → Go json name, type, omit rule),
//! walked by one generic decoder. kubectl 1.32 sends these bodies for `create
//! sa|namespace|configmap|secret|role|clusterrole|rolebinding|clusterrolebinding`, `create
//! token`, `auth whoami` and `auth can-i`
//! (shared/reference/kubectl-wire.md §0 item 2 and §5.1).
//!
//! Must not: encode protobuf (the server always answers in JSON), know HTTP (the caller maps
//! `ProtobufError::UnsupportedKind` to 415 and the rest to 400), or default and validate
//! objects (that is `registry`'s job: empty strings here simply stay out of the JSON).
//!
//! Field numbers come from kubernetes/kubernetes `staging/src/k8s.io/api/{core,authentication,
//! authorization,rbac}/v1/generated.proto` and `apimachinery/pkg/apis/meta/v1/generated.proto`; the
//! envelope mirrors `apimachinery/pkg/runtime/serializer/protobuf/protobuf.go`. Field order and
//! omit rules mirror the Go structs in `types.go` (the proto files list fields in Go order).

use std::collections::BTreeMap;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Map, Value};

use Omit::{Always, Present, Zero};
use Ty::{Bool, BytesMap, ExtraMap, Int64, Msg, MsgList, Str, StrList, StrMap, Time};
use schemas::{DELETE_OPTIONS, EXTRA_VALUE, KINDS, TIMESTAMP, TYPE_META};

/// The 4-byte prefix of every Kubernetes protobuf body (`k8s\0`).
const MAGIC: &[u8] = b"k8s\x00";
/// Nesting limit for embedded messages; the static schemas stay far below it.
const MAX_DEPTH: usize = 32;
/// Largest field number protobuf allows (2^29 - 1).
const MAX_FIELD: u64 = (1 << 29) - 1;

/// Why a protobuf body could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ProtobufError {
    #[error("body does not start with the Kubernetes protobuf prefix \"k8s\\0\"")]
    MissingMagic,
    #[error("protobuf body is truncated")]
    Truncated,
    #[error("protobuf varint is longer than 10 bytes")]
    VarintTooLong,
    #[error("protobuf length prefix runs past the end of its message")]
    LengthOutOfBounds,
    #[error("protobuf field tag is invalid")]
    InvalidTag,
    #[error("protobuf wire type {0} is not supported")]
    BadWireType(u64),
    #[error("protobuf field {field} has the wrong wire type")]
    WrongWireType { field: &'static str },
    #[error("protobuf field {field} is not valid UTF-8")]
    InvalidUtf8 { field: &'static str },
    #[error("timestamp in protobuf field {field} is out of range")]
    TimeOutOfRange { field: &'static str },
    #[error("protobuf messages are nested deeper than {} levels", MAX_DEPTH)]
    TooDeep,
    #[error("protobuf content encoding {0:?} is not supported")]
    UnsupportedEncoding(String),
    #[error("no protobuf decoding for kind {kind:?} in {api_version:?}")]
    UnsupportedKind { api_version: String, kind: String },
}

/// Decodes a `k8s\0`-prefixed `runtime.Unknown` body into the object's JSON form:
/// `apiVersion` and `kind` first, then the fields in Go struct order under their json names.
pub(crate) fn decode(body: &[u8]) -> Result<Value, ProtobufError> {
    let envelope = body
        .strip_prefix(MAGIC)
        .ok_or(ProtobufError::MissingMagic)?;
    // runtime.Unknown: 1 typeMeta, 2 raw, 3 contentEncoding, 4 contentType (ignored, as the
    // upstream serializer does).
    let (mut type_meta, mut raw, mut encoding) = (Vec::new(), &[][..], String::new());
    let mut reader = Reader { buf: envelope };
    while let Some((num, wire)) = reader.next_field()? {
        match (num, wire) {
            (1, Wire::Len(b)) => type_meta.push(b), // an embedded message: occurrences merge
            (2, Wire::Len(b)) => raw = b,           // bytes: the last occurrence wins
            (3, Wire::Len(b)) => encoding = utf8(b, "contentEncoding")?,
            (4, Wire::Len(_)) => {}
            (1..=4, _) => {
                return Err(ProtobufError::WrongWireType {
                    field: "runtime.Unknown",
                });
            }
            _ => {}
        }
    }
    if !encoding.is_empty() {
        return Err(ProtobufError::UnsupportedEncoding(encoding));
    }
    let (type_meta, _) = decode_message(&type_meta, TYPE_META, 1)?;
    let text = |key: &str| {
        type_meta
            .get(key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    let (api_version, kind) = (text("apiVersion"), text("kind"));
    let Some(schema) = schema_for(&api_version, &kind) else {
        return Err(ProtobufError::UnsupportedKind { api_version, kind });
    };
    let mut out = Map::new();
    out.insert("apiVersion".to_owned(), Value::String(api_version));
    out.insert("kind".to_owned(), Value::String(kind));
    out.extend(decode_message(&[raw], schema, 1)?.0);
    Ok(Value::Object(out))
}

fn schema_for(api_version: &str, kind: &str) -> Option<Schema> {
    KINDS
        .iter()
        .find(|(v, k, _)| *v == api_version && *k == kind)
        .map(|(_, _, schema)| *schema)
        // DeleteOptions is registered in every group version (metav1.AddToGroupVersion).
        .or_else(|| (kind == "DeleteOptions").then_some(DELETE_OPTIONS))
}

// ---- Schemas -------------------------------------------------------------------------

type Schema = &'static [Field];

/// One protobuf field of a message: its number, Go json name, type and omit rule.
struct Field {
    num: u64,
    name: &'static str,
    ty: Ty,
    omit: Omit,
}

#[derive(Clone, Copy)]
enum Ty {
    Str,
    Bool,
    Int64,
    /// `metav1.Time` {1 seconds, 2 nanos}, printed as RFC 3339 UTC with whole seconds.
    Time,
    Msg(Schema),
    StrList,
    MsgList(Schema),
    /// `map<string,string>` (repeated entry {1 key, 2 value}), printed with sorted keys like Go.
    StrMap,
    /// `map<string,bytes>`, values printed as standard base64 like Go's `[]byte`.
    BytesMap,
    /// `map<string,ExtraValue>` where ExtraValue is {repeated string items = 1}.
    ExtraMap,
}

/// When a field appears in the JSON, mirroring its Go struct tag.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Omit {
    /// `omitempty` on a value type: left out when zero ("", 0, false, empty list or map, or a
    /// struct whose fields are all zero, which is what `omitempty` on API structs intends).
    Zero,
    /// A Go pointer (`*bool`, `*int64`, `*Struct`): emitted whenever it is on the wire.
    Present,
    /// No `omitempty` on a string, bool, number or struct: emitted even when absent. Nil
    /// slices, nil maps and zero times would print `null` in Go; those are left out instead.
    Always,
}

/// One table per message, fields in Go struct order (which `generated.proto` keeps).
#[rustfmt::skip]
mod schemas {
    use super::{Field, Schema, Ty, Omit::{self, Always, Present, Zero}};
    use super::Ty::{Bool, BytesMap, ExtraMap, Int64, Msg, MsgList, Str, StrList, StrMap, Time};

    const fn f(num: u64, name: &'static str, ty: Ty, omit: Omit) -> Field {
        Field { num, name, ty, omit }
    }

    pub(super) const KINDS: &[(&str, &str, Schema)] = &[
        ("v1", "ServiceAccount", SERVICE_ACCOUNT),
        ("v1", "Namespace", NAMESPACE),
        ("v1", "ConfigMap", CONFIG_MAP),
        ("v1", "Secret", SECRET),
        ("authentication.k8s.io/v1", "TokenRequest", TOKEN_REQUEST),
        ("authentication.k8s.io/v1", "TokenReview", TOKEN_REVIEW),
        ("authentication.k8s.io/v1", "SelfSubjectReview", SELF_SUBJECT_REVIEW),
        ("authorization.k8s.io/v1", "SelfSubjectAccessReview", SELF_SUBJECT_ACCESS_REVIEW),
        ("authorization.k8s.io/v1", "SubjectAccessReview", SUBJECT_ACCESS_REVIEW),
        ("authorization.k8s.io/v1", "LocalSubjectAccessReview", SUBJECT_ACCESS_REVIEW),
        ("authorization.k8s.io/v1", "SelfSubjectRulesReview", SELF_SUBJECT_RULES_REVIEW),
        ("rbac.authorization.k8s.io/v1", "Role", ROLE),
        ("rbac.authorization.k8s.io/v1", "ClusterRole", CLUSTER_ROLE),
        ("rbac.authorization.k8s.io/v1", "RoleBinding", ROLE_BINDING),
        ("rbac.authorization.k8s.io/v1", "ClusterRoleBinding", ROLE_BINDING),
    ];

    // meta/v1
    pub(super) const TYPE_META: Schema =
        &[f(1, "apiVersion", Str, Always), f(2, "kind", Str, Always)];
    /// Time and Timestamp {1 seconds, 2 nanos}; int32 nanos arrive sign-extended, so reading
    /// them as int64 keeps their zero-ness, the only thing needed from them.
    pub(super) const TIMESTAMP: Schema =
        &[f(1, "seconds", Int64, Zero), f(2, "nanos", Int64, Zero)];
    /// authentication/v1 and authorization/v1 ExtraValue.
    pub(super) const EXTRA_VALUE: Schema = &[f(1, "items", StrList, Always)];
    const OWNER_REFERENCE: Schema = &[
        f(5, "apiVersion", Str, Always), f(1, "kind", Str, Always), f(3, "name", Str, Always),
        f(4, "uid", Str, Always), f(6, "controller", Bool, Present),
        f(7, "blockOwnerDeletion", Bool, Present),
    ];
    /// managedFields (17) is skipped: clients have no business setting it on create.
    const OBJECT_META: Schema = &[
        f(1, "name", Str, Zero), f(2, "generateName", Str, Zero), f(3, "namespace", Str, Zero),
        f(4, "selfLink", Str, Zero), f(5, "uid", Str, Zero), f(6, "resourceVersion", Str, Zero),
        f(7, "generation", Int64, Zero), f(8, "creationTimestamp", Time, Zero),
        f(9, "deletionTimestamp", Time, Present),
        f(10, "deletionGracePeriodSeconds", Int64, Present),
        f(11, "labels", StrMap, Zero), f(12, "annotations", StrMap, Zero),
        f(13, "ownerReferences", MsgList(OWNER_REFERENCE), Zero),
        f(14, "finalizers", StrList, Zero),
    ];
    const METADATA: Field = f(1, "metadata", Msg(OBJECT_META), Zero);
    const PRECONDITIONS: Schema =
        &[f(1, "uid", Str, Present), f(2, "resourceVersion", Str, Present)];
    pub(super) const DELETE_OPTIONS: Schema = &[
        f(1, "gracePeriodSeconds", Int64, Present),
        f(2, "preconditions", Msg(PRECONDITIONS), Present),
        f(3, "orphanDependents", Bool, Present), f(4, "propagationPolicy", Str, Present),
        f(5, "dryRun", StrList, Zero),
    ];

    // core/v1
    const OBJECT_REFERENCE: Schema = &[
        f(1, "kind", Str, Zero), f(2, "namespace", Str, Zero), f(3, "name", Str, Zero),
        f(4, "uid", Str, Zero), f(5, "apiVersion", Str, Zero), f(6, "resourceVersion", Str, Zero),
        f(7, "fieldPath", Str, Zero),
    ];
    const LOCAL_OBJECT_REFERENCE: Schema = &[f(1, "name", Str, Zero)];
    pub(super) const SERVICE_ACCOUNT: Schema = &[
        METADATA, f(2, "secrets", MsgList(OBJECT_REFERENCE), Zero),
        f(3, "imagePullSecrets", MsgList(LOCAL_OBJECT_REFERENCE), Zero),
        f(4, "automountServiceAccountToken", Bool, Present),
    ];
    const NAMESPACE_SPEC: Schema = &[f(1, "finalizers", StrList, Zero)];
    /// conditions (2) is skipped: it is server-populated status.
    const NAMESPACE_STATUS: Schema = &[f(1, "phase", Str, Zero)];
    const NAMESPACE: Schema = &[
        METADATA, f(2, "spec", Msg(NAMESPACE_SPEC), Zero),
        f(3, "status", Msg(NAMESPACE_STATUS), Zero),
    ];
    const CONFIG_MAP: Schema = &[
        METADATA, f(4, "immutable", Bool, Present), f(2, "data", StrMap, Zero),
        f(3, "binaryData", BytesMap, Zero),
    ];
    const SECRET: Schema = &[
        METADATA, f(5, "immutable", Bool, Present), f(2, "data", BytesMap, Zero),
        f(4, "stringData", StrMap, Zero), f(3, "type", Str, Zero),
    ];

    // authentication/v1
    const BOUND_OBJECT_REFERENCE: Schema = &[
        f(1, "kind", Str, Zero), f(2, "apiVersion", Str, Zero), f(3, "name", Str, Zero),
        f(4, "uid", Str, Zero),
    ];
    const TOKEN_REQUEST_SPEC: Schema = &[
        // No omitempty in Go, but a nil slice prints `null`: left out, the server defaults it.
        f(1, "audiences", StrList, Zero), f(4, "expirationSeconds", Int64, Present),
        f(3, "boundObjectRef", Msg(BOUND_OBJECT_REFERENCE), Present),
    ];
    const TOKEN_REQUEST_STATUS: Schema =
        &[f(1, "token", Str, Always), f(2, "expirationTimestamp", Time, Always)];
    const TOKEN_REQUEST: Schema = &[
        METADATA, f(2, "spec", Msg(TOKEN_REQUEST_SPEC), Always),
        f(3, "status", Msg(TOKEN_REQUEST_STATUS), Zero),
    ];
    const USER_INFO: Schema = &[
        f(1, "username", Str, Zero), f(2, "uid", Str, Zero), f(3, "groups", StrList, Zero),
        f(4, "extra", ExtraMap, Zero),
    ];
    const TOKEN_REVIEW_SPEC: Schema =
        &[f(1, "token", Str, Zero), f(2, "audiences", StrList, Zero)];
    const TOKEN_REVIEW_STATUS: Schema = &[
        f(1, "authenticated", Bool, Zero), f(2, "user", Msg(USER_INFO), Zero),
        f(4, "audiences", StrList, Zero), f(3, "error", Str, Zero),
    ];
    const TOKEN_REVIEW: Schema = &[
        METADATA, f(2, "spec", Msg(TOKEN_REVIEW_SPEC), Always),
        f(3, "status", Msg(TOKEN_REVIEW_STATUS), Zero),
    ];
    const SELF_SUBJECT_REVIEW_STATUS: Schema = &[f(1, "userInfo", Msg(USER_INFO), Zero)];
    const SELF_SUBJECT_REVIEW: Schema =
        &[METADATA, f(2, "status", Msg(SELF_SUBJECT_REVIEW_STATUS), Zero)];

    // authorization/v1
    /// FieldSelectorRequirement and metav1.LabelSelectorRequirement share this shape.
    const SELECTOR_REQUIREMENT: Schema =
        &[f(1, "key", Str, Always), f(2, "operator", Str, Always), f(3, "values", StrList, Zero)];
    const SELECTOR_ATTRIBUTES: Schema = &[
        f(1, "rawSelector", Str, Zero),
        f(2, "requirements", MsgList(SELECTOR_REQUIREMENT), Zero),
    ];
    const RESOURCE_ATTRIBUTES: Schema = &[
        f(1, "namespace", Str, Zero), f(2, "verb", Str, Zero), f(3, "group", Str, Zero),
        f(4, "version", Str, Zero), f(5, "resource", Str, Zero), f(6, "subresource", Str, Zero),
        f(7, "name", Str, Zero), f(8, "fieldSelector", Msg(SELECTOR_ATTRIBUTES), Present),
        f(9, "labelSelector", Msg(SELECTOR_ATTRIBUTES), Present),
    ];
    const NON_RESOURCE_ATTRIBUTES: Schema = &[f(1, "path", Str, Zero), f(2, "verb", Str, Zero)];
    const RESOURCE: Field = f(1, "resourceAttributes", Msg(RESOURCE_ATTRIBUTES), Present);
    const NON_RESOURCE: Field =
        f(2, "nonResourceAttributes", Msg(NON_RESOURCE_ATTRIBUTES), Present);
    const SUBJECT_ACCESS_REVIEW_SPEC: Schema = &[
        RESOURCE, NON_RESOURCE, f(3, "user", Str, Zero), f(4, "groups", StrList, Zero),
        f(5, "extra", ExtraMap, Zero), f(6, "uid", Str, Zero),
    ];
    const SUBJECT_ACCESS_REVIEW_STATUS: Schema = &[
        f(1, "allowed", Bool, Always), f(4, "denied", Bool, Zero), f(2, "reason", Str, Zero),
        f(3, "evaluationError", Str, Zero),
    ];
    const SELF_SUBJECT_ACCESS_REVIEW: Schema = &[
        METADATA, f(2, "spec", Msg(&[RESOURCE, NON_RESOURCE]), Always),
        f(3, "status", Msg(SUBJECT_ACCESS_REVIEW_STATUS), Zero),
    ];
    const SUBJECT_ACCESS_REVIEW: Schema = &[
        METADATA, f(2, "spec", Msg(SUBJECT_ACCESS_REVIEW_SPEC), Always),
        f(3, "status", Msg(SUBJECT_ACCESS_REVIEW_STATUS), Zero),
    ];
    const RESOURCE_RULE: Schema = &[
        f(1, "verbs", StrList, Always), f(2, "apiGroups", StrList, Zero),
        f(3, "resources", StrList, Zero), f(4, "resourceNames", StrList, Zero),
    ];
    const NON_RESOURCE_RULE: Schema =
        &[f(1, "verbs", StrList, Always), f(2, "nonResourceURLs", StrList, Zero)];
    const SUBJECT_RULES_REVIEW_STATUS: Schema = &[
        f(1, "resourceRules", MsgList(RESOURCE_RULE), Always),
        f(2, "nonResourceRules", MsgList(NON_RESOURCE_RULE), Always),
        f(3, "incomplete", Bool, Always), f(4, "evaluationError", Str, Zero),
    ];
    const SELF_SUBJECT_RULES_REVIEW: Schema = &[
        METADATA, f(2, "spec", Msg(&[f(1, "namespace", Str, Zero)]), Always),
        f(3, "status", Msg(SUBJECT_RULES_REVIEW_STATUS), Zero),
    ];

    // rbac/v1 (ClusterRoleBinding has RoleBinding's fields and numbers)
    const LABEL_SELECTOR: Schema = &[
        f(1, "matchLabels", StrMap, Zero),
        f(2, "matchExpressions", MsgList(SELECTOR_REQUIREMENT), Zero),
    ];
    const AGGREGATION_RULE: Schema =
        &[f(1, "clusterRoleSelectors", MsgList(LABEL_SELECTOR), Zero)];
    const POLICY_RULE: Schema = &[
        f(1, "verbs", StrList, Always), f(2, "apiGroups", StrList, Zero),
        f(3, "resources", StrList, Zero), f(4, "resourceNames", StrList, Zero),
        f(5, "nonResourceURLs", StrList, Zero),
    ];
    const RULES: Field = f(2, "rules", MsgList(POLICY_RULE), Always);
    const ROLE: Schema = &[METADATA, RULES];
    const CLUSTER_ROLE: Schema =
        &[METADATA, RULES, f(3, "aggregationRule", Msg(AGGREGATION_RULE), Present)];
    const SUBJECT: Schema = &[
        f(1, "kind", Str, Always), f(2, "apiGroup", Str, Zero), f(3, "name", Str, Always),
        f(4, "namespace", Str, Zero),
    ];
    const ROLE_REF: Schema =
        &[f(1, "apiGroup", Str, Always), f(2, "kind", Str, Always), f(3, "name", Str, Always)];
    const ROLE_BINDING: Schema = &[
        METADATA, f(2, "subjects", MsgList(SUBJECT), Zero), f(3, "roleRef", Msg(ROLE_REF), Always),
    ];
}

// ---- Generic decoder -----------------------------------------------------------------

/// What was read for one field of a message.
#[derive(Default)]
struct Acc<'a> {
    seen: bool,
    /// Scalars: the value and whether it is Go's zero value (the last occurrence wins).
    scalar: Option<(Value, bool)>,
    /// Embedded messages: every occurrence, merged field by field as protobuf requires.
    parts: Vec<&'a [u8]>,
    list: Vec<Value>,
    map: BTreeMap<String, Value>,
}

/// Decodes the concatenation of `parts` as one message; returns its JSON object and whether
/// every field holds Go's zero value (for `omitempty` on the enclosing field).
fn decode_message(
    parts: &[&[u8]],
    schema: Schema,
    depth: usize,
) -> Result<(Map<String, Value>, bool), ProtobufError> {
    if depth > MAX_DEPTH {
        return Err(ProtobufError::TooDeep);
    }
    let mut accs: Vec<Acc<'_>> = schema.iter().map(|_| Acc::default()).collect();
    for part in parts {
        let mut reader = Reader { buf: part };
        while let Some((num, wire)) = reader.next_field()? {
            // Unknown fields need nothing more: the reader already stepped over them.
            let known = schema
                .iter()
                .zip(accs.iter_mut())
                .find(|(field, _)| field.num == num);
            if let Some((field, acc)) = known {
                read_field(acc, field, wire, depth)?;
            }
        }
    }
    let (mut out, mut all_zero) = (Map::new(), true);
    for (field, acc) in schema.iter().zip(accs) {
        if !acc.seen {
            if let Some(value) = absent_value(field, depth)? {
                out.insert(field.name.to_owned(), value);
            }
            continue;
        }
        let (value, zero) = finish(acc, field, depth)?;
        all_zero &= zero && field.omit != Present;
        let omitted = zero && (field.omit == Zero || matches!(field.ty, Time));
        if !omitted {
            out.insert(field.name.to_owned(), value);
        }
    }
    Ok((out, all_zero))
}

fn read_field<'a>(
    acc: &mut Acc<'a>,
    field: &Field,
    wire: Wire<'a>,
    depth: usize,
) -> Result<(), ProtobufError> {
    let name = field.name;
    acc.seen = true;
    match (field.ty, wire) {
        (Str, Wire::Len(b)) => acc.scalar = Some((Value::String(utf8(b, name)?), b.is_empty())),
        (Bool, Wire::Varint(v)) => acc.scalar = Some((Value::Bool(v != 0), v == 0)),
        (Int64, Wire::Varint(v)) => acc.scalar = Some(((v as i64).into(), v == 0)),
        (Time | Msg(_), Wire::Len(b)) => acc.parts.push(b),
        (StrList, Wire::Len(b)) => acc.list.push(Value::String(utf8(b, name)?)),
        (MsgList(schema), Wire::Len(b)) => {
            acc.list
                .push(Value::Object(decode_message(&[b], schema, depth + 1)?.0));
        }
        (StrMap | BytesMap | ExtraMap, Wire::Len(b)) => {
            let (key, value) = map_entry(b, field, depth)?;
            acc.map.insert(key, value); // a later duplicate key wins, as in Go
        }
        _ => return Err(ProtobufError::WrongWireType { field: name }),
    }
    Ok(())
}

/// The JSON value of a field seen on the wire, and whether it is Go's zero value.
fn finish(acc: Acc<'_>, field: &Field, depth: usize) -> Result<(Value, bool), ProtobufError> {
    Ok(match field.ty {
        Time => time(&acc.parts, field.name, depth)?,
        Msg(schema) => {
            let (object, zero) = decode_message(&acc.parts, schema, depth + 1)?;
            (Value::Object(object), zero)
        }
        StrList | MsgList(_) => {
            let zero = acc.list.is_empty();
            (Value::Array(acc.list), zero)
        }
        // BTreeMap iterates in byte order of the keys, which is how Go sorts map keys.
        StrMap | BytesMap | ExtraMap => {
            let zero = acc.map.is_empty();
            (Value::Object(acc.map.into_iter().collect()), zero)
        }
        // `seen` guarantees a scalar was stored; the fallback only keeps this total.
        Str | Bool | Int64 => acc.scalar.unwrap_or((Value::Null, true)),
    })
}

/// Go prints non-omitempty scalars and structs even when the wire did not carry them.
fn absent_value(field: &Field, depth: usize) -> Result<Option<Value>, ProtobufError> {
    if field.omit != Always {
        return Ok(None);
    }
    Ok(match field.ty {
        Str => Some(Value::String(String::new())),
        Bool => Some(Value::Bool(false)),
        Int64 => Some(Value::from(0)),
        Msg(schema) => Some(Value::Object(decode_message(&[], schema, depth + 1)?.0)),
        _ => None,
    })
}

/// `metav1.Time`; Go's JSON is RFC 3339 in UTC with whole seconds
/// (apimachinery/pkg/apis/meta/v1/time.go). The zero time is reported as zero.
fn time(
    parts: &[&[u8]],
    field: &'static str,
    depth: usize,
) -> Result<(Value, bool), ProtobufError> {
    let (timestamp, zero) = decode_message(parts, TIMESTAMP, depth + 1)?;
    if zero {
        return Ok((Value::Null, true));
    }
    // `seconds` is left out of the map when 0 (only nanos were set).
    let seconds = timestamp
        .get("seconds")
        .and_then(Value::as_i64)
        .unwrap_or(0);
    // The proto comment bounds seconds to 0001-01-01T00:00:00Z ..= 9999-12-31T23:59:59Z.
    let time = Some(seconds)
        .filter(|s| (-62_135_596_800..=253_402_300_799).contains(s))
        .and_then(|s| jiff::Timestamp::from_second(s).ok())
        .ok_or(ProtobufError::TimeOutOfRange { field })?;
    Ok((
        time.strftime("%Y-%m-%dT%H:%M:%SZ").to_string().into(),
        false,
    ))
}

/// One map entry {1 key, 2 value}; a missing part decodes as its zero value.
fn map_entry(entry: &[u8], field: &Field, depth: usize) -> Result<(String, Value), ProtobufError> {
    let name = field.name;
    let (mut key, mut value) = (String::new(), None);
    let mut reader = Reader { buf: entry };
    while let Some((num, wire)) = reader.next_field()? {
        match (num, wire, field.ty) {
            (1, Wire::Len(b), _) => key = utf8(b, name)?,
            (2, Wire::Len(b), BytesMap) => value = Some(BASE64.encode(b).into()),
            (2, Wire::Len(b), StrMap) => value = Some(utf8(b, name)?.into()),
            // ExtraValue {repeated string items = 1} prints as a plain list in Go.
            (2, Wire::Len(b), _) => {
                value = decode_message(&[b], EXTRA_VALUE, depth + 1)?
                    .0
                    .remove("items")
            }
            (1 | 2, _, _) => return Err(ProtobufError::WrongWireType { field: name }),
            _ => {}
        }
    }
    let zero = match field.ty {
        ExtraMap => Value::Array(Vec::new()),
        _ => Value::String(String::new()),
    };
    Ok((key, value.unwrap_or(zero)))
}

fn utf8(b: &[u8], field: &'static str) -> Result<String, ProtobufError> {
    std::str::from_utf8(b)
        .map(str::to_owned)
        .map_err(|_| ProtobufError::InvalidUtf8 { field })
}

// ---- Wire reader ---------------------------------------------------------------------

/// A field's payload; fixed-width payloads are skipped because no supported field uses them.
enum Wire<'a> {
    Varint(u64),
    Len(&'a [u8]),
    Fixed,
}

/// Reads fields from a message. Every length is checked against the bytes that remain before
/// anything is sliced, and nothing is allocated from a length read off the wire.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn next_field(&mut self) -> Result<Option<(u64, Wire<'a>)>, ProtobufError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let tag = self.varint()?;
        let num = tag >> 3;
        if num == 0 || num > MAX_FIELD {
            return Err(ProtobufError::InvalidTag);
        }
        let wire = match tag & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => self.take(8).map(|_| Wire::Fixed)?,
            2 => {
                let len = usize::try_from(self.varint()?)
                    .ok()
                    .filter(|len| *len <= self.buf.len())
                    .ok_or(ProtobufError::LengthOutOfBounds)?;
                Wire::Len(self.take(len)?)
            }
            5 => self.take(4).map(|_| Wire::Fixed)?,
            // 3 and 4 are proto2 groups, which Kubernetes never uses; 6 and 7 do not exist.
            other => return Err(ProtobufError::BadWireType(other)),
        };
        Ok(Some((num, wire)))
    }

    fn varint(&mut self) -> Result<u64, ProtobufError> {
        let mut value = 0u64;
        for (i, byte) in self.buf.iter().take(10).enumerate() {
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte & 0x80 == 0 {
                self.take(i + 1)?;
                return Ok(value);
            }
        }
        Err(if self.buf.len() >= 10 {
            ProtobufError::VarintTooLong
        } else {
            ProtobufError::Truncated
        })
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], ProtobufError> {
        let (head, rest) = self
            .buf
            .split_at_checked(n)
            .ok_or(ProtobufError::Truncated)?;
        self.buf = rest;
        Ok(head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ProtobufError::*;

    /// Bodies captured from kubectl 1.32.4 (shared/reference/kubectl-wire.md §5.1), each
    /// followed by the JSON it must decode to: create sa, create namespace, create configmap,
    /// create token (plain, --duration=600s, with audience and bound object), auth whoami.
    const VECTORS: &str = r#"
6b3873000a140a027631120e536572766963654163636f756e74121c0a1a0a0a6578616d706c652d736112001a0022002a003200380042001a002200
{"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"example-sa"}}
6b3873000a0f0a02763112094e616d65737061636512190a110a017812001a0022002a0032003800420012001a020a001a002200
{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"x"}}
6b3873000a0f0a0276311209436f6e6669674d6170121d0a130a03636d3112001a0022002a0032003800420012060a01611201621a002200
{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cm1"},"data":{"a":"b"}}
6b3873000a280a1861757468656e7469636174696f6e2e6b38732e696f2f7631120c546f6b656e52657175657374121a0a100a0012001a0022002a0032003800420012001a040a0012001a002200
{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{}}
6b3873000a280a1861757468656e7469636174696f6e2e6b38732e696f2f7631120c546f6b656e52657175657374121d0a100a0012001a0022002a00320038004200120320d8041a040a0012001a002200
{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"expirationSeconds":600}}
6b3873000a280a1861757468656e7469636174696f6e2e6b38732e696f2f7631120c546f6b656e5265717565737412580a100a0012001a0022002a00320038004200123e0a057661756c741a320a03506f64120276311a0170222430623766306331652d313131312d323232322d333333332d34343434353535353636363620d8041a040a0012001a002200
{"apiVersion":"authentication.k8s.io/v1","kind":"TokenRequest","spec":{"audiences":["vault"],"expirationSeconds":600,"boundObjectRef":{"kind":"Pod","apiVersion":"v1","name":"p","uid":"0b7f0c1e-1111-2222-3333-444455556666"}}}
6b3873000a2d0a1861757468656e7469636174696f6e2e6b38732e696f2f7631121153656c665375626a656374526576696577121a0a100a0012001a0022002a0032003800420012060a040a0012001a002200
{"apiVersion":"authentication.k8s.io/v1","kind":"SelfSubjectReview"}
"#;

    fn vectors() -> Vec<(Vec<u8>, Value)> {
        let lines: Vec<&str> = VECTORS.trim().lines().collect();
        lines
            .chunks(2)
            .map(|pair| (hex(pair[0]), json(pair[1])))
            .collect()
    }
    fn hex(s: &str) -> Vec<u8> {
        let byte = |i| u8::from_str_radix(&s[i..i + 2], 16).unwrap();
        (0..s.len()).step_by(2).map(byte).collect()
    }
    fn json(s: &str) -> Value {
        serde_json::from_str(s).unwrap()
    }
    fn keys(v: &Value) -> Vec<&str> {
        v.as_object().unwrap().keys().map(String::as_str).collect()
    }

    // A tiny encoder for building test bodies.
    fn varint(mut v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
        out
    }
    /// A varint field.
    fn v(num: u64, value: u64) -> Vec<u8> {
        [varint(num << 3), varint(value)].concat()
    }
    /// A length-delimited field.
    fn l(num: u64, payload: impl AsRef<[u8]>) -> Vec<u8> {
        let mut out = varint((num << 3) | 2);
        out.extend(varint(payload.as_ref().len() as u64));
        out.extend(payload.as_ref());
        out
    }
    /// A map entry.
    fn e(num: u64, key: &str, value: impl AsRef<[u8]>) -> Vec<u8> {
        l(num, [l(1, key), l(2, value)].concat())
    }
    fn body(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        let type_meta = [l(1, api_version), l(2, kind)].concat();
        [
            MAGIC.to_vec(),
            l(1, type_meta),
            l(2, raw),
            l(3, ""),
            l(4, ""),
        ]
        .concat()
    }

    #[test]
    fn kubectl_vectors_decode_to_the_json_kubectl_would_send() {
        for (vector, want) in vectors() {
            let got = decode(&vector).unwrap();
            assert_eq!(got, want);
            assert_eq!(keys(&got)[..2], ["apiVersion", "kind"]);
        }
    }

    #[test]
    fn can_i_access_reviews_decode() {
        let group = "authorization.k8s.io/v1";
        // Like kubectl: every string written even when empty, and an all-zero status.
        let meta = [
            l(1, ""),
            l(2, ""),
            l(3, ""),
            l(4, ""),
            l(5, ""),
            l(6, ""),
            v(7, 0),
            l(8, ""),
        ];
        let attrs = [
            l(1, "kube-system"),
            l(2, "get"),
            l(3, ""),
            l(5, "pods"),
            l(6, ""),
        ];
        let status = [v(1, 0), l(2, ""), l(3, ""), v(4, 0)].concat();
        let raw = [
            l(1, meta.concat()),
            l(2, l(1, attrs.concat())),
            l(3, status),
        ];
        let got = decode(&body(group, "SelfSubjectAccessReview", &raw.concat())).unwrap();
        let want = r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectAccessReview",
            "spec":{"resourceAttributes":{"namespace":"kube-system","verb":"get",
                "resource":"pods"}}}"#;
        assert_eq!(got, json(want));

        let non_resource = l(2, [l(1, "/metrics"), l(2, "get")].concat());
        let extra = e(5, "scopes", [l(1, "a"), l(1, "b")].concat());
        let spec = [
            non_resource,
            l(3, "alice"),
            l(4, "devs"),
            l(4, "ops"),
            extra,
            l(6, "u-1"),
        ];
        let raw = [l(2, spec.concat()), l(3, [v(1, 1), l(2, "rbac")].concat())].concat();
        let got = decode(&body(group, "SubjectAccessReview", &raw)).unwrap();
        let want = r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview",
            "spec":{"nonResourceAttributes":{"path":"/metrics","verb":"get"},"user":"alice",
                "groups":["devs","ops"],"extra":{"scopes":["a","b"]},"uid":"u-1"},
            "status":{"allowed":true,"reason":"rbac"}}"#;
        assert_eq!(got, json(want));
    }

    #[test]
    fn rbac_objects_and_rules_reviews_decode() {
        let rbac = "rbac.authorization.k8s.io/v1";
        // kubectl create clusterrole agg --aggregation-rule=a=b, and a rule of another role.
        let selector = [
            e(1, "a", "b"),
            l(2, [l(1, "k"), l(2, "In"), l(3, "x")].concat()),
        ];
        let raw = [l(1, l(1, "agg")), l(3, l(1, selector.concat()))].concat();
        let got = decode(&body(rbac, "ClusterRole", &raw)).unwrap();
        let want = r#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRole",
            "metadata":{"name":"agg"},"aggregationRule":{"clusterRoleSelectors":[{
                "matchLabels":{"a":"b"},
                "matchExpressions":[{"key":"k","operator":"In","values":["x"]}]}]}}"#;
        assert_eq!(got, json(want));
        let rule = [
            l(1, "get"),
            l(1, "list"),
            l(2, ""),
            l(3, "pods"),
            l(4, "p1"),
        ]
        .concat();
        let url_rule = [l(1, "get"), l(5, "/healthz")].concat();
        let raw = [l(1, l(1, "r")), l(2, rule), l(2, url_rule)].concat();
        let got = decode(&body(rbac, "Role", &raw)).unwrap();
        let want = r#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"Role",
            "metadata":{"name":"r"},"rules":[
                {"verbs":["get","list"],"apiGroups":[""],"resources":["pods"],"resourceNames":["p1"]},
                {"verbs":["get"],"nonResourceURLs":["/healthz"]}]}"#;
        assert_eq!(got, json(want));
        // Like kubectl: empty strings written; the group of a ServiceAccount stays out.
        let sa = [l(1, "ServiceAccount"), l(2, ""), l(3, "app"), l(4, "a")].concat();
        let user = [
            l(1, "User"),
            l(2, "rbac.authorization.k8s.io"),
            l(3, "alice"),
            l(4, ""),
        ];
        let role_ref = [l(1, ""), l(2, "ClusterRole"), l(3, "view")].concat();
        let raw = [
            l(1, l(1, "b")),
            l(2, sa),
            l(2, user.concat()),
            l(3, role_ref),
        ]
        .concat();
        let got = decode(&body(rbac, "ClusterRoleBinding", &raw)).unwrap();
        let want = r#"{"apiVersion":"rbac.authorization.k8s.io/v1","kind":"ClusterRoleBinding",
            "metadata":{"name":"b"},"subjects":[
                {"kind":"ServiceAccount","name":"app","namespace":"a"},
                {"kind":"User","apiGroup":"rbac.authorization.k8s.io","name":"alice"}],
            "roleRef":{"apiGroup":"","kind":"ClusterRole","name":"view"}}"#;
        assert_eq!(got, json(want));

        let raw = [l(2, l(1, "kube-system")), l(3, v(3, 0))].concat();
        let got = decode(&body(
            "authorization.k8s.io/v1",
            "SelfSubjectRulesReview",
            &raw,
        ));
        let want = r#"{"apiVersion":"authorization.k8s.io/v1","kind":"SelfSubjectRulesReview",
            "spec":{"namespace":"kube-system"}}"#;
        assert_eq!(got.unwrap(), json(want));
    }

    #[test]
    fn secret_with_binary_data_and_full_metadata_round_trips() {
        const T: u64 = 1_795_392_232; // 2026-11-23T00:03:52Z
        let owner = [l(1, "Pod"), l(3, "p"), l(4, "u-9"), l(5, "v1"), v(6, 0)].concat();
        let times = [
            l(8, v(1, T)),
            l(9, [v(1, T + 30), v(2, 5)].concat()),
            v(10, 30),
        ];
        let maps = [
            e(11, "b", "2"),
            e(11, "a", "1"),
            e(11, "a", "3"),
            e(12, "note", ""),
        ];
        let tail = [l(13, owner), l(14, "example.com/keep")].concat();
        let meta = [
            l(1, "s1"),
            l(3, "default"),
            v(7, 3),
            times.concat(),
            maps.concat(),
            tail,
        ];
        let data = [e(2, "bin", [0x00, 0xff, 0x01, 0x02]), e(2, "text", "hello")].concat();
        let raw = [
            l(1, meta.concat()),
            data,
            l(3, "Opaque"),
            e(4, "plain", "v"),
            v(5, 1),
        ];
        let got = decode(&body("v1", "Secret", &raw.concat())).unwrap();
        let want = r#"{"apiVersion":"v1","kind":"Secret",
            "metadata":{"name":"s1","namespace":"default","generation":3,
                "creationTimestamp":"2026-11-23T00:03:52Z",
                "deletionTimestamp":"2026-11-23T00:04:22Z","deletionGracePeriodSeconds":30,
                "labels":{"a":"3","b":"2"},"annotations":{"note":""},"ownerReferences":[
                    {"apiVersion":"v1","kind":"Pod","name":"p","uid":"u-9","controller":false}],
                "finalizers":["example.com/keep"]},
            "immutable":true,"data":{"bin":"AP8BAg==","text":"aGVsbG8="},"stringData":{"plain":"v"},
            "type":"Opaque"}"#;
        assert_eq!(got, json(want));
        // Value equality ignores key order, so check the order Go prints separately.
        let order = [
            "apiVersion",
            "kind",
            "metadata",
            "immutable",
            "data",
            "stringData",
            "type",
        ];
        assert_eq!(keys(&got), order);
        let meta_order = "name namespace generation creationTimestamp deletionTimestamp \
            deletionGracePeriodSeconds labels annotations ownerReferences finalizers";
        assert_eq!(keys(&got["metadata"]).join(" "), meta_order);
        assert_eq!(
            keys(&got["metadata"]["labels"]),
            ["a", "b"],
            "Go sorts map keys"
        );
        let bin = BASE64.decode(got["data"]["bin"].as_str().unwrap()).unwrap();
        assert_eq!(bin, [0x00, 0xff, 0x01, 0x02]);
    }

    #[test]
    fn unknown_fields_repeated_messages_and_pointers_follow_proto_and_go_rules() {
        // Unknown fields of every wire type are skipped; a repeated embedded message merges.
        let fixed = [0x9d, 0x06, 1, 2, 3, 4, 0x91, 0x06, 0, 0, 0, 0, 0, 0, 0, 0];
        let meta = [l(1, "x"), v(99, 7), l(98, "junk"), fixed.to_vec()].concat();
        let raw = [l(1, meta), l(1, l(3, "ns"))].concat();
        let got = decode(&body("v1", "ServiceAccount", &raw)).unwrap();
        assert_eq!(got["metadata"], json(r#"{"name":"x","namespace":"ns"}"#));

        // Pointers are printed when present, even when zero, and make their parent non-zero.
        let raw = [l(1, v(10, 0)), v(4, 0)].concat();
        let got = decode(&body("v1", "ServiceAccount", &raw)).unwrap();
        let want = r#"{"apiVersion":"v1","kind":"ServiceAccount",
            "metadata":{"deletionGracePeriodSeconds":0},"automountServiceAccountToken":false}"#;
        assert_eq!(got, json(want));
        let raw = [l(4, "Orphan"), v(1, 0), l(2, l(1, ""))].concat();
        let want = r#"{"apiVersion":"v1","kind":"DeleteOptions","gracePeriodSeconds":0,
            "preconditions":{"uid":""},"propagationPolicy":"Orphan"}"#;
        assert_eq!(
            decode(&body("v1", "DeleteOptions", &raw)).unwrap(),
            json(want)
        );

        // A non-zero status is kept, with its non-omitempty fields; nanos alone are a time.
        let raw = [l(2, ""), l(3, l(2, v(1, 1_795_392_232)))].concat();
        let got = decode(&body("authentication.k8s.io/v1", "TokenRequest", &raw)).unwrap();
        let want = r#"{"token":"","expirationTimestamp":"2026-11-23T00:03:52Z"}"#;
        assert_eq!(got["status"], json(want));
        let raw = l(1, l(8, v(2, 5)));
        let got = decode(&body("v1", "Namespace", &raw)).unwrap();
        let want = r#"{"creationTimestamp":"1970-01-01T00:00:00Z"}"#;
        assert_eq!(got["metadata"], json(want));
    }

    #[test]
    fn unsupported_kinds_and_encodings_are_named() {
        let (api_version, kind) = ("apps/v1".to_owned(), "Deployment".to_owned());
        let err = decode(&body(&api_version, &kind, b""));
        assert_eq!(err, Err(UnsupportedKind { api_version, kind }));
        // The right kind in the wrong group is still unsupported.
        let err = decode(&body("v1", "TokenRequest", b""));
        assert!(matches!(err, Err(UnsupportedKind { .. })), "{err:?}");
        let gzip = [body("v1", "Secret", b""), l(3, "gzip")].concat();
        assert_eq!(decode(&gzip), Err(UnsupportedEncoding("gzip".into())));
    }

    #[test]
    fn malformed_bodies_are_errors() {
        let secret = |raw: Vec<u8>| decode(&body("v1", "Secret", &raw));
        assert_eq!(decode(b""), Err(MissingMagic));
        assert_eq!(decode(br#"{"kind":"Secret"}"#), Err(MissingMagic));
        assert_eq!(decode(b"k8s\x01"), Err(MissingMagic));
        // Length prefixes far past the end, at the envelope and inside the object.
        assert_eq!(
            decode(b"k8s\x00\x0a\xff\xff\xff\xff\x0f"),
            Err(LengthOutOfBounds)
        );
        assert_eq!(
            secret([vec![0x0a], varint(u64::MAX)].concat()),
            Err(LengthOutOfBounds)
        );
        let eleven_byte_varint = [vec![0x38], vec![0xff; 10], vec![1]].concat();
        assert_eq!(secret(l(1, eleven_byte_varint)), Err(VarintTooLong));
        // A group (wire type 3), field number 0, a string sent as a varint, bad UTF-8.
        assert_eq!(decode(b"k8s\x00\x0b"), Err(BadWireType(3)));
        assert_eq!(decode(b"k8s\x00\x02\x00"), Err(InvalidTag));
        assert_eq!(secret(l(1, v(1, 5))), Err(WrongWireType { field: "name" }));
        assert_eq!(
            secret(l(1, l(1, [0xc3, 0x28]))),
            Err(InvalidUtf8 { field: "name" })
        );
        let year_36812 = l(1, l(8, v(1, 1 << 40)));
        assert_eq!(
            secret(year_36812),
            Err(TimeOutOfRange {
                field: "creationTimestamp"
            })
        );
    }

    #[test]
    fn every_truncation_of_a_kubectl_vector_fails_unless_it_ends_on_an_envelope_field() {
        for (vector, _) in vectors() {
            // The envelope ends with contentEncoding "" and contentType "" (1a 00 22 00); a cut
            // right after typeMeta, raw or contentEncoding still leaves a complete message.
            let n = vector.len();
            let complete = [6 + usize::from(vector[5]), n - 4, n - 2];
            for len in 0..n {
                let result = decode(&vector[..len]);
                assert_eq!(result.is_ok(), complete.contains(&len), "{len}: {result:?}");
            }
        }
    }

    #[test]
    fn deep_nesting_neither_recurses_nor_panics() {
        // 10 000 nested messages inside an unknown field are stepped over without recursion.
        let blob = (0..10_000).fold(Vec::new(), |inner, _| l(1, inner));
        assert!(blob.len() > 20_000);
        let raw = l(1, [l(1, "deep"), l(50, blob)].concat());
        let got = decode(&body("v1", "Secret", &raw)).unwrap();
        assert_eq!(got["metadata"], json(r#"{"name":"deep"}"#));
        // The static schemas cannot nest past MAX_DEPTH, so exercise the guard directly.
        let nested = l(1, l(1, "x"));
        let schema = schemas::SERVICE_ACCOUNT;
        assert_eq!(decode_message(&[&nested], schema, MAX_DEPTH), Err(TooDeep));
        assert!(decode_message(&[&nested], schema, MAX_DEPTH - 1).is_ok());
    }
}
