//! Query parameters, parsed once per request the way apimachinery's parameter codec parses
//! them (`staging/src/k8s.io/apimachinery/pkg/runtime/conversion.go`), then validated as
//! `metainternalversion/validation` does. Handlers and the watch stream receive the typed
//! options built here, never the raw query.
//!
//! The rules real clients depend on:
//! * a repeated key: the first value wins (`url.Values`, `(*input)[0]`);
//! * a boolean is false only when absent, `0` or `false` in any case: `watch=True` (the
//!   Python client), `watch=yes`, `watch=1` and a bare `watch=` are all true;
//! * an integer that does not parse is a 400 naming the parameter. Here that also holds for
//!   values kube-apiserver lets through to storage and answers with a 500 (`limit=-1`,
//!   `resourceVersion=abc`): a bad parameter is the client's error, never the server's.

use std::time::Duration;

use super::Status;
use super::fieldvalidation::Directive;
use crate::registry::selectors::{FieldSelector, LabelSelector};
use crate::registry::validation::FieldError;
use crate::registry::{ListOptions, RegistryError, Resource};

/// The query string as `url.Values` keeps it: every pair, in order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Query(Vec<(String, String)>);

impl Query {
    pub(crate) fn parse(raw: Option<&str>) -> Query {
        Query(
            form_urlencoded::parse(raw.unwrap_or_default().as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        )
    }

    /// The first value of `key` (apimachinery's `Convert_Slice_string_To_string`).
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `key`, for list parameters such as `dryRun`.
    pub(crate) fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub(crate) fn contains(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// `Convert_Slice_string_To_bool`: absent, `0` and `false` (any case) are false,
    /// anything else, the empty string included, is true.
    pub(crate) fn flag(&self, key: &str) -> bool {
        self.opt_flag(key).unwrap_or(false)
    }

    /// A `*bool` parameter: `None` when absent.
    pub(crate) fn opt_flag(&self, key: &str) -> Option<bool> {
        self.get(key)
            .map(|v| !(v == "0" || v.eq_ignore_ascii_case("false")))
    }

    /// An `int64` parameter; one that does not parse is a 400 naming it.
    pub(crate) fn int64(&self, key: &str) -> Result<Option<i64>, Status> {
        self.get(key)
            .map(|v| {
                v.parse::<i64>()
                    .map_err(|_| invalid_param(key, v, "must be an integer"))
            })
            .transpose()
    }

    /// Whether JSON answers are indented, as kube-apiserver's `isPrettyPrint` decides:
    /// `?pretty=` read with Go's `strconv.ParseBool` (a value that is not a Go boolean
    /// means "not pretty"), else true for clients that are people (curl, Wget, browsers).
    pub(crate) fn pretty(&self, user_agent: &str) -> bool {
        match self.get("pretty").filter(|v| !v.is_empty()) {
            Some(v) => matches!(v, "1" | "t" | "T" | "TRUE" | "true" | "True"),
            None => ["curl", "Wget", "Mozilla/5.0"]
                .iter()
                .any(|p| user_agent.starts_with(p)),
        }
    }
}

/// A 400 for a query parameter: `limit: Invalid value: "abc": must be an integer`.
fn invalid_param(key: &str, value: &str, detail: &str) -> Status {
    let e = FieldError::invalid(key, serde_json::Value::String(value.to_string()), detail);
    Status::bad_request(e.to_string())
}

/// The 422 of options that parse but break a rule (`errors.NewInvalid` on
/// `ListOptions.meta.k8s.io`, `CreateOptions.meta.k8s.io`, ...).
fn invalid_options(kind: &str, causes: Vec<FieldError>) -> Status {
    RegistryError::Invalid {
        kind: kind.to_string(),
        group: "meta.k8s.io".to_string(),
        name: String::new(),
        causes,
    }
    .into()
}

const NOT_OLDER_THAN: &str = "NotOlderThan";
const EXACT: &str = "Exact";

/// A list or watch request's options (`metav1.ListOptions`), parsed and validated.
#[derive(Debug, Clone)]
pub(crate) struct ListParams {
    /// What the registry filters and pages by. For a watch, `send_initial_events` is set
    /// after kube-apiserver's defaulting: a legacy watch from "" or "0" means `Some(true)`
    /// (`SetListOptionsDefaults` with WatchList on, as in 1.32).
    pub(crate) options: ListOptions,
    /// The resourceVersion asked for, as a revision (`None` for "").
    pub(crate) resource_version: Option<i64>,
    pub(crate) allow_watch_bookmarks: bool,
    /// `timeoutSeconds`; `None` lets the watch pick kube-apiserver's random default.
    pub(crate) timeout: Option<Duration>,
}

impl ListParams {
    /// Parses a list (`watch` false) or watch request's query for `res`.
    pub(crate) fn parse(q: &Query, res: &Resource, watch: bool) -> Result<ListParams, Status> {
        let label_selector = LabelSelector::parse(q.get("labelSelector").unwrap_or(""))
            .map_err(|e| named(Status::bad_request(e), "labelSelector"))?;
        let field_selector =
            FieldSelector::parse(q.get("fieldSelector").unwrap_or(""), res.field_selectors)
                .map_err(|e| named(Status::bad_request(e), "fieldSelector"))?;
        let limit = match q.int64("limit")? {
            None => 0,
            Some(n) if n < 0 => {
                let v = n.to_string();
                return Err(invalid_param("limit", &v, "must be a non-negative integer"));
            }
            Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        };
        let rv_text = q.get("resourceVersion").unwrap_or("");
        let resource_version = match rv_text {
            "" => None,
            s => Some(s.parse::<i64>().ok().filter(|n| *n >= 0).ok_or_else(|| {
                invalid_param("resourceVersion", s, "must be a non-negative integer")
            })?),
        };
        let continue_token = q.get("continue").filter(|s| !s.is_empty());
        let match_text = q.get("resourceVersionMatch").unwrap_or("");
        let mut send_initial_events = q.opt_flag("sendInitialEvents");
        let mut match_text = match_text.to_string();
        // SetListOptionsDefaults (WatchList enabled): a legacy watch from "" or "0" is a
        // watch that sends the current state first.
        if watch
            && send_initial_events.is_none()
            && match_text.is_empty()
            && matches!(rv_text, "" | "0")
        {
            send_initial_events = Some(true);
            match_text = NOT_OLDER_THAN.to_string();
        }
        let errors = validate(
            watch,
            rv_text,
            &match_text,
            continue_token.is_some(),
            send_initial_events,
        );
        if !errors.is_empty() {
            return Err(invalid_options("ListOptions", errors));
        }
        if watch && continue_token.is_some() {
            return Err(Status::bad_request("a watch cannot continue a list"));
        }
        let timeout = match q.int64("timeoutSeconds")? {
            None => None,
            Some(n) if n < 0 => {
                let v = n.to_string();
                return Err(invalid_param(
                    "timeoutSeconds",
                    &v,
                    "must be a non-negative integer",
                ));
            }
            Some(n) => Some(Duration::from_secs(n.unsigned_abs())),
        };
        Ok(ListParams {
            options: ListOptions {
                label_selector,
                field_selector,
                limit: if watch { 0 } else { limit },
                continue_token: continue_token.map(str::to_string),
                resource_version: (!rv_text.is_empty()).then(|| rv_text.to_string()),
                exact: match_text == EXACT,
                send_initial_events: if watch { send_initial_events } else { None },
            },
            resource_version,
            allow_watch_bookmarks: q.flag("allowWatchBookmarks"),
            timeout,
        })
    }
}

/// A 400 whose message names the parameter it is about, when it does not already.
fn named(mut s: Status, param: &str) -> Status {
    if !s.message.contains(param) {
        s.message = format!("{param}: {}", s.message);
    }
    s
}

/// `ValidateListOptions` of apimachinery 1.32 with the WatchList feature enabled.
fn validate(
    watch: bool,
    rv: &str,
    matched: &str,
    has_continue: bool,
    send_initial_events: Option<bool>,
) -> Vec<FieldError> {
    const MATCH: &str = "resourceVersionMatch";
    let mut errs = Vec::new();
    if watch {
        if send_initial_events.is_some() && matched != NOT_OLDER_THAN {
            errs.push(FieldError::forbidden(
                MATCH,
                "sendInitialEvents requires setting resourceVersionMatch to NotOlderThan",
            ));
        }
        if !matched.is_empty() {
            if send_initial_events.is_none() {
                errs.push(FieldError::forbidden(
                    MATCH,
                    "resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided",
                ));
            }
            if matched != NOT_OLDER_THAN {
                errs.push(FieldError::not_supported(MATCH, matched, &[NOT_OLDER_THAN]));
            }
            if has_continue {
                errs.push(FieldError::forbidden(
                    MATCH,
                    "resourceVersionMatch is forbidden when continue is provided",
                ));
            }
        }
        return errs;
    }
    if !matched.is_empty() {
        if rv.is_empty() {
            errs.push(FieldError::forbidden(
                MATCH,
                "resourceVersionMatch is forbidden unless resourceVersion is provided",
            ));
        }
        if has_continue {
            errs.push(FieldError::forbidden(
                MATCH,
                "resourceVersionMatch is forbidden when continue is provided",
            ));
        }
        if matched != EXACT && matched != NOT_OLDER_THAN {
            errs.push(FieldError::not_supported(
                MATCH,
                matched,
                &[EXACT, NOT_OLDER_THAN, ""],
            ));
        }
        if matched == EXACT && rv == "0" {
            errs.push(FieldError::forbidden(
                MATCH,
                "resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\"",
            ));
        }
    }
    if send_initial_events.is_some() {
        errs.push(FieldError::forbidden(
            "sendInitialEvents",
            "sendInitialEvents is forbidden for list",
        ));
    }
    errs
}

/// Options of a write (`CreateOptions`, `UpdateOptions`, `PatchOptions`, `DeleteOptions`
/// as far as the query carries them).
#[derive(Debug, Clone)]
pub(crate) struct WriteParams {
    pub(crate) dry_run: bool,
    /// `fieldValidation` (absent means Warn, as in kube-apiserver).
    pub(crate) field_validation: Directive,
}

impl WriteParams {
    /// `kind` names the options in a 422 (`CreateOptions`, `PatchOptions`, ...).
    pub(crate) fn parse(q: &Query, kind: &str) -> Result<WriteParams, Status> {
        let values: Vec<&str> = q.all("dryRun").collect();
        // ValidateDryRun: every value must be "All".
        if values.iter().any(|v| *v != "All") {
            let shown = format!(
                "[]string{{{}}}",
                values
                    .iter()
                    .map(|v| format!("{v:?}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let mut e = FieldError::not_supported("dryRun", "", &["All"]);
            e.value = None;
            e.detail = format!("{shown}: {}", e.detail);
            return Err(invalid_options(kind, vec![e]));
        }
        Ok(WriteParams {
            dry_run: !values.is_empty(),
            field_validation: Directive::from_query(q.get("fieldValidation"), kind)?,
        })
    }
}

/// The options kind a write verb validates against, as kube-apiserver names it.
pub(crate) fn options_kind(verb: &str) -> &'static str {
    match verb {
        "create" => "CreateOptions",
        "update" => "UpdateOptions",
        "patch" => "PatchOptions",
        _ => "DeleteOptions",
    }
}

/// `gracePeriodSeconds` of a delete, from the query.
pub(crate) fn grace_period(q: &Query) -> Result<Option<i64>, Status> {
    q.int64("gracePeriodSeconds")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::registry::resources;
    use http::StatusCode;

    fn q(s: &str) -> Query {
        Query::parse(Some(s))
    }

    #[test]
    fn booleans_follow_apimachinery() {
        for t in [
            "watch=true",
            "watch=True",
            "watch=TRUE",
            "watch=yes",
            "watch=1",
            "watch=",
            "watch",
        ] {
            assert!(q(t).flag("watch"), "{t}");
        }
        for f in [
            "",
            "watch=false",
            "watch=False",
            "watch=FALSE",
            "watch=0",
            "other=1",
        ] {
            assert!(!q(f).flag("watch"), "{f}");
        }
        // The first value of a repeated key wins.
        assert!(!q("watch=false&watch=true").flag("watch"));
        assert!(q("watch=true&watch=false").flag("watch"));
        assert_eq!(q("").opt_flag("sendInitialEvents"), None);
        assert_eq!(
            q("sendInitialEvents=false").opt_flag("sendInitialEvents"),
            Some(false)
        );
    }

    #[test]
    fn pretty_uses_go_parse_bool() {
        assert!(q("pretty=true").pretty("kubectl"));
        assert!(q("pretty=1").pretty("kubectl"));
        assert!(!q("pretty=yes").pretty("kubectl"));
        assert!(!q("pretty=").pretty("kubectl"));
        assert!(!q("").pretty("OpenAPI-Generator/11.0.0/python"));
        assert!(q("").pretty("curl/8.5.0"));
        assert!(!q("pretty=false").pretty("curl/8.5.0"));
    }

    fn list(s: &str, watch: bool) -> Result<ListParams, Status> {
        ListParams::parse(&q(s), resources::core("serviceaccounts"), watch)
    }

    #[test]
    fn bad_numbers_are_400_naming_the_parameter() {
        for (query, param) in [
            ("limit=abc", "limit"),
            ("limit=-1", "limit"),
            ("limit=", "limit"),
            ("resourceVersion=abc", "resourceVersion"),
            ("resourceVersion=-5", "resourceVersion"),
            ("timeoutSeconds=x", "timeoutSeconds"),
            ("labelSelector=a%20in%20(", "labelSelector"),
            ("fieldSelector=spec.nope%3Dx", "fieldSelector"),
        ] {
            let e = list(query, false).unwrap_err();
            assert_eq!(e.code, StatusCode::BAD_REQUEST, "{query}");
            assert!(e.message.contains(param), "{query}: {}", e.message);
        }
        let e = list("limit=abc", false).unwrap_err();
        assert_eq!(
            e.message,
            "limit: Invalid value: \"abc\": must be an integer"
        );
    }

    #[test]
    fn list_options_validation_matches_kubernetes() {
        let msg = |s: &str, watch: bool| list(s, watch).unwrap_err().message;
        assert_eq!(
            msg("resourceVersionMatch=Exact", false),
            "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden unless resourceVersion is provided"
        );
        assert_eq!(
            msg("resourceVersion=0&resourceVersionMatch=Exact", false),
            "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch \"exact\" is forbidden for resourceVersion \"0\""
        );
        assert_eq!(
            msg("resourceVersion=5&resourceVersionMatch=Newest", false),
            "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Unsupported value: \"Newest\": supported values: \"Exact\", \"NotOlderThan\", \"\""
        );
        assert_eq!(
            msg("sendInitialEvents=true", false),
            "ListOptions.meta.k8s.io \"\" is invalid: sendInitialEvents: Forbidden: sendInitialEvents is forbidden for list"
        );
        assert_eq!(
            msg("sendInitialEvents=true&resourceVersionMatch=Exact", true),
            "ListOptions.meta.k8s.io \"\" is invalid: [resourceVersionMatch: Forbidden: sendInitialEvents requires setting resourceVersionMatch to NotOlderThan, resourceVersionMatch: Unsupported value: \"Exact\": supported values: \"NotOlderThan\"]"
        );
        assert_eq!(
            msg("resourceVersion=7&resourceVersionMatch=NotOlderThan", true),
            "ListOptions.meta.k8s.io \"\" is invalid: resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden for watch unless sendInitialEvents is provided"
        );
        assert!(list("resourceVersion=5&resourceVersionMatch=Exact", false).is_ok());
    }

    #[test]
    fn legacy_watches_default_to_initial_events() {
        let p = list("watch=1", true).unwrap();
        assert_eq!(p.options.send_initial_events, Some(true));
        let p = list("resourceVersion=12", true).unwrap();
        assert_eq!(
            (p.options.send_initial_events, p.resource_version),
            (None, Some(12))
        );
        let p = list(
            "sendInitialEvents=false&resourceVersionMatch=NotOlderThan&allowWatchBookmarks=True",
            true,
        )
        .unwrap();
        assert_eq!(p.options.send_initial_events, Some(false));
        assert!(p.allow_watch_bookmarks);
    }

    #[test]
    fn dry_run_values() {
        assert!(!WriteParams::parse(&q(""), "CreateOptions").unwrap().dry_run);
        assert!(
            WriteParams::parse(&q("dryRun=All"), "CreateOptions")
                .unwrap()
                .dry_run
        );
        let e = WriteParams::parse(&q("dryRun=All&dryRun=Some"), "CreateOptions").unwrap_err();
        assert_eq!(e.code, StatusCode::UNPROCESSABLE_ENTITY);
        assert_eq!(
            e.message,
            "CreateOptions.meta.k8s.io \"\" is invalid: dryRun: Unsupported value: []string{\"All\", \"Some\"}: supported values: \"All\""
        );
    }
}
