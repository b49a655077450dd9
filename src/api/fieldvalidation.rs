//! Decoding a write's object as kube-apiserver's handlers do: `kind`/`apiVersion` checked
//! against the URL (and filled in when absent), and the `fieldValidation` directive
//! (`Strict`, `Warn`, `Ignore`; absent means `Warn`) applied to unknown and duplicated
//! fields. Unknown fields are dropped in every mode, so they are never stored.
//!
//! Mirrors `staging/src/k8s.io/apiserver/pkg/endpoints/handlers/{create,update,patch,rest}.go`,
//! the JSON serializer's `Decode` (`gvkWithDefaults`, `UseOrCreateObject`) and the strict
//! decoder of `sigs.k8s.io/json` (paths such as `spec.containers[0].imagePullPolicy`, in
//! document order; a field both unknown and duplicated is reported once, as unknown).
//! Expected messages follow `test/integration/apiserver/field_validation_test.go`.
//! Unknown fields are found by decoding into the kind's k8s-openapi type through
//! `serde_ignored`; duplicates by walking the raw JSON, or for YAML by the line of each
//! repeated key (yaml.v2's wording). Protobuf bodies cannot carry either. Knows no HTTP
//! beyond the `Status` it returns.

use std::collections::HashSet;
use std::fmt;

use http::StatusCode;
use serde::de::{DeserializeSeed, Deserializer as _, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Value, json};

use super::Status;
use super::patch::PatchType;
use crate::registry::resources::{self, KindVisitor, RESOURCES, Resource};

/// The `fieldValidation` query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Directive {
    Ignore,
    Warn,
    Strict,
}

impl Directive {
    /// Reads `fieldValidation`. Absent or empty is `Warn` (`fieldValidation()` in
    /// `handlers/rest.go`); the values are case-sensitive, and anything else fails the
    /// options validation (`ValidateFieldValidation`) with 422 before the body is read.
    /// `options_kind` is `CreateOptions`, `UpdateOptions` or `PatchOptions`.
    pub(crate) fn from_query(value: Option<&str>, options_kind: &str) -> Result<Directive, Status> {
        match value.unwrap_or_default() {
            "" | "Warn" => Ok(Directive::Warn),
            "Strict" => Ok(Directive::Strict),
            "Ignore" => Ok(Directive::Ignore),
            other => {
                let detail = format!(
                    "Unsupported value: {}: supported values: \"\", \"Ignore\", \"Strict\", \"Warn\"",
                    go_quote(other)
                );
                Err(Status::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    format!("{options_kind}.meta.k8s.io \"\" is invalid: fieldValidation: {detail}"),
                )
                .with_details(json!({
                    "group": "meta.k8s.io",
                    "kind": options_kind,
                    "causes": [{"reason": "FieldValueNotSupported", "message": detail, "field": "fieldValidation"}],
                })))
            }
        }
    }
}

