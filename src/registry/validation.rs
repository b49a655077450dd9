//! Field errors and the name rules Kubernetes applies (apimachinery
//! `pkg/util/validation/validation.go`, `pkg/api/validation/objectmeta.go`), formatted
//! the way `field.Error` prints them so kubectl shows the same text.

use std::fmt;

use serde_json::Value;

/// The kinds of field error Kubernetes reports (`field.ErrorType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ErrorType {
    Invalid,
    Required,
    Forbidden,
    TooLong,
    NotSupported,
}

impl ErrorType {
    /// The `details.causes[].reason` string.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            ErrorType::Invalid => "FieldValueInvalid",
            ErrorType::Required => "FieldValueRequired",
            ErrorType::Forbidden => "FieldValueForbidden",
            ErrorType::TooLong => "FieldValueTooLong",
            ErrorType::NotSupported => "FieldValueNotSupported",
        }
    }

    fn label(self) -> &'static str {
        match self {
            ErrorType::Invalid => "Invalid value",
            ErrorType::Required => "Required value",
            ErrorType::Forbidden => "Forbidden",
            ErrorType::TooLong => "Too long",
            ErrorType::NotSupported => "Unsupported value",
        }
    }
}

/// One `field.Error`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FieldError {
    pub(crate) kind: ErrorType,
    pub(crate) field: String,
    /// The offending value, shown for Invalid / NotSupported / Duplicate.
    pub(crate) value: Option<Value>,
    pub(crate) detail: String,
}

impl FieldError {
    pub(crate) fn invalid(
        field: impl Into<String>,
        value: Value,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            kind: ErrorType::Invalid,
            field: field.into(),
            value: Some(value),
            detail: detail.into(),
        }
    }

    pub(crate) fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            kind: ErrorType::Required,
            field: field.into(),
            value: None,
            detail: detail.into(),
        }
    }

    pub(crate) fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        FieldError {
            kind: ErrorType::Forbidden,
            field: field.into(),
            value: None,
            detail: detail.into(),
        }
    }

    pub(crate) fn too_long(field: impl Into<String>, max: usize) -> Self {
        FieldError {
            kind: ErrorType::TooLong,
            field: field.into(),
            value: None,
            detail: format!("must have at most {max} bytes"),
        }
    }

    /// `field.NotSupported`: `Unsupported value: "x": supported values: "a", "b"`.
    pub(crate) fn not_supported(field: impl Into<String>, value: &str, supported: &[&str]) -> Self {
        let quoted: Vec<String> = supported.iter().map(|s| format!("{s:?}")).collect();
        FieldError {
            kind: ErrorType::NotSupported,
            field: field.into(),
            value: Some(Value::String(value.to_string())),
            detail: format!("supported values: {}", quoted.join(", ")),
        }
    }

    /// `field.Invalid` whose bad value has no JSON form (a Go struct or slice): `shown` is
    /// what Go's `%#v` prints for it, e.g. `rbac.RoleRef{APIGroup:"…", Kind:"Role", Name:"r"}`
    /// or [`go_string_slice`]. It is carried in the detail, so the message reads the same.
    pub(crate) fn invalid_go(
        field: impl Into<String>,
        shown: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            kind: ErrorType::Invalid,
            field: field.into(),
            value: None,
            detail: format!("{}: {}", shown.into(), detail.into()),
        }
    }

    /// The message without the field path: what `details.causes[].message` carries.
    pub(crate) fn message(&self) -> String {
        let mut out = self.kind.label().to_string();
        if let Some(v) = &self.value
            && matches!(self.kind, ErrorType::Invalid | ErrorType::NotSupported)
        {
            out.push_str(": ");
            out.push_str(&go_value(v));
        }
        if !self.detail.is_empty() {
            out.push_str(": ");
            out.push_str(&self.detail);
        }
        out
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message())
    }
}

/// Values print as Go's `%#v`-ish form used by field errors: strings quoted, numbers bare.
fn go_value(v: &Value) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Null => "null".to_string(),
        other => other.to_string(),
    }
}

/// `[]string{"a", "b"}`: Go's `%#v` of a string slice, the bad value of a list field.
pub(crate) fn go_string_slice<S: AsRef<str>>(items: &[S]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{:?}", s.as_ref())).collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;

/// The character rule of a DNS-1123 label, without the length limit.
fn is_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_lowercase() || b[0].is_ascii_digit())
        && (b[b.len() - 1].is_ascii_lowercase() || b[b.len() - 1].is_ascii_digit())
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
}

/// `IsDNS1123Label`: the rule for Namespace names.
pub(crate) fn dns1123_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        errs.push(format!(
            "must be no more than {DNS1123_LABEL_MAX} characters"
        ));
    }
    if !is_label(s) {
        errs.push("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')".to_string());
    }
    errs
}

/// `IsDNS1123Subdomain`: the rule for most object names.
pub(crate) fn dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(format!(
            "must be no more than {DNS1123_SUBDOMAIN_MAX} characters"
        ));
    }
    if !s.split('.').all(is_label) {
        errs.push("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')".to_string());
    }
    errs
}

/// `path.ValidatePathSegmentName`: the rule for Event names and other loosely named kinds.
pub(crate) fn path_segment(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s == "." || s == ".." {
        errs.push(format!("may not be '{s}'"));
    }
    for bad in ["/", "%"] {
        if s.contains(bad) {
            errs.push(format!("may not contain '{bad}'"));
        }
    }
    errs
}

