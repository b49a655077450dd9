//! OpenAPI documents: `/openapi/v2` (Swagger 2.0, JSON and gnostic protobuf) and the
//! `/openapi/v3/<group-version>` documents kubectl's `apply`, `create -f`, `edit`, `diff` and
//! `explain` read. Every served kind's schema is generated from its k8s-openapi type (the
//! resource table's `with_type`), named as Kubernetes names it (`io.k8s.api.core.v1.Pod`),
//! tagged with `x-kubernetes-group-version-kind`, and referenced as `#/definitions/…` (v2)
//! or `#/components/schemas/…` (v3). Paths come from the same table, so what is served and
//! what is described cannot drift apart. Mirrors kube-openapi's `builder` (v2),
//! `builder3` (v3) and `handler` (the v2 ETag and content types).

use std::collections::{BTreeMap, HashSet};

use aws_lc_rs::digest;
use k8s_openapi::schemars::SchemaGenerator;
use k8s_openapi::schemars::generate::SchemaSettings;
use serde_json::{Map, Value, json};

use super::{openapi_proto, patch};
use crate::registry::resources::{self, KindVisitor, RESOURCES, Resource};
use crate::wellknown;

/// A document in one encoding, with its ETag (kube-openapi's `computeETag`: upper-case hex
/// SHA-512 of the bytes served).
pub(crate) struct Encoded {
    /// Shared, so that serving a document does not copy it.
    pub(crate) body: bytes::Bytes,
    pub(crate) etag: String,
}

impl Encoded {
    fn new(body: Vec<u8>) -> Encoded {
        let etag = hex_upper(digest::digest(&digest::SHA512, &body).as_ref());
        Encoded {
            body: body.into(),
            etag,
        }
    }
}

/// Every OpenAPI document this server serves, built once at start.
pub(crate) struct OpenApi {
    pub(crate) v2_json: Encoded,
    pub(crate) v2_proto: Encoded,
    /// `api/v1`, `apis/<group>/<version>` → the v3 document.
    v3: BTreeMap<String, Encoded>,
}

impl OpenApi {
    pub(crate) fn build() -> OpenApi {
        let v2 = v2_document();
        let v2_proto = Encoded::new(openapi_proto::encode(&v2));
        let v2_json = Encoded::new(serde_json::to_vec(&v2).unwrap_or_default());
        let mut v3 = BTreeMap::new();
        for (g, v) in group_versions() {
            let body = serde_json::to_vec(&v3_document(g, v)).unwrap_or_default();
            v3.insert(v3_key(g, v), Encoded::new(body));
        }
        OpenApi {
            v2_json,
            v2_proto,
            v3,
        }
    }

    /// `/openapi/v3`: where each group-version's document is, by its current hash.
    pub(crate) fn v3_root(&self) -> Value {
        let paths: Map<String, Value> = self
            .v3
            .iter()
            .map(|(k, doc)| {
                (
                    k.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{k}?hash={}", doc.etag)}),
                )
            })
            .collect();
        json!({"paths": paths})
    }

    /// The v3 document at `/openapi/v3/<key>`.
    pub(crate) fn v3_document(&self, key: &str) -> Option<&Encoded> {
        self.v3.get(key)
    }
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Every group-version served, core first.
fn group_versions() -> Vec<(&'static str, &'static str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for r in RESOURCES {
        if !out.contains(&(r.group, r.version)) {
            out.push((r.group, r.version));
        }
    }
    out.sort_by_key(|(g, _)| !g.is_empty());
    out
}

/// `api/v1` or `apis/<group>/<version>`: the key of a v3 document.
fn v3_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// The definition name of each kind, by group, version and kind.
type KindNames = BTreeMap<(&'static str, &'static str, &'static str), String>;

/// Schemas generated from k8s-openapi types, Swagger 2.0 style (`#/definitions/<name>`).
struct Schemas {
    generator: SchemaGenerator,
    names: KindNames,
}

impl Schemas {
    fn new() -> Schemas {
        // No transforms and no meta-schema: k8s-openapi's schemas are already OpenAPI
        // schemas, only the place their references point to differs between v2 and v3.
        let settings = SchemaSettings::draft07().with(|s| {
            s.definitions_path = "/definitions".into();
            s.meta_schema = None;
            s.transforms.clear();
        });
        Schemas {
            generator: settings.into_generator(),
            names: BTreeMap::new(),
        }
    }

    /// Adds the schema of a resource's kind (and everything it references).
    fn add(&mut self, r: &'static Resource) {
        struct Add<'a>(&'a mut SchemaGenerator);
        impl KindVisitor for Add<'_> {
            type Output = String;
            fn visit<T>(self) -> String
            where
                T: serde::de::DeserializeOwned + k8s_openapi::schemars::JsonSchema,
            {
                // Called for the definition it leaves behind; the `$ref` it returns is not needed.
                let _ = self.0.subschema_for::<T>();
                T::schema_name().into_owned()
            }
        }
        if let Some(name) = resources::with_type(r, Add(&mut self.generator)) {
            self.names.insert((r.group, r.version, r.kind), name);
        }
    }