/// A string quoted as Go's `%q` does for the text this module quotes (JSON escaping agrees
/// with it for printable text).
fn go_quote(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Seg {
    Key(String),
    Index(usize),
}

/// A path as the strict decoder prints it: `spec.containers[0].name`.
pub(crate) fn format_path(path: &[Seg]) -> String {
    let mut out = String::new();
    for seg in path {
        match seg {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

fn segments(path: &serde_ignored::Path<'_>, out: &mut Vec<Seg>) {
    use serde_ignored::Path;
    match path {
        Path::Root => {}
        Path::Seq { parent, index } => {
            segments(parent, out);
            out.push(Seg::Index(*index));
        }
        Path::Map { parent, key } => {
            segments(parent, out);
            out.push(Seg::Key(key.clone()));
        }
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => segments(parent, out),
    }
}

/// The paths of the fields of `obj` that the kind's type does not have, or `None` when the
/// object does not decode into the type at all (the registry's typed check then reports the
/// real problem: "non-strict errors trump", as in the Go handlers).
fn unknown_fields(res: &Resource, obj: &Value) -> Option<Vec<Vec<Seg>>> {
    struct Unknown<'a>(&'a Value);
    impl KindVisitor for Unknown<'_> {
        type Output = Option<Vec<Vec<Seg>>>;
        fn visit<T>(self) -> Self::Output
        where
            T: serde::de::DeserializeOwned + k8s_openapi::schemars::JsonSchema,
        {
            let mut found = Vec::new();
            let decoded: Result<T, _> = serde_ignored::deserialize(self.0, |path| {
                let mut segs = Vec::new();
                segments(&path, &mut segs);
                found.push(segs);
            });
            decoded.ok().map(|_| found)
        }
    }
    // The type checks `apiVersion`/`kind` itself; they were checked against the URL already.
    let mut typed = obj.clone();
    if let Some(map) = typed.as_object_mut() {
        map.insert("apiVersion".into(), Value::from(res.api_version()));
        map.insert("kind".into(), Value::from(res.kind));
    }
    resources::with_type(res, Unknown(&typed)).unwrap_or(Some(Vec::new()))
}

/// Removes the value at `path`, if there is one.
fn remove_path(value: &mut Value, path: &[Seg]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut cur = value;
    for seg in parents {
        let next = match (seg, cur) {
            (Seg::Key(k), Value::Object(m)) => m.get_mut(k),
            (Seg::Index(i), Value::Array(a)) => a.get_mut(*i),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return,
        }
    }
    if let (Seg::Key(k), Value::Object(m)) = (last, cur) {
        m.shift_remove(k);
    }
}

/// Walks raw JSON in document order and reports, per object key: an unknown field the
/// first time its path is met (its value is not looked into), a duplicated known field each
/// time it repeats. With `unknown` empty every field is known (a patch body).
struct Walk<'a> {
    path: Vec<Seg>,
    unknown: &'a HashSet<Vec<Seg>>,
    reported: &'a mut HashSet<Vec<Seg>>,
    out: &'a mut Vec<String>,
    /// `json patch ` for the operations of a JSON patch, whose only fields are these.
    json_patch_ops: bool,
}

const JSON_PATCH_FIELDS: &[&str] = &["op", "path", "from", "value"];

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Walk {
            path,
            unknown,
            reported,
            out,
            json_patch_ops,
        } = self;
        let mut index = 0;
        loop {
            let mut child = path.clone();
            child.push(Seg::Index(index));
            let walk = Walk {
                path: child,
                unknown,
                reported: &mut *reported,
                out: &mut *out,
                json_patch_ops,
            };
            if seq.next_element_seed(walk)?.is_none() {
                return Ok(());
            }
            index += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Walk {
            path,
            unknown,
            reported,
            out,
            json_patch_ops,
        } = self;
        let mut seen: HashSet<String> = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            let mut child = path.clone();
            child.push(Seg::Key(key.clone()));
            let prefix = if json_patch_ops { "json patch " } else { "" };
            let is_unknown = if json_patch_ops {
                !JSON_PATCH_FIELDS.contains(&key.as_str())
            } else {
                unknown.contains(&child)
            };
            if is_unknown {
                if reported.insert(child.clone()) {
                    out.push(format!(
                        "{prefix}unknown field {}",
                        go_quote(&format_path(&child))
                    ));
                }
                map.next_value::<IgnoredAny>()?;
                continue;
            }
            if !seen.insert(key) {
                out.push(format!(
                    "{prefix}duplicate field {}",
                    go_quote(&format_path(&child))
                ));
            }
            if json_patch_ops {
                map.next_value::<IgnoredAny>()?;
            } else {
                map.next_value_seed(Walk {
                    path: child,
                    unknown,
                    reported: &mut *reported,
                    out: &mut *out,
                    json_patch_ops,
                })?;
            }
        }
        Ok(())
    }
}

