//! Discovery and OpenAPI: `/api`, `/apis`, `/api/v1`, `/apis/<g>[/<v>]` in both the
//! aggregated (`apidiscovery.k8s.io/v2`) and legacy forms, `/version`, and the OpenAPI
//! v3 documents kubectl's `apply`/`create -f`/`edit` fetch before writing
//! (`shared/reference/kubectl-wire.md` §3.2, §5.2, §5.6). All built from the resource
//! table, so what is served and what is advertised cannot drift apart.

use std::collections::BTreeMap;

use aws_lc_rs::digest;
use serde_json::{Value, json};

use crate::registry::resources::{RESOURCES, Resource};
use crate::wellknown;

/// Content type of aggregated discovery; kubectl picks its decoder by it.
pub(crate) fn aggregated_content_type(version: &str) -> String {
    format!("application/json;g=apidiscovery.k8s.io;v={version};as=APIGroupDiscoveryList")
}

/// Which aggregated discovery version the Accept header asks for, if any.
pub(crate) fn wants_aggregated(accept: &str) -> Option<&'static str> {
    for part in accept.split(',') {
        let p = part.replace(' ', "");
        if p.contains("as=APIGroupDiscoveryList") && p.contains("g=apidiscovery.k8s.io") {
            if p.contains("v=v2beta1") {
                return Some("v2beta1");
            }
            if p.contains("v=v2") {
                return Some("v2");
            }
        }
    }
    None
}

/// Groups other than core, in the order discovery lists them, with their versions.
fn groups() -> BTreeMap<&'static str, Vec<&'static str>> {
    let mut out: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for r in RESOURCES.iter().filter(|r| !r.group.is_empty()) {
        let versions = out.entry(r.group).or_default();
        if !versions.contains(&r.version) {
            versions.push(r.version);
        }
    }
    out
}

fn resources_of(group: &str, version: &str) -> impl Iterator<Item = &'static Resource> {
    let (g, v) = (group.to_string(), version.to_string());
    RESOURCES
        .iter()
        .filter(move |r| r.group == g && r.version == v)
}

fn aggregated_resource(r: &Resource) -> Value {
    let mut v = json!({
        "resource": r.plural,
        "responseKind": {"group": r.group, "version": r.version, "kind": r.kind},
        "scope": if r.namespaced { "Namespaced" } else { "Cluster" },
        "singularResource": r.singular,
        "verbs": r.verbs,
    });
    if !r.short_names.is_empty() {
        v["shortNames"] = json!(r.short_names);
    }
    if !r.categories.is_empty() {
        v["categories"] = json!(r.categories);
    }
    if !r.subresources.is_empty() {
        let subs: Vec<Value> = r
            .subresources
            .iter()
            .map(|s| {
                json!({
                    "subresource": s.name,
                    "responseKind": {"group": s.group, "version": s.version, "kind": s.kind},
                    "verbs": s.verbs,
                })
            })
            .collect();
        v["subresources"] = json!(subs);
    }
    v
}

fn aggregated_group(name: &str, versions: &[&str]) -> Value {
    let versions: Vec<Value> = versions
        .iter()
        .map(|v| {
            let resources: Vec<Value> = resources_of(name, v).map(aggregated_resource).collect();
            json!({"version": v, "resources": resources, "freshness": "Current"})
        })
        .collect();
    let metadata = if name.is_empty() {
        json!({"creationTimestamp": null})
    } else {
        json!({"name": name, "creationTimestamp": null})
    };
    json!({"metadata": metadata, "versions": versions})
}

/// `/api` (core) or `/apis` (every other group) in aggregated form.
pub(crate) fn aggregated(core: bool, version: &str) -> Value {
    let items: Vec<Value> = if core {
        vec![aggregated_group("", &["v1"])]
    } else {
        groups()
            .iter()
            .map(|(g, vs)| aggregated_group(g, vs))
            .collect()
    };
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": format!("apidiscovery.k8s.io/{version}"),
        "metadata": {},
        "items": items,
    })
}

/// Legacy `/api`.
pub(crate) fn api_versions(server_address: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
    })
}