    /// The definitions, each resource kind tagged with its group-version-kind as
    /// kube-openapi tags them (a list of `{group, kind, version}`).
    fn definitions(mut self) -> (Map<String, Value>, KindNames) {
        let mut defs: Map<String, Value> =
            self.generator.take_definitions(false).into_iter().collect();
        let mut seen = HashSet::new();
        for ((_, _, kind), name) in &self.names {
            add_patch_extensions(&mut defs, kind, name, "", &mut seen);
        }
        for ((group, version, kind), name) in &self.names {
            if let Some(Value::Object(d)) = defs.get_mut(name) {
                d.insert(
                    "x-kubernetes-group-version-kind".into(),
                    json!([{"group": group, "kind": kind, "version": version}]),
                );
            }
        }
        sort_keys(&mut defs);
        (defs, self.names)
    }
}

/// The definition a schema refers to (`#/definitions/<name>`), if it is a reference.
fn definition_of(schema: &Value) -> Option<String> {
    schema
        .get("$ref")?
        .as_str()?
        .strip_prefix("#/definitions/")
        .map(str::to_string)
}

/// Tags the lists of `kind` reachable from definition `def` (at JSON path `path`) with the
/// strategic-merge-patch extensions kube-openapi takes from the Go struct tags
/// (`x-kubernetes-patch-strategy`, `x-kubernetes-patch-merge-key`). A list's items add no
/// path segment, as in the patch table.
fn add_patch_extensions(
    defs: &mut Map<String, Value>,
    kind: &str,
    def: &str,
    path: &str,
    seen: &mut HashSet<(String, String)>,
) {
    if !seen.insert((def.to_string(), path.to_string())) {
        return;
    }
    let properties: Vec<(String, Value)> = defs
        .get(def)
        .and_then(|d| d.get("properties"))
        .and_then(Value::as_object)
        .map(|p| p.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    for (name, schema) in properties {
        let child = if path.is_empty() {
            name.clone()
        } else {
            format!("{path}.{name}")
        };
        let next = if schema["type"] == "array" {
            if let Some((strategy, key)) = patch::patch_extensions(kind, &child)
                && let Some(Value::Object(prop)) = defs
                    .get_mut(def)
                    .and_then(|d| d.get_mut("properties"))
                    .and_then(|p| p.get_mut(&name))
            {
                prop.insert("x-kubernetes-patch-strategy".into(), json!(strategy));
                if let Some(key) = key {
                    prop.insert("x-kubernetes-patch-merge-key".into(), json!(key));
                }
            }
            definition_of(&schema["items"])
        } else {
            definition_of(&schema)
        };
        if let Some(next) = next {
            add_patch_extensions(defs, kind, &next, &child, seen);
        }
    }
}

fn sort_keys(map: &mut Map<String, Value>) {
    let mut entries: Vec<(String, Value)> = std::mem::take(map).into_iter().collect();
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    map.extend(entries);
}

/// Which document a path table is for: the two differ in how parameters and bodies are
/// described (Swagger 2.0 `type`/`in: body` against OpenAPI 3 `schema`/`requestBody`).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Flavor {
    V2,
    V3,
}

impl Flavor {
    fn reference(self, name: &str) -> Value {
        match self {
            Flavor::V2 => json!({"$ref": format!("#/definitions/{name}")}),
            Flavor::V3 => json!({"$ref": format!("#/components/schemas/{name}")}),
        }
    }