/// The strict-decoding problems of a raw JSON document, in document order.
fn walk_json(raw: &[u8], unknown: &HashSet<Vec<Seg>>, json_patch: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut reported = HashSet::new();
    let mut de = serde_json::Deserializer::from_slice(raw);
    let result = if json_patch {
        // The operations are the array's elements; each is walked with the op fields known.
        struct Ops<'a>(&'a mut HashSet<Vec<Seg>>, &'a mut Vec<String>);
        impl<'de> Visitor<'de> for Ops<'_> {
            type Value = ();
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON patch")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
                let empty = HashSet::new();
                let mut index = 0;
                loop {
                    let walk = Walk {
                        path: vec![Seg::Index(index)],
                        unknown: &empty,
                        reported: &mut *self.0,
                        out: &mut *self.1,
                        json_patch_ops: true,
                    };
                    if seq.next_element_seed(walk)?.is_none() {
                        return Ok(());
                    }
                    index += 1;
                }
            }
        }
        de.deserialize_seq(Ops(&mut reported, &mut out))
    } else {
        Walk {
            path: Vec::new(),
            unknown,
            reported: &mut reported,
            out: &mut out,
            json_patch_ops: false,
        }
        .deserialize(&mut de)
    };
    // The body was parsed before; a walk that fails finds nothing more to report.
    if result.is_err() {
        return Vec::new();
    }
    out
}

/// The strict-decoding error text: `strict decoding error: <e1>, <e2>`
/// (`runtime.NewStrictDecodingError`).
fn strict_error(problems: &[String]) -> String {
    format!("strict decoding error: {}", problems.join(", "))
}

/// The group-version of `apiVersion`: `v1` is the core group.
fn split_api_version(api_version: &str) -> (&str, &str) {
    api_version.split_once('/').unwrap_or(("", api_version))
}

/// The Go package that holds a group's internal types (`converting (v1.Secret) to
/// (core.ConfigMap)`): `core` for the legacy group, else the group's first label.
fn internal_package(group: &str) -> &str {
    if group.is_empty() {
        "core"
    } else {
        group.split('.').next().unwrap_or(group)
    }
}

/// Checks the body's `kind` and `apiVersion` against the resource of the URL and fills them
/// in when absent, as the handlers' codec does: the JSON serializer defaults a missing kind
/// and group-version from the URL (`gvkWithDefaults`), then creates the object of the
/// data's kind (`UseOrCreateObject`) and converts it to the URL's internal type. A kind the
/// server does not know fails with `no kind … is registered`, a known kind of another
/// resource with `unknown conversion`; both are 400s wrapped by `transformDecodeError`.
pub(crate) fn check_type_meta(res: &Resource, obj: &mut Value) -> Result<(), Status> {
    let Some(map) = obj.as_object_mut() else {
        return Err(Status::bad_request(
            "the body of the request must be a JSON object",
        ));
    };
    let text = |v: Option<&Value>| v.and_then(Value::as_str).unwrap_or_default().to_string();
    let mut kind = text(map.get("kind"));
    let api_version = text(map.get("apiVersion"));
    let (mut group, mut version) = {
        let (g, v) = split_api_version(&api_version);
        (g.to_string(), v.to_string())
    };
    if kind.is_empty() {
        kind = res.kind.to_string();
    }
    if version.is_empty() && group.is_empty() {
        group = res.group.to_string();
        version = res.version.to_string();
    }
    if version.is_empty() && group == res.group {
        version = res.version.to_string();
    }
    let handled = |reason: String| {
        Status::bad_request(format!(
            "{kind} in version {} cannot be handled as a {}: {reason}",
            go_quote(&version),
            res.kind
        ))
    };
    if version.is_empty() {
        let data = serde_json::to_string(map).unwrap_or_default();
        return Err(handled(format!(
            "Object 'apiVersion' is missing in '{data}'"
        )));
    }
    let group_version = if group.is_empty() {
        version.clone()
    } else {
        format!("{group}/{version}")
    };
    let registered = RESOURCES
        .iter()
        .any(|r| r.group == group && r.version == version && r.kind == kind);
    if !registered {
        return Err(handled(format!(
            "no kind {} is registered for version {} in scheme \"pkg/api/legacyscheme/scheme.go:30\"",
            go_quote(&kind),
            go_quote(&group_version)
        )));
    }
    if kind != res.kind || group != res.group {
        return Err(handled(format!(
            "converting ({version}.{kind}) to ({}.{}): unknown conversion",
            internal_package(res.group),
            res.kind
        )));
    }
    if version != res.version {
        // Another version of the same kind converts, then fails the handler's check.
        return Err(Status::bad_request(format!(
            "the API version in the data ({group_version}) does not match the expected API version ({})",
            res.api_version()
        )));
    }
    map.insert("apiVersion".into(), Value::from(res.api_version()));
    map.insert("kind".into(), Value::from(res.kind));
    Ok(())
}