/// `IsConfigMapKey`: keys of Secret and ConfigMap data.
pub(crate) fn config_map_key(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(format!(
            "must be no more than {DNS1123_SUBDOMAIN_MAX} characters"
        ));
    }
    if s.is_empty()
        || !s
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
    {
        errs.push("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')".to_string());
    }
    if s == "." {
        errs.push("must not be '.'".to_string());
    } else if s == ".." {
        errs.push("must not be '..'".to_string());
    } else if s.starts_with("..") {
        errs.push("must not start with '..'".to_string());
    }
    errs
}

/// `IsQualifiedName`: label and annotation keys.
pub(crate) fn qualified_name(s: &str) -> Vec<String> {
    let (prefix, name) = match s.rsplit_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, s),
    };
    let mut errs = Vec::new();
    if let Some(p) = prefix {
        if p.is_empty() {
            errs.push("prefix part must be non-empty".to_string());
        } else if !dns1123_subdomain(p).is_empty() {
            errs.push(format!("prefix part {}", dns1123_subdomain(p).join("; ")));
        }
    }
    if name.is_empty() {
        errs.push("name part must be non-empty".to_string());
    } else {
        let b = name.as_bytes();
        if b.len() > 63 {
            errs.push("name part must be no more than 63 characters".to_string());
        }
        let ok = b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
        if !ok {
            errs.push("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".to_string());
        }
    }
    errs
}

/// `IsValidLabelValue`.
pub(crate) fn label_value(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 63 {
        errs.push("must be no more than 63 characters".to_string());
    }
    if !s.is_empty() {
        let b = s.as_bytes();
        let ok = b[0].is_ascii_alphanumeric()
            && b[b.len() - 1].is_ascii_alphanumeric()
            && b.iter()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
        if !ok {
            errs.push("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')".to_string());
        }
    }
    errs
}

/// `ValidateLabelSelector` (apimachinery `pkg/apis/meta/v1/validation`) for a
/// `metav1.LabelSelector` at `path`, with invalid label values in selectors refused (as on
/// create). Returns whether it found anything, since callers that then convert the selector
/// (`LabelSelectorAsSelector`) report one more error for it.
pub(crate) fn label_selector(selector: &Value, path: &str, errs: &mut Vec<FieldError>) -> bool {
    let before = errs.len();
    if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
        let field = format!("{path}.matchLabels");
        for (k, v) in labels {
            for e in qualified_name(k) {
                errs.push(FieldError::invalid(
                    field.as_str(),
                    Value::from(k.as_str()),
                    e,
                ));
            }
            let v = v.as_str().unwrap_or_default();
            for e in label_value(v) {
                errs.push(FieldError::invalid(field.as_str(), Value::from(v), e));
            }
        }
    }
    let expressions = selector.get("matchExpressions").and_then(Value::as_array);
    for (i, expr) in expressions.into_iter().flatten().enumerate() {
        let field = format!("{path}.matchExpressions[{i}]");
        let values: Vec<&str> = expr
            .get("values")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .map(|v| v.as_str().unwrap_or_default())
            .collect();
        let operator = expr
            .get("operator")
            .and_then(Value::as_str)
            .unwrap_or_default();
        match operator {
            "In" | "NotIn" if values.is_empty() => errs.push(FieldError::required(
                format!("{field}.values"),
                "must be specified when `operator` is 'In' or 'NotIn'",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => errs.push(FieldError::forbidden(
                format!("{field}.values"),
                "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errs.push(FieldError::invalid(
                format!("{field}.operator"),
                Value::from(other),
                "not a valid selector operator",
            )),
        }
        let key = expr.get("key").and_then(Value::as_str).unwrap_or_default();
        for e in qualified_name(key) {
            errs.push(FieldError::invalid(
                format!("{field}.key"),
                Value::from(key),
                e,
            ));
        }
        for (j, v) in values.iter().enumerate() {
            for e in label_value(v) {
                errs.push(FieldError::invalid(
                    format!("{field}.values[{j}]"),
                    Value::from(*v),
                    e,
                ));
            }
        }
    }
    errs.len() > before
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(dns1123_subdomain("example-sa").is_empty());
        assert!(dns1123_subdomain("a.b-c").is_empty());
        assert_eq!(dns1123_subdomain("Bad_Name").len(), 1);
        assert_eq!(dns1123_subdomain("").len(), 1);
        assert_eq!(dns1123_subdomain("a..b").len(), 1);
        assert!(dns1123_label("kube-system").is_empty());
        assert!(!dns1123_label("a.b").is_empty());
        assert!(!dns1123_label(&"a".repeat(64)).is_empty());
        assert!(config_map_key("ca.crt").is_empty());
        assert!(!config_map_key("a/b").is_empty());
        assert!(!config_map_key("..x").is_empty());
        assert!(qualified_name("kubernetes.io/service-account.name").is_empty());
        assert!(!qualified_name("bad key").is_empty());
        assert!(label_value("").is_empty());
        assert!(!label_value("-x").is_empty());
        assert!(path_segment("ok:thing").is_empty());
        assert!(!path_segment("a/b").is_empty());
    }

    #[test]
    fn field_error_text_matches_kubernetes() {
        let e = FieldError::invalid("metadata.name", Value::from("Bad_Name"), "boom");
        assert_eq!(
            e.to_string(),
            r#"metadata.name: Invalid value: "Bad_Name": boom"#
        );
        assert_eq!(e.kind.reason(), "FieldValueInvalid");
        let r = FieldError::required("metadata.name", "name or generateName is required");
        assert_eq!(
            r.to_string(),
            "metadata.name: Required value: name or generateName is required"
        );
        let n = FieldError::invalid("spec.expirationSeconds", Value::from(60), "x");
        assert_eq!(n.message(), "Invalid value: 60: x");
    }
}