    fn string_parameter(self, name: &str, location: &str) -> Value {
        let mut p = match self {
            Flavor::V2 => {
                json!({"name": name, "in": location, "type": "string", "uniqueItems": true})
            }
            Flavor::V3 => {
                json!({"name": name, "in": location, "schema": {"type": "string", "uniqueItems": true}})
            }
        };
        if location == "path" {
            p["required"] = json!(true);
        }
        p
    }
}

/// The media types a patch accepts, as kube-apiserver lists them.
const PATCH_TYPES: &[&str] = &[
    "application/json-patch+json",
    "application/merge-patch+json",
    "application/strategic-merge-patch+json",
    "application/apply-patch+yaml",
];

/// Every path and operation of one resource: the verbs it serves, each tagged with its
/// group-version-kind and `x-kubernetes-action`. Writes list `dryRun`, `fieldManager` and
/// `fieldValidation`: kubectl (v3 from 1.27, v2 before) decides that the server validates
/// fields itself by finding `fieldValidation` on the kind's PATCH operation.
fn resource_paths(
    r: &Resource,
    schema: Option<&str>,
    flavor: Flavor,
    paths: &mut Map<String, Value>,
) {
    let base = if r.group.is_empty() {
        format!("/api/{}", r.version)
    } else {
        format!("/apis/{}/{}", r.group, r.version)
    };
    let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
    let ok = |code: &str| -> Value {
        let mut resp = json!({"description": if code == "201" { "Created" } else { "OK" }});
        if let Some(name) = schema {
            match flavor {
                Flavor::V2 => resp["schema"] = flavor.reference(name),
                Flavor::V3 => {
                    resp["content"] =
                        json!({"application/json": {"schema": flavor.reference(name)}})
                }
            }
        }
        json!({ code: resp })
    };
    let op = |action: &str, verb_id: &str, write: bool, body: Option<&[&str]>| -> Value {
        let mut o = json!({
            "operationId": format!("{verb_id}{}", r.kind),
            "responses": ok(if action == "post" { "201" } else { "200" }),
            "x-kubernetes-action": action,
            "x-kubernetes-group-version-kind": gvk,
        });
        let mut params: Vec<Value> = Vec::new();
        if write {
            for q in ["dryRun", "fieldManager", "fieldValidation"] {
                params.push(flavor.string_parameter(q, "query"));
            }
        }
        if let Some(types) = body {
            let body_schema = match (action, schema) {
                ("patch", _) | (_, None) => json!({"type": "object"}),
                (_, Some(name)) => flavor.reference(name),
            };
            match flavor {
                Flavor::V2 => {
                    params.push(json!({"name": "body", "in": "body", "required": true, "schema": body_schema}));
                    o["consumes"] = json!(types);
                }
                Flavor::V3 => {
                    let content: Map<String, Value> = types
                        .iter()
                        .map(|t| ((*t).to_string(), json!({"schema": body_schema})))
                        .collect();
                    o["requestBody"] = json!({"content": content, "required": true});
                }
            }
        }
        if !params.is_empty() {
            o["parameters"] = Value::Array(params);
        }
        o
    };
    let ns_param = r
        .namespaced
        .then(|| flavor.string_parameter("namespace", "path"));
    let (collection, item) = if r.namespaced {
        (
            format!("{base}/namespaces/{{namespace}}/{}", r.plural),
            format!("{base}/namespaces/{{namespace}}/{}/{{name}}", r.plural),
        )
    } else {
        (
            format!("{base}/{}", r.plural),
            format!("{base}/{}/{{name}}", r.plural),
        )
    };
    let json_only: &[&str] = &["application/json"];
    let mut coll = Map::new();
    if r.verbs.contains(&"list") {
        coll.insert("get".into(), op("list", "list", false, None));
    }
    if r.verbs.contains(&"create") {
        coll.insert("post".into(), op("post", "create", true, Some(json_only)));
    }
    // A create-only kind (the reviews) has no PATCH; without one kubectl would fall back
    // to client-side validation. List one on the collection, marked as not served.
    if !r.verbs.contains(&"patch") {
        let mut p = op("patch", "patch", true, Some(PATCH_TYPES));
        p["description"] =
            json!("not served: listed so that kubectl validates fields on the server");
        coll.insert("patch".into(), p);
    }
    if let Some(p) = &ns_param {
        coll.insert("parameters".into(), json!([p]));
    }
    paths.insert(collection, Value::Object(coll));
    if r.verbs.contains(&"get") {
        let mut it = Map::new();
        it.insert("get".into(), op("get", "read", false, None));
        if r.verbs.contains(&"update") {
            it.insert("put".into(), op("put", "replace", true, Some(json_only)));
        }
        if r.verbs.contains(&"patch") {
            it.insert(
                "patch".into(),
                op("patch", "patch", true, Some(PATCH_TYPES)),
            );
        }
        if r.verbs.contains(&"delete") {
            it.insert("delete".into(), op("delete", "delete", false, None));
        }
        let mut params = vec![flavor.string_parameter("name", "path")];
        params.extend(ns_param);
        it.insert("parameters".into(), Value::Array(params));
        paths.insert(item, Value::Object(it));
    }
}