/// What a create or update body was, for the problems only its text shows.
#[derive(Clone, Copy)]
pub(crate) enum Source<'a> {
    /// JSON: duplicates and unknown fields in document order.
    Json(&'a [u8]),
    /// YAML: repeated keys as Go's YAML decoder words them, then unknown fields in key
    /// order (the Go handlers convert YAML to JSON with sorted keys first).
    Yaml(&'a str),
    /// Protobuf, or anything else already decoded: unknown fields only.
    Decoded,
}

/// Field validation of a create or update body (`obj`, already type-checked). Returns the
/// warnings to send.
pub(crate) fn validate_object(
    res: &Resource,
    directive: Directive,
    source: Source<'_>,
    obj: &mut Value,
) -> Result<Vec<String>, Status> {
    let Some(mut unknown) = unknown_fields(res, obj) else {
        return Ok(Vec::new());
    };
    unknown.sort();
    let sorted_unknowns = |unknown: &[Vec<Seg>]| -> Vec<String> {
        unknown
            .iter()
            .map(|p| format!("unknown field {}", go_quote(&format_path(p))))
            .collect()
    };
    let problems = match (directive, source) {
        (Directive::Ignore, _) => Vec::new(),
        (_, Source::Json(raw)) => {
            let set: HashSet<Vec<Seg>> = unknown.iter().cloned().collect();
            walk_json(raw, &set, false)
        }
        (_, Source::Yaml(text)) => {
            let repeated = yaml_repeated_keys(text);
            let mut problems = Vec::new();
            if !repeated.is_empty() {
                problems.push(format!(
                    "{YAML_ERRORS_PREFIX}{}",
                    repeated
                        .iter()
                        .map(|line| format!("  {line}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                ));
            }
            problems.extend(sorted_unknowns(&unknown));
            problems
        }
        (_, Source::Decoded) => sorted_unknowns(&unknown),
    };
    for path in &unknown {
        remove_path(obj, path);
    }
    finish_object(res, directive, problems)
}

/// How Go's YAML decoder begins its list of errors.
const YAML_ERRORS_PREFIX: &str = "yaml: unmarshal errors:\n";

/// The repeated keys of a YAML document in document order, as yaml.v2 reports them when
/// decoding strictly: `line <n>: key "<k>" already set in map`, `n` being the repeat's line.
fn yaml_repeated_keys(text: &str) -> Vec<String> {
    /// A node's repeated keys, its own and its children's, in document order.
    struct Repeats(Vec<String>);

    impl<'de> serde::Deserialize<'de> for Repeats {
        fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(RepeatsVisitor)
        }
    }

    struct RepeatsVisitor;

    impl<'de> Visitor<'de> for RepeatsVisitor {
        type Value = Repeats;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a YAML node")
        }
        fn visit_bool<E>(self, _: bool) -> Result<Repeats, E> {
            Ok(Repeats(Vec::new()))
        }
        fn visit_i64<E>(self, _: i64) -> Result<Repeats, E> {
            Ok(Repeats(Vec::new()))
        }
        fn visit_u64<E>(self, _: u64) -> Result<Repeats, E> {
            Ok(Repeats(Vec::new()))
        }
        fn visit_f64<E>(self, _: f64) -> Result<Repeats, E> {
            Ok(Repeats(Vec::new()))
        }
        fn visit_str<E>(self, _: &str) -> Result<Repeats, E> {
            Ok(Repeats(Vec::new()))
        }
        fn visit_unit<E>(self) -> Result<Repeats, E> {
            Ok(Repeats(Vec::new()))
        }
        fn visit_none<E>(self) -> Result<Repeats, E> {
            Ok(Repeats(Vec::new()))
        }
        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Repeats, D::Error> {
            d.deserialize_any(RepeatsVisitor)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Repeats, A::Error> {
            let mut out = Vec::new();
            while let Some(Repeats(inner)) = seq.next_element::<Repeats>()? {
                out.extend(inner);
            }
            Ok(Repeats(out))
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Repeats, A::Error> {
            let mut out = Vec::new();
            let mut seen = HashSet::new();
            while let Some(key) = map.next_key::<serde_saphyr::Spanned<Value>>()? {
                let shown = match &key.value {
                    Value::String(k) => go_quote(k),
                    other => other.to_string(),
                };
                if !seen.insert(shown.clone()) {
                    out.push(format!(
                        "line {}: key {shown} already set in map",
                        key.referenced.line()
                    ));
                }
                let Repeats(inner) = map.next_value::<Repeats>()?;
                out.extend(inner);
            }
            Ok(Repeats(out))
        }
    }

    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::options::DuplicateKeyPolicy::PassThrough,
    };
    serde_saphyr::from_str_with_options::<Repeats>(text, options)
        .map(|r| r.0)
        .unwrap_or_default()
}

/// The warnings of a list of problems: a YAML error block gives one warning per line
/// (`parseYAMLWarnings` in `handlers/rest.go`).
fn as_warnings(problems: Vec<String>) -> Vec<String> {
    problems
        .into_iter()
        .flat_map(|p| match p.strip_prefix(YAML_ERRORS_PREFIX) {
            Some(lines) => lines.split('\n').map(|l| l.trim().to_string()).collect(),
            None => vec![p],
        })
        .collect()
}

fn finish_object(
    res: &Resource,
    directive: Directive,
    problems: Vec<String>,
) -> Result<Vec<String>, Status> {
    match directive {
        _ if problems.is_empty() => Ok(Vec::new()),
        Directive::Strict => Err(Status::bad_request(format!(
            "{kind} in version {} cannot be handled as a {kind}: {}",
            go_quote(res.version),
            strict_error(&problems),
            kind = res.kind
        ))),
        Directive::Warn => Ok(as_warnings(problems)),
        Directive::Ignore => Ok(Vec::new()),
    }
}

/// Field validation of a patch: problems of the patch document itself (duplicates; for a
/// JSON patch, unknown or duplicated operation fields), then the unknown fields of the
/// patched object in key order (the Go handlers decode the patched map, whose keys are
/// sorted). `Strict` fails with 422 `Invalid` on field `patch` (`handlers/patch.go`).
/// Server-side apply is not handled here: see [`validate_apply`].
pub(crate) fn validate_patch(
    res: &Resource,
    directive: Directive,
    patch_type: PatchType,
    patch_body: &[u8],
    patched: &mut Value,
) -> Result<Vec<String>, Status> {
    let Some(mut unknown) = unknown_fields(res, patched) else {
        return Ok(Vec::new());
    };
    unknown.sort();
    let mut problems = Vec::new();
    if directive != Directive::Ignore {
        let is_json = matches!(
            patch_type,
            PatchType::Json | PatchType::Merge | PatchType::StrategicMerge
        );
        if is_json {
            problems = walk_json(patch_body, &HashSet::new(), patch_type == PatchType::Json);
        }
        problems.extend(
            unknown
                .iter()
                .map(|p| format!("unknown field {}", go_quote(&format_path(p)))),
        );
    }
    for path in &unknown {
        remove_path(patched, path);
    }
    match directive {
        _ if problems.is_empty() => Ok(Vec::new()),
        Directive::Strict => {
            // The invalid value is the patched object for JSON and merge patches and the
            // patch map (Go's `%+v`) for strategic merge patches.
            let shown = if patch_type == PatchType::StrategicMerge {
                serde_json::from_slice::<Value>(patch_body)
                    .map(|v| go_format(&v))
                    .unwrap_or_default()
            } else {
                serde_json::to_string(patched).unwrap_or_default()
            };
            let detail = format!(
                "Invalid value: {}: {}",
                go_quote(&shown),
                strict_error(&problems)
            );
            Err(Status::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "Invalid",
                format!(" \"\" is invalid: patch: {detail}"),
            )
            .with_details(json!({
                "causes": [{"reason": "FieldValueInvalid", "message": detail, "field": "patch"}],
            })))
        }
        Directive::Warn => Ok(problems),
        Directive::Ignore => Ok(Vec::new()),
    }
}

/// Go's `%+v` of a decoded JSON value: `map[a:1 b:[x y]]`, keys sorted.
fn go_format(v: &Value) -> String {
    match v {
        Value::Null => "<nil>".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        Value::Array(a) => format!(
            "[{}]",
            a.iter().map(go_format).collect::<Vec<_>>().join(" ")
        ),
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let parts: Vec<String> = keys
                .into_iter()
                .map(|k| format!("{k}:{}", go_format(&m[k])))
                .collect();
            format!("map[{}]", parts.join(" "))
        }
    }
}

/// Server-side apply: the object is converted to its schema's typed form, which refuses
/// fields the schema does not declare in every `fieldValidation` mode
/// (structured-merge-diff, via `FieldManager.Apply`): a 500 without reason,
/// `failed to create typed patch object (<gvk>): .<path>: field not declared in schema`.
pub(crate) fn validate_apply(res: &Resource, applied: &Value) -> Result<(), Status> {
    let Some(mut unknown) = unknown_fields(res, applied) else {
        return Ok(());
    };
    if unknown.is_empty() {
        return Ok(());
    }
    unknown.sort();
    let gvk = format!("{}, Kind={}", res.api_version(), res.kind);
    let gvk = if res.group.is_empty() {
        format!("/{gvk}")
    } else {
        gvk
    };
    let errors: Vec<String> = unknown
        .iter()
        .map(|p| format!(".{}: field not declared in schema", format_path(p)))
        .collect();
    Err(Status::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        "",
        format!(
            "failed to create typed patch object ({gvk}): {}",
            errors.join("\n")
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::resources::core;

    #[test]
    fn paths_print_like_the_go_strict_decoder() {
        let p = vec![
            Seg::Key("spec".into()),
            Seg::Key("containers".into()),
            Seg::Index(0),
            Seg::Key("imagePullPolicyy".into()),
        ];
        assert_eq!(format_path(&p), "spec.containers[0].imagePullPolicyy");
        assert_eq!(
            format_path(&[Seg::Index(1), Seg::Key("path".into())]),
            "[1].path"
        );
        assert_eq!(format_path(&[Seg::Key("a".into())]), "a");
    }

    #[test]
    fn directive_values() {
        assert_eq!(
            Directive::from_query(None, "CreateOptions").unwrap(),
            Directive::Warn
        );
        assert_eq!(
            Directive::from_query(Some(""), "CreateOptions").unwrap(),
            Directive::Warn
        );
        assert_eq!(
            Directive::from_query(Some("Strict"), "CreateOptions").unwrap(),
            Directive::Strict
        );
        let err = Directive::from_query(Some("strict"), "PatchOptions").unwrap_err();
        assert_eq!(err.code, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            err.message,
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldValidation: Unsupported value: \"strict\": supported values: \"\", \"Ignore\", \"Strict\", \"Warn\""
        );
    }

    /// The integration test's body, on a Pod: errors in document order, an unknown field
    /// that is also duplicated reported once.
    #[test]
    fn strict_create_reports_like_kube_apiserver() {
        let raw = br#"{"apiVersion":"v1","kind":"Pod",
            "metadata":{"name":"dupename","name":"p","labels":{"app":"x"},"unknownMeta":"v"},
            "spec":{"unknown1":"v","unknownDupe":"a","unknownDupe":"b",
                    "hostNetwork":true,"hostNetwork":false,
                    "containers":[{"name":"c","image":"i","unknownNested":"v",
                                   "imagePullPolicy":"Always","imagePullPolicy":"Never"}]}}"#;
        let mut obj: Value = serde_json::from_slice(raw).unwrap();
        let res = core("pods");
        let err = validate_object(res, Directive::Strict, Source::Json(raw), &mut obj.clone())
            .unwrap_err();
        assert_eq!(err.code, StatusCode::BAD_REQUEST);
        assert_eq!(
            err.message,
            "Pod in version \"v1\" cannot be handled as a Pod: strict decoding error: \
             duplicate field \"metadata.name\", unknown field \"metadata.unknownMeta\", \
             unknown field \"spec.unknown1\", unknown field \"spec.unknownDupe\", \
             duplicate field \"spec.hostNetwork\", \
             unknown field \"spec.containers[0].unknownNested\", \
             duplicate field \"spec.containers[0].imagePullPolicy\""
        );
        let warnings = validate_object(res, Directive::Warn, Source::Json(raw), &mut obj).unwrap();
        assert_eq!(warnings.len(), 7);
        assert_eq!(warnings[1], "unknown field \"metadata.unknownMeta\"");
        // Dropped whatever the mode.
        assert!(obj["spec"].get("unknown1").is_none());
        assert!(obj["spec"]["containers"][0].get("unknownNested").is_none());
        assert!(obj["metadata"].get("unknownMeta").is_none());
        assert_eq!(obj["spec"]["containers"][0]["imagePullPolicy"], "Never");
        let mut again: Value = serde_json::from_slice(raw).unwrap();
        assert!(
            validate_object(res, Directive::Ignore, Source::Json(raw), &mut again)
                .unwrap()
                .is_empty()
        );
        assert!(again["spec"].get("unknownDupe").is_none());
    }

    #[test]
    fn map_keys_are_known_and_their_duplicates_reported() {
        let raw = br#"{"metadata":{"name":"c"},"data":{"a":"1","a":"2"}}"#;
        let mut obj: Value = serde_json::from_slice(raw).unwrap();
        let w = validate_object(
            core("configmaps"),
            Directive::Warn,
            Source::Json(raw),
            &mut obj,
        )
        .unwrap();
        assert_eq!(w, ["duplicate field \"data.a\""]);
    }

    #[test]
    fn without_raw_json_unknowns_come_sorted() {
        let mut obj =
            json!({"metadata": {"name": "s"}, "zeta": 1, "automountServiceAcountToken": true});
        let w = validate_object(
            core("serviceaccounts"),
            Directive::Warn,
            Source::Decoded,
            &mut obj,
        )
        .unwrap();
        assert_eq!(
            w,
            [
                "unknown field \"automountServiceAcountToken\"",
                "unknown field \"zeta\""
            ]
        );
        assert_eq!(obj, json!({"metadata": {"name": "s"}}));
    }

    /// field_validation_test.go's YAML case: repeated keys with their lines (unknown ones
    /// included), then the unknown fields sorted.
    #[test]
    fn yaml_bodies_report_repeated_keys_by_line() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: dupename\n  name: p\n  unknownMeta: x\nspec:\n  unknownDupe: a\n  unknownDupe: b\n  containers:\n  - name: c\n    image: i\n    imagePullPolicy: Always\n    imagePullPolicy: Never\n";
        let mut obj: Value = crate::api::body::yaml(text.as_bytes()).unwrap();
        let res = core("pods");
        let err = validate_object(res, Directive::Strict, Source::Yaml(text), &mut obj.clone())
            .unwrap_err();
        assert_eq!(
            err.message,
            "Pod in version \"v1\" cannot be handled as a Pod: strict decoding error: yaml: unmarshal errors:\n  \
             line 5: key \"name\" already set in map\n  line 9: key \"unknownDupe\" already set in map\n  \
             line 14: key \"imagePullPolicy\" already set in map, unknown field \"metadata.unknownMeta\", \
             unknown field \"spec.unknownDupe\""
        );
        let w = validate_object(res, Directive::Warn, Source::Yaml(text), &mut obj).unwrap();
        assert_eq!(
            w,
            [
                "line 5: key \"name\" already set in map",
                "line 9: key \"unknownDupe\" already set in map",
                "line 14: key \"imagePullPolicy\" already set in map",
                "unknown field \"metadata.unknownMeta\"",
                "unknown field \"spec.unknownDupe\"",
            ]
        );
        assert_eq!(obj["metadata"]["name"], "p");
    }

    #[test]
    fn patch_problems_then_sorted_unknowns() {
        let body = br#"{"spec":{"unknown1":"v","unknownDupe":"a","unknownDupe":"b","hostNetwork":true,"hostNetwork":false,
            "containers":[{"name":"c","unknownNested":"v"}]}}"#;
        let mut patched = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"unknown1": "v", "unknownDupe": "b", "hostNetwork": false,
                     "containers": [{"name": "c", "image": "i", "unknownNested": "v"}]}});
        let w = validate_patch(
            core("pods"),
            Directive::Warn,
            PatchType::Merge,
            body,
            &mut patched.clone(),
        )
        .unwrap();
        assert_eq!(
            w,
            [
                "duplicate field \"spec.unknownDupe\"",
                "duplicate field \"spec.hostNetwork\"",
                "unknown field \"spec.containers[0].unknownNested\"",
                "unknown field \"spec.unknown1\"",
                "unknown field \"spec.unknownDupe\"",
            ]
        );
        let err = validate_patch(
            core("pods"),
            Directive::Strict,
            PatchType::StrategicMerge,
            body,
            &mut patched,
        )
        .unwrap_err();
        assert_eq!(err.code, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            err.message
                .starts_with(" \"\" is invalid: patch: Invalid value: \"map[spec:map[")
        );
        assert!(err.message.ends_with(": strict decoding error: duplicate field \"spec.unknownDupe\", duplicate field \"spec.hostNetwork\", unknown field \"spec.containers[0].unknownNested\", unknown field \"spec.unknown1\", unknown field \"spec.unknownDupe\""));
        assert!(patched["spec"].get("unknown1").is_none());
    }

    #[test]
    fn json_patch_operation_fields() {
        let body = br#"[{"op":"add","path":"/data/a","value":"1","foo":"bar"},{"op":"add","path":"/x","path":"/data/b","value":"2"}]"#;
        let mut patched = json!({"metadata": {"name": "c"}, "data": {"a": "1", "b": "2"}});
        let w = validate_patch(
            core("configmaps"),
            Directive::Warn,
            PatchType::Json,
            body,
            &mut patched,
        )
        .unwrap();
        assert_eq!(
            w,
            [
                "json patch unknown field \"[0].foo\"",
                "json patch duplicate field \"[1].path\""
            ]
        );
    }

    #[test]
    fn apply_refuses_undeclared_fields() {
        let err = validate_apply(
            core("serviceaccounts"),
            &json!({"metadata": {"name": "a"}, "automountServiceAcountToken": true}),
        )
        .unwrap_err();
        assert_eq!(err.code, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(
            err.message,
            "failed to create typed patch object (/v1, Kind=ServiceAccount): .automountServiceAcountToken: field not declared in schema"
        );
        assert!(
            validate_apply(core("serviceaccounts"), &json!({"metadata": {"name": "a"}})).is_ok()
        );
    }

    #[test]
    fn type_meta_against_the_url() {
        let cm = core("configmaps");
        let mut o = json!({"metadata": {"name": "a"}});
        check_type_meta(cm, &mut o).unwrap();
        assert_eq!(o["kind"], "ConfigMap");
        assert_eq!(o["apiVersion"], "v1");
        let msg = |mut v: Value| check_type_meta(cm, &mut v).unwrap_err().message;
        assert_eq!(
            msg(json!({"apiVersion": "v1", "kind": "Secret"})),
            "Secret in version \"v1\" cannot be handled as a ConfigMap: converting (v1.Secret) to (core.ConfigMap): unknown conversion"
        );
        assert_eq!(
            msg(json!({"apiVersion": "v2", "kind": "ConfigMap"})),
            "ConfigMap in version \"v2\" cannot be handled as a ConfigMap: no kind \"ConfigMap\" is registered for version \"v2\" in scheme \"pkg/api/legacyscheme/scheme.go:30\""
        );
        assert_eq!(
            msg(json!({"apiVersion": "apps/v1", "kind": "ConfigMap"})),
            "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: no kind \"ConfigMap\" is registered for version \"apps/v1\" in scheme \"pkg/api/legacyscheme/scheme.go:30\""
        );
        assert_eq!(
            msg(json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease"})),
            "Lease in version \"v1\" cannot be handled as a ConfigMap: converting (v1.Lease) to (core.ConfigMap): unknown conversion"
        );
        // Only a kind: the version comes from the URL.
        let mut o = json!({"kind": "ConfigMap"});
        check_type_meta(cm, &mut o).unwrap();
        assert_eq!(o["apiVersion"], "v1");
    }
}