fn group_entry(name: &str, versions: &[&str]) -> Value {
    let vs: Vec<Value> = versions
        .iter()
        .map(|v| json!({"groupVersion": format!("{name}/{v}"), "version": v}))
        .collect();
    let preferred = vs.first().cloned().unwrap_or(Value::Null);
    json!({"name": name, "versions": vs, "preferredVersion": preferred})
}

/// Legacy `/apis`.
pub(crate) fn api_group_list() -> Value {
    let groups: Vec<Value> = groups().iter().map(|(g, vs)| group_entry(g, vs)).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

/// Legacy `/apis/<group>`, if the group exists.
pub(crate) fn api_group(name: &str) -> Option<Value> {
    let all = groups();
    let versions = all.get(name)?;
    let mut v = group_entry(name, versions);
    v["kind"] = json!("APIGroup");
    v["apiVersion"] = json!("v1");
    Some(v)
}

/// Legacy `/api/v1` or `/apis/<group>/<version>`, if it exists.
pub(crate) fn api_resource_list(group: &str, version: &str) -> Option<Value> {
    let mut list = Vec::new();
    for r in resources_of(group, version) {
        let mut e = json!({
            "name": r.plural,
            "singularName": r.singular,
            "namespaced": r.namespaced,
            "kind": r.kind,
            "verbs": r.verbs,
        });
        if !r.short_names.is_empty() {
            e["shortNames"] = json!(r.short_names);
        }
        if !r.categories.is_empty() {
            e["categories"] = json!(r.categories);
        }
        list.push(e);
        for s in r.subresources {
            let mut e = json!({
                "name": format!("{}/{}", r.plural, s.name),
                "singularName": "",
                "namespaced": r.namespaced,
                "kind": s.kind,
                "verbs": s.verbs,
            });
            if s.group != r.group {
                e["group"] = json!(s.group);
                e["version"] = json!(s.version);
            }
            list.push(e);
        }
    }
    if list.is_empty() {
        return None;
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(
        json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": list}),
    )
}

/// `/version`.
pub(crate) fn version() -> Value {
    json!({
        "major": wellknown::KUBE_MAJOR,
        "minor": wellknown::KUBE_MINOR,
        "gitVersion": wellknown::KUBE_GIT_VERSION,
        "gitCommit": concat!("tokenwarden-", env!("CARGO_PKG_VERSION")),
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "",
        "compiler": "rustc",
        "platform": format!("{}/{}", std::env::consts::OS, if cfg!(target_arch = "x86_64") { "amd64" } else if cfg!(target_arch = "aarch64") { "arm64" } else { std::env::consts::ARCH }),
    })
}

/// `group/version` path key of OpenAPI v3 (`api/v1`, `apis/coordination.k8s.io/v1`).
fn openapi_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// Every group-version with its OpenAPI v3 document and that document's hash.
pub(crate) struct OpenApi {
    docs: BTreeMap<String, (String, Vec<u8>)>,
}

impl OpenApi {
    pub(crate) fn build() -> OpenApi {
        let mut gvs: Vec<(&str, &str)> = vec![("", "v1")];
        for (g, vs) in groups() {
            for v in vs {
                gvs.push((g, v));
            }
        }
        let mut docs = BTreeMap::new();
        for (g, v) in gvs {
            let body = serde_json::to_vec(&openapi_document(g, v)).unwrap_or_default();
            let hash = hex_upper(digest::digest(&digest::SHA512, &body).as_ref());
            docs.insert(openapi_key(g, v), (hash, body));
        }
        OpenApi { docs }
    }

    /// `/openapi/v3`.
    pub(crate) fn root(&self) -> Value {
        let paths: serde_json::Map<String, Value> = self
            .docs
            .iter()
            .map(|(k, (hash, _))| {
                (
                    k.clone(),
                    json!({"serverRelativeURL": format!("/openapi/v3/{k}?hash={hash}")}),
                )
            })
            .collect();
        json!({"paths": paths})
    }

    /// The document at `/openapi/v3/<key>` and its hash.
    pub(crate) fn document(&self, key: &str) -> Option<(&str, &[u8])> {
        self.docs.get(key).map(|(h, b)| (h.as_str(), b.as_slice()))
    }
}

fn hex_upper(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// A small but honest OpenAPI v3 document: every path and operation that exists, each
/// tagged with its group-version-kind, and the `fieldValidation` parameter on writes
/// (kubectl checks for it to decide that the server validates fields itself).
fn openapi_document(group: &str, version: &str) -> Value {
    let base = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    let mut paths = serde_json::Map::new();
    let param = |name: &str| json!({"name": name, "in": "query", "schema": {"type": "string"}, "uniqueItems": true});
    for r in resources_of(group, version) {
        let gvk = json!({"group": r.group, "version": r.version, "kind": r.kind});
        let op = |action: &str, id: String, write: bool| {
            let mut o = json!({
                "operationId": id,
                "responses": {"200": {"description": "OK"}},
                "x-kubernetes-action": action,
                "x-kubernetes-group-version-kind": gvk,
            });
            if write {
                o["parameters"] = json!([
                    param("dryRun"),
                    param("fieldManager"),
                    param("fieldValidation")
                ]);
            }
            o
        };
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
        let mut coll = serde_json::Map::new();
        if r.verbs.contains(&"list") {
            coll.insert("get".into(), op("list", format!("list{}", r.kind), false));
        }
        if r.verbs.contains(&"create") {
            coll.insert("post".into(), op("post", format!("create{}", r.kind), true));
        }
        // kubectl decides that the server validates fields itself by finding, for the
        // kind, a PATCH operation that takes `fieldValidation`; without one it falls back
        // to /openapi/v2, which is not served. Create-only kinds (the reviews) therefore
        // list one on their collection, marked as not served.
        if !r.verbs.contains(&"patch") {
            let mut p = op("patch", format!("patch{}", r.kind), true);
            p["description"] =
                json!("not served: listed so that kubectl validates fields on the server");
            coll.insert("patch".into(), p);
        }
        paths.insert(collection, Value::Object(coll));
        if r.verbs.contains(&"get") {
            paths.insert(
                item,
                json!({
                    "get": op("get", format!("read{}", r.kind), false),
                    "put": op("put", format!("replace{}", r.kind), true),
                    "patch": op("patch", format!("patch{}", r.kind), true),
                    "delete": op("delete", format!("delete{}", r.kind), false),
                }),
            );
        }
    }
    json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": wellknown::KUBE_GIT_VERSION},
        "paths": paths,
        "components": {"schemas": {}},
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aggregated_core_has_service_accounts() {
        let d = aggregated(true, "v2");
        let res = &d["items"][0]["versions"][0]["resources"];
        let sa = res
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "serviceaccounts")
            .unwrap();
        assert_eq!(sa["shortNames"], json!(["sa"]));
        assert_eq!(sa["scope"], "Namespaced");
        assert_eq!(sa["responseKind"]["kind"], "ServiceAccount");
        let ns = res
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["resource"] == "namespaces")
            .unwrap();
        assert_eq!(ns["scope"], "Cluster");
    }

    #[test]
    fn accept_negotiation() {
        let kubectl = "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json;g=apidiscovery.k8s.io;v=v2beta1;as=APIGroupDiscoveryList,application/json";
        assert_eq!(wants_aggregated(kubectl), Some("v2"));
        assert_eq!(wants_aggregated("application/json, */*"), None);
    }

    #[test]
    fn legacy_lists_agree_with_table() {
        let core = api_resource_list("", "v1").unwrap();
        assert!(
            core["resources"]
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["name"] == "pods/status")
        );
        assert!(api_resource_list("nope", "v1").is_none());
        let groups = api_group_list();
        assert!(
            groups["groups"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g["name"] == "authentication.k8s.io")
        );
        assert_eq!(
            api_group("coordination.k8s.io").unwrap()["preferredVersion"]["version"],
            "v1"
        );
    }

    #[test]
    fn openapi_has_patch_with_field_validation() {
        let o = OpenApi::build();
        let root = o.root();
        let url = root["paths"]["api/v1"]["serverRelativeURL"]
            .as_str()
            .unwrap();
        assert!(url.starts_with("/openapi/v3/api/v1?hash="));
        let (_, body) = o.document("api/v1").unwrap();
        let doc: Value = serde_json::from_slice(body).unwrap();
        let patch = &doc["paths"]["/api/v1/namespaces/{namespace}/secrets/{name}"]["patch"];
        assert_eq!(patch["x-kubernetes-group-version-kind"]["kind"], "Secret");
        assert!(
            patch["parameters"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "fieldValidation")
        );
    }
}