/// `/openapi/v2`: every served kind in one Swagger 2.0 document.
fn v2_document() -> Value {
    let mut schemas = Schemas::new();
    for r in RESOURCES {
        schemas.add(r);
    }
    let (definitions, names) = schemas.definitions();
    let mut paths = Map::new();
    for r in RESOURCES {
        let name = names.get(&(r.group, r.version, r.kind)).map(String::as_str);
        resource_paths(r, name, Flavor::V2, &mut paths);
    }
    json!({
        "swagger": "2.0",
        "info": {"title": "Kubernetes", "version": wellknown::KUBE_GIT_VERSION},
        "paths": paths,
        "definitions": definitions,
    })
}

/// `/openapi/v3/<group>/<version>`: that group-version's paths and the schemas they reach.
fn v3_document(group: &str, version: &str) -> Value {
    let mut schemas = Schemas::new();
    let served: Vec<&'static Resource> = RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
        .collect();
    for r in &served {
        schemas.add(r);
    }
    let (definitions, names) = schemas.definitions();
    let mut paths = Map::new();
    for r in &served {
        let name = names.get(&(r.group, r.version, r.kind)).map(String::as_str);
        resource_paths(r, name, Flavor::V3, &mut paths);
    }
    let components: Map<String, Value> = definitions
        .into_iter()
        .map(|(k, v)| (k, to_v3_schema(v)))
        .collect();
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": wellknown::KUBE_GIT_VERSION},
        "paths": paths,
        "components": {"schemas": components},
    })
}

