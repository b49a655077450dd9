//! Label and field selectors as `?labelSelector=` and `?fieldSelector=` carry them
//! (apimachinery `pkg/labels/selector.go`, `pkg/fields/selector.go`).

use std::collections::BTreeMap;

use serde_json::Value;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq)]
enum LabelReq {
    Eq(String, String),
    NotEq(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
    Gt(String, i64),
    Lt(String, i64),
}

/// A parsed label selector; the empty selector matches everything.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct LabelSelector(Vec<LabelReq>);

impl LabelSelector {
    pub(crate) fn parse(s: &str) -> Result<LabelSelector, String> {
        let mut reqs = Vec::new();
        for term in split_top_level(s) {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            reqs.push(parse_label_term(term)?);
        }
        Ok(LabelSelector(reqs))
    }

    /// A `metav1.LabelSelector` object (`matchLabels`, `matchExpressions`) as
    /// `LabelSelectorAsSelector` converts it: `{}` matches everything; an expression with a
    /// bad operator or values is an error (validation reports those texts, this only refuses).
    pub(crate) fn from_api(selector: &Value) -> Result<LabelSelector, String> {
        let mut reqs = Vec::new();
        if let Some(labels) = selector.get("matchLabels").and_then(Value::as_object) {
            for (k, v) in labels {
                let v = v
                    .as_str()
                    .ok_or_else(|| format!("label {k:?} is not a string"))?;
                reqs.push(LabelReq::Eq(check_key(k)?, check_value(v)?));
            }
        }
        let expressions = selector.get("matchExpressions").and_then(Value::as_array);
        for expr in expressions.into_iter().flatten() {
            let key = check_key(expr.get("key").and_then(Value::as_str).unwrap_or_default())?;
            let values = expr
                .get("values")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|v| check_value(v.as_str().unwrap_or_default()))
                .collect::<Result<Vec<String>, String>>()?;
            let operator = expr
                .get("operator")
                .and_then(Value::as_str)
                .unwrap_or_default();
            reqs.push(match (operator, values.is_empty()) {
                ("In", false) => LabelReq::In(key, values),
                ("NotIn", false) => LabelReq::NotIn(key, values),
                ("Exists", true) => LabelReq::Exists(key),
                ("DoesNotExist", true) => LabelReq::NotExists(key),
                ("In" | "NotIn", true) => {
                    return Err("for 'in', 'notin' operators, values set can't be empty".into());
                }
                ("Exists" | "DoesNotExist", false) => {
                    return Err("values set must be empty for exists and does not exist".into());
                }
                (other, _) => {
                    return Err(format!("{other:?} is not a valid label selector operator"));
                }
            });
        }
        Ok(LabelSelector(reqs))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            LabelReq::Eq(k, v) => labels.get(k) == Some(v),
            LabelReq::NotEq(k, v) => labels.get(k) != Some(v),
            LabelReq::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            LabelReq::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
            LabelReq::Exists(k) => labels.contains_key(k),
            LabelReq::NotExists(k) => !labels.contains_key(k),
            LabelReq::Gt(k, n) => labels
                .get(k)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v > *n),
            LabelReq::Lt(k, n) => labels
                .get(k)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v < *n),
        })
    }
}

/// Splits on commas that are not inside parentheses (`a in (x,y),b`).
fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn check_key(k: &str) -> Result<String, String> {
    let errs = super::validation::qualified_name(k);
    if errs.is_empty() {
        Ok(k.to_string())
    } else {
        Err(format!(
            "unable to parse requirement: key: Invalid value: {k:?}: {}",
            errs.join("; ")
        ))
    }
}

fn check_value(v: &str) -> Result<String, String> {
    let errs = super::validation::label_value(v);
    if errs.is_empty() {
        Ok(v.to_string())
    } else {
        Err(format!(
            "unable to parse requirement: values[0]: Invalid value: {v:?}: {}",
            errs.join("; ")
        ))
    }
}

fn parse_set(rest: &str) -> Result<Vec<String>, String> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("found '{rest}', expected: '('"))?;
    inner.split(',').map(|v| check_value(v.trim())).collect()
}