/// A Swagger 2.0 schema as an OpenAPI 3 component schema, as kube-openapi's `builder3`
/// writes it: references point into `#/components/schemas/`, and a reference with
/// siblings (a field's own description) becomes `allOf: [{$ref}]` next to them, since a
/// v3 `$ref` may not have siblings.
fn to_v3_schema(v: Value) -> Value {
    match v {
        Value::Object(mut map) => {
            if let Some(Value::String(r)) = map.remove("$ref") {
                let target =
                    json!({"$ref": r.replacen("#/definitions/", "#/components/schemas/", 1)});
                if map.is_empty() {
                    return target;
                }
                let mut out: Map<String, Value> =
                    map.into_iter().map(|(k, v)| (k, to_v3_schema(v))).collect();
                out.insert("allOf".into(), json!([target]));
                return Value::Object(out);
            }
            Value::Object(map.into_iter().map(|(k, v)| (k, to_v3_schema(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(to_v3_schema).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2() -> Value {
        v2_document()
    }

    #[test]
    fn v2_names_and_tags_every_kind() {
        let doc = v2();
        let defs = doc["definitions"].as_object().unwrap();
        let sa = &defs["io.k8s.api.core.v1.ServiceAccount"];
        assert_eq!(
            sa["x-kubernetes-group-version-kind"],
            json!([{"group": "", "kind": "ServiceAccount", "version": "v1"}])
        );
        assert_eq!(
            sa["properties"]["metadata"]["$ref"],
            "#/definitions/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
        );
        assert!(defs.contains_key("io.k8s.api.coordination.v1.Lease"));
        assert!(defs.contains_key("io.k8s.api.core.v1.Container"));
        // Every reference resolves (kube-openapi's NewOpenAPIData refuses dangling ones).
        let text = serde_json::to_string(&doc["definitions"]).unwrap();
        for part in text.split("\"$ref\":\"#/definitions/").skip(1) {
            let name = part.split('"').next().unwrap();
            assert!(defs.contains_key(name), "dangling reference {name}");
        }
        for r in RESOURCES {
            assert!(
                defs.values()
                    .any(|d| d["x-kubernetes-group-version-kind"][0]["kind"] == r.kind),
                "{} has no schema",
                r.kind
            );
        }
    }

    #[test]
    fn lists_carry_their_patch_strategy() {
        let doc = v2();
        let defs = &doc["definitions"];
        let secrets = &defs["io.k8s.api.core.v1.ServiceAccount"]["properties"]["secrets"];
        assert_eq!(secrets["x-kubernetes-patch-strategy"], "merge");
        assert_eq!(secrets["x-kubernetes-patch-merge-key"], "name");
        let ports = &defs["io.k8s.api.core.v1.Container"]["properties"]["ports"];
        assert_eq!(ports["x-kubernetes-patch-merge-key"], "containerPort");
        let volumes = &defs["io.k8s.api.core.v1.PodSpec"]["properties"]["volumes"];
        assert_eq!(volumes["x-kubernetes-patch-strategy"], "merge,retainKeys");
        let finalizers =
            &defs["io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"]["properties"]["finalizers"];
        assert_eq!(finalizers["x-kubernetes-patch-strategy"], "merge");
        assert!(finalizers.get("x-kubernetes-patch-merge-key").is_none());
        // No tag, no extension: tolerations replace.
        let tolerations = &defs["io.k8s.api.core.v1.PodSpec"]["properties"]["tolerations"];
        assert!(tolerations.get("x-kubernetes-patch-strategy").is_none());
    }

    #[test]
    fn v2_patch_operations_take_field_validation() {
        let doc = v2();
        let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/serviceaccounts/{name}"]["patch"];
        assert_eq!(
            patch["x-kubernetes-group-version-kind"]["kind"],
            "ServiceAccount"
        );
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation"
                    && p["in"] == "query"
                    && p["type"] == "string")
        );
    }

    #[test]
    fn v3_components_use_all_of_for_described_references() {
        let doc = v3_document("", "v1");
        let schemas = doc["components"]["schemas"].as_object().unwrap();
        let meta = &schemas["io.k8s.api.core.v1.Secret"]["properties"]["metadata"];
        assert_eq!(
            meta["allOf"],
            json!([{"$ref": "#/components/schemas/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"}])
        );
        assert!(meta["description"].is_string());
        assert!(meta.get("$ref").is_none());
        assert!(
            !serde_json::to_string(&doc)
                .unwrap()
                .contains("#/definitions/")
        );
        // Only what the group-version reaches: no Lease in the core document.
        assert!(!schemas.contains_key("io.k8s.api.coordination.v1.Lease"));
        let lease = v3_document("coordination.k8s.io", "v1");
        assert_eq!(
            lease["components"]["schemas"]["io.k8s.api.coordination.v1.Lease"]["x-kubernetes-group-version-kind"]
                [0]["group"],
            "coordination.k8s.io"
        );
    }

    #[test]
    fn to_v3_keeps_bare_references() {
        assert_eq!(
            to_v3_schema(json!({"items": {"$ref": "#/definitions/A"}})),
            json!({"items": {"$ref": "#/components/schemas/A"}})
        );
    }

    #[test]
    fn root_lists_documents_by_hash() {
        let o = OpenApi::build();
        let root = o.v3_root();
        let url = root["paths"]["api/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        let hash = &o.v3_document("api/v1").unwrap().etag;
        assert_eq!(url, format!("/openapi/v3/api/v1?hash={hash}"));
        assert!(root["paths"]["apis/coordination.k8s.io/v1"].is_object());
        assert_eq!(o.v2_json.etag.len(), 128);
        assert_ne!(o.v2_json.etag, o.v2_proto.etag);
    }
}