fn parse_label_term(term: &str) -> Result<LabelReq, String> {
    if let Some(k) = term.strip_prefix('!') {
        return Ok(LabelReq::NotExists(check_key(k.trim())?));
    }
    // Set-based forms: `key in (a,b)`, `key notin (a)`.
    let words: Vec<&str> = term.splitn(2, char::is_whitespace).collect();
    if words.len() == 2 {
        let rest = words[1].trim_start();
        if let Some(set) = rest.strip_prefix("notin") {
            return Ok(LabelReq::NotIn(check_key(words[0])?, parse_set(set)?));
        }
        if let Some(set) = rest.strip_prefix("in") {
            return Ok(LabelReq::In(check_key(words[0])?, parse_set(set)?));
        }
    }
    for (op, build) in [
        ("!=", LabelOp::NotEq),
        ("==", LabelOp::Eq),
        ("=", LabelOp::Eq),
        (">", LabelOp::Gt),
        ("<", LabelOp::Lt),
    ] {
        if let Some((k, v)) = term.split_once(op) {
            let k = check_key(k.trim())?;
            let v = v.trim();
            return match build {
                LabelOp::Eq => Ok(LabelReq::Eq(k, check_value(v)?)),
                LabelOp::NotEq => Ok(LabelReq::NotEq(k, check_value(v)?)),
                LabelOp::Gt | LabelOp::Lt => {
                    let n = v
                        .parse::<i64>()
                        .map_err(|_| format!("unable to parse requirement: for 'Gt', 'Lt' operators, the value must be an integer: {v:?}"))?;
                    Ok(if build == LabelOp::Gt {
                        LabelReq::Gt(k, n)
                    } else {
                        LabelReq::Lt(k, n)
                    })
                }
            };
        }
    }
    Ok(LabelReq::Exists(check_key(term)?))
}

#[derive(Clone, Copy, PartialEq)]
enum LabelOp {
    Eq,
    NotEq,
    Gt,
    Lt,
}

/// A parsed field selector: a conjunction of `field=value` / `field!=value`.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    /// Parses and checks every field against those the resource supports
    /// (`supported`, besides `metadata.name` and `metadata.namespace`).
    pub(crate) fn parse(s: &str, supported: &[&str]) -> Result<FieldSelector, String> {
        let mut out = Vec::new();
        for term in s.split(',') {
            let term = term.trim();
            if term.is_empty() {
                continue;
            }
            let (field, eq, value) = if let Some((f, v)) = term.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = term.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = term.split_once('=') {
                (f, true, v)
            } else {
                return Err(format!(
                    "invalid selector: '{s}'; can't understand '{term}'"
                ));
            };
            let field = field.trim();
            if field != "metadata.name"
                && field != "metadata.namespace"
                && !supported.contains(&field)
            {
                return Err(format!("field label not supported: {field}"));
            }
            out.push((field.to_string(), eq, value.trim().to_string()));
        }
        Ok(FieldSelector(out))
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Both selectors' requirements.
    pub(crate) fn and(mut self, other: FieldSelector) -> FieldSelector {
        self.0.extend(other.0);
        self
    }

    pub(crate) fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(field, eq, want)| {
            let have = field_value(obj, field);
            (have == *want) == *eq
        })
    }
}

/// A field's value as the selector sees it: missing fields are the empty string and
/// booleans print as `true`/`false`, as the Go field-set functions do.
fn field_value(obj: &Value, path: &str) -> String {
    let mut cur = obj;
    for part in path.split('.') {
        match cur.get(part) {
            Some(v) => cur = v,
            None => return String::new(),
        }
    }
    match cur {
        Value::String(s) => s.clone(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    }
}

/// Labels of an object as a map (missing or malformed labels are empty).
pub(crate) fn labels_of(obj: &Value) -> BTreeMap<String, String> {
    obj.pointer("/metadata/labels")
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn label_selectors() {
        let l = labels(&[("team", "blue"), ("tier", "web"), ("n", "5")]);
        for (sel, want) in [
            ("", true),
            ("team=blue", true),
            ("team==blue", true),
            ("team!=blue", false),
            ("team=red", false),
            ("team in (red, blue)", true),
            ("team notin (blue)", false),
            ("absent notin (blue)", true),
            ("tier", true),
            ("!tier", false),
            ("!absent", true),
            ("team=blue,tier in (web,api)", true),
            ("n>4", true),
            ("n<5", false),
        ] {
            let s = LabelSelector::parse(sel).unwrap();
            assert_eq!(s.matches(&l), want, "{sel}");
        }
        assert!(LabelSelector::parse("bad key=x").is_err());
        assert!(LabelSelector::parse("a in b").is_err());
        assert!(LabelSelector::parse("n>x").is_err());
    }

    #[test]
    fn field_selectors() {
        let pod =
            json!({"metadata":{"name":"p","namespace":"default"},"spec":{"nodeName":"node-a"}});
        let s = FieldSelector::parse("metadata.name=p,spec.nodeName=node-a", &["spec.nodeName"])
            .unwrap();
        assert!(s.matches(&pod));
        let s = FieldSelector::parse("spec.nodeName!=node-a", &["spec.nodeName"]).unwrap();
        assert!(!s.matches(&pod));
        let s = FieldSelector::parse("spec.nodeName=", &["spec.nodeName"]).unwrap();
        assert!(!s.matches(&pod));
        assert_eq!(
            FieldSelector::parse("spec.foo=x", &[]).unwrap_err(),
            "field label not supported: spec.foo"
        );
        assert!(FieldSelector::parse("nonsense", &[]).is_err());
    }
}
