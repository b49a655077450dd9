//! Renders a diagnosis [`Report`] as readable text (the default) or as JSON (`-o json`, the
//! schema in the `diagnose` module header); `-o html` and `-o markdown` are in `html` and
//! `markdown`, which share this file's one-line summaries.
//!
//! Owns: the text layout (a summary table, then each finding with its objects, clients and
//! remedy), the summary lines every format shows, and the JSON encoding.
//! Must not: decide anything: what is a finding and how bad it is belongs to `analyze`.

use std::fmt::Write as _;

use super::{Finding, Report};

/// The text report.
pub(crate) fn text(report: &Report) -> String {
    let mut out = String::new();
    let version = report
        .cluster
        .version
        .as_deref()
        .unwrap_or("unknown version");
    let _ = writeln!(
        out,
        "Cluster:    {} (Kubernetes {version})",
        report.cluster.server
    );
    let _ = writeln!(out, "Tokens:     {}", tokens_line(report));
    let _ = writeln!(out, "Audit log:  {}", audit_line(report));
    out.push('\n');
    if report.findings.is_empty() {
        out.push_str("No findings.\n");
    } else {
        let _ = writeln!(out, "{:<4}{:<9}{:<30}OBJECTS", "#", "SEVERITY", "CHECK");
        for (i, f) in report.findings.iter().enumerate() {
            let _ = writeln!(
                out,
                "{:<4}{:<9}{:<30}{}",
                i + 1,
                f.severity.as_str(),
                f.check,
                objects(f)
            );
        }
        for (i, f) in report.findings.iter().enumerate() {
            out.push('\n');
            finding(&mut out, i + 1, f);
        }
    }
    if !report.warnings.is_empty() {
        out.push_str("\nWarnings (checks that could not run):\n");
        for w in &report.warnings {
            let _ = writeln!(out, "  - {w}");
        }
    }
    let _ = writeln!(out, "\nSummary: {}", summary_line(report));
    out
}

/// What `/metrics` says about tokens, on one line (shared by every format).
pub(super) fn tokens_line(report: &Report) -> String {
    let Some(m) = &report.metrics else {
        return "/metrics not available".to_owned();
    };
    let n = |v: Option<u64>| v.map_or_else(|| "-".to_owned(), |v| v.to_string());
    let ratio = m
        .stale_ratio
        .map(|r| format!(" ({:.1}% of projected-token uses)", r * 100.0))
        .unwrap_or_default();
    format!(
        "stale {}{ratio}, valid {}; legacy {} (auto-generated {}, manual {}, invalid {})",
        n(m.stale_tokens),
        n(m.valid_tokens),
        n(m.legacy_tokens),
        n(m.legacy_auto_token_uses),
        n(m.legacy_manual_token_uses),
        n(m.invalid_legacy_auto_token_uses),
    )
}

/// What was read from the audit log, on one line (shared by every format).
pub(super) fn audit_line(report: &Report) -> String {
    match &report.audit_log {
        Some(a) => format!(
            "{} ({} events, {} stale-token uses, {} unparsable lines)",
            a.path, a.events, a.stale_events, a.unparsable_lines
        ),
        None => "not given (--audit-log): clients cannot be named".to_owned(),
    }
}

/// The one-line summary of the findings' severities (shared by every format).
pub(super) fn summary_line(report: &Report) -> String {
    let s = &report.summary;
    format!(
        "{} error(s), {} warning(s), {} info",
        s.error, s.warning, s.info
    )
}

pub(super) fn objects(f: &Finding) -> String {
    if f.objects.is_empty() {
        return "-".to_owned();
    }
    let names: Vec<String> = f
        .objects
        .iter()
        .map(|o| match o.namespace.as_str() {
            // A cluster-scoped object (a Group of ServiceAccounts).
            "" => format!("{} {}", o.kind, o.name),
            ns => format!("{} {ns}/{}", o.kind, o.name),
        })
        .collect();
    names.join(", ")
}

fn finding(out: &mut String, n: usize, f: &Finding) {
    let _ = writeln!(
        out,
        "[{n}] {} {}: {}",
        f.severity.as_str(),
        f.check,
        f.title
    );
    if !f.objects.is_empty() {
        let _ = writeln!(out, "    objects: {}", objects(f));
    }
    for c in &f.clients {
        let _ = writeln!(
            out,
            "    client:  {:?}: {} requests, {} stale; {}",
            c.user_agent, c.requests, c.stale_requests, c.info.note
        );
    }
    let mut lines = f.remedy.lines();
    if let Some(first) = lines.next() {
        let _ = writeln!(out, "    remedy:  {first}");
    }
    for line in lines {
        let _ = writeln!(out, "             {line}");
    }
}

/// The JSON report, pretty-printed, with a trailing newline.
pub(crate) fn json(report: &Report) -> String {
    // Serializing plain structs of strings and numbers cannot fail; keep a valid document
    // even so.
    let mut s = serde_json::to_string_pretty(report)
        .unwrap_or_else(|e| format!("{{\"error\":{:?}}}", e.to_string()));
    s.push('\n');
    s
}

#[cfg(test)]
pub(super) mod tests {
    use std::collections::BTreeMap;
    use std::path::Path;

    use k8s_openapi::api::core::v1::{Pod, Secret, ServiceAccount};
    use k8s_openapi::api::rbac::v1::ClusterRoleBinding;

    use super::super::audit::summarize;
    use super::super::metrics::TokenMetrics;
    use super::super::rbac::RbacObjects;
    use super::super::{Inputs, analyze};
    use super::*;

    /// Every check's input, shared with the `html` and `markdown` tests.
    pub(in super::super) fn fixed_inputs() -> Inputs {
        let metrics = TokenMetrics::from_text(
            "serviceaccount_stale_tokens_total 1\nserviceaccount_valid_tokens_total 3\n\
             serviceaccount_legacy_tokens_total 2\nserviceaccount_legacy_manual_token_uses_total 2\n\
             tokenwarden_serviceaccount_stale_tokens_total{namespace=\"default\",serviceaccount=\"old-py\"} 1\n",
        );
        let log = r#"{"user":{"username":"system:serviceaccount:default:old-py","extra":{"authentication.kubernetes.io/pod-name":["p2"]}},"userAgent":"OpenAPI-Generator/11.0.0/python","annotations":{"authentication.k8s.io/stale-token":"subject: system:serviceaccount:default:old-py, seconds after warning threshold: 3593"}}
{"user":{"username":"system:serviceaccount:default:legacy-sa"},"userAgent":"curl/8.5.0","annotations":{"authentication.k8s.io/legacy-token-manual-secret":"used-token"}}
"#;
        let audit = summarize(log.as_bytes()).unwrap();
        let secret = |name: &str, last_used: Option<&str>| -> Secret {
            let mut s: Secret = serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "default",
                    "annotations": {"kubernetes.io/service-account.name": "legacy-sa"}},
                "type": "kubernetes.io/service-account-token"
            }))
            .unwrap();
            if let Some(d) = last_used {
                s.metadata.labels = Some(BTreeMap::from([(
                    "kubernetes.io/legacy-token-last-used".to_owned(),
                    d.to_owned(),
                )]));
            }
            s
        };
        let pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "mounter", "namespace": "default"},
            "spec": {"serviceAccountName": "legacy-sa", "automountServiceAccountToken": false,
                "containers": [{"name": "c", "image": "busybox"}],
                "volumes": [{"name": "legacy", "secret": {"secretName": "mounted-token"}}]}
        }))
        .unwrap();
        let idle: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "idle", "namespace": "default"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}
        }))
        .unwrap();
        let sa: ServiceAccount = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "legacy-sa", "namespace": "default"}
        }))
        .unwrap();
        // cluster-admin for a CI ServiceAccount (an error), the bootstrap binding (ignored),
        // and a wildcard Role for every ServiceAccount of `default` (a warning).
        let role_ref = |kind: &str, name: &str| serde_json::json!({"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name});
        let crb = |name: &str, subject: serde_json::Value| -> ClusterRoleBinding {
            serde_json::from_value(serde_json::json!({"metadata": {"name": name},
                "roleRef": role_ref("ClusterRole", "cluster-admin"), "subjects": [subject]}))
            .unwrap()
        };
        let rbac = RbacObjects {
            cluster_role_bindings: vec![
                crb(
                    "cluster-admin",
                    serde_json::json!({"kind": "Group", "name": "system:masters"}),
                ),
                crb(
                    "ci-admin",
                    serde_json::json!({"kind": "ServiceAccount", "namespace": "default", "name": "ci-deployer"}),
                ),
            ],
            role_bindings: vec![
                serde_json::from_value(serde_json::json!({
                "metadata": {"name": "all-sa-wild", "namespace": "default"},
                "roleRef": role_ref("Role", "wild"),
                "subjects": [{"kind": "Group", "name": "system:serviceaccounts:default"}]}))
                .unwrap(),
            ],
            cluster_roles: Vec::new(),
            roles: vec![
                serde_json::from_value(serde_json::json!({
                "metadata": {"name": "wild", "namespace": "default"},
                "rules": [{"apiGroups": [""], "resources": ["*"], "verbs": ["*"]}]}))
                .unwrap(),
            ],
        };
        Inputs {
            server: "https://127.0.0.1:6443/".into(),
            version: Some("v1.32.0+tokenwarden".into()),
            metrics: Some(metrics),
            audit: Some(("/var/log/kube-audit.log".into(), audit)),
            secrets: Some(vec![
                secret("used-token", Some("2026-11-24")),
                secret("mounted-token", None),
                secret("unused-token", Some("2025-01-01")),
            ]),
            service_accounts: Some(vec![sa]),
            pods: Some(vec![pod, idle]),
            rbac: Some(rbac),
            warnings: vec!["cannot list Nodes (403 Forbidden): example".into()],
        }
    }

    pub(in super::super) fn today() -> jiff::civil::Date {
        jiff::civil::date(2026, 11, 24)
    }

    /// Compares with `tests/golden/diagnose-report.txt`; `UPDATE_GOLDEN=1` rewrites it.
    #[test]
    fn golden_text_report() {
        let report = analyze(fixed_inputs(), today());
        let got = text(&report);
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/diagnose-report.txt");
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &got).unwrap();
        }
        let want = std::fs::read_to_string(&path).unwrap_or_default();
        assert_eq!(got, want, "run with UPDATE_GOLDEN=1 to accept:\n{got}");
    }

    #[test]
    fn every_check_of_the_fixture_is_found() {
        let report = analyze(fixed_inputs(), today());
        let checks: Vec<&str> = report.findings.iter().map(|f| f.check).collect();
        assert_eq!(
            checks,
            [
                "cluster-version",
                "stale-token-use",
                "legacy-token-in-use",
                "legacy-token-mounted",
                "legacy-token-unused",
                "automount-unused",
                "serviceaccount-cluster-admin",
                "serviceaccount-wildcard-role",
            ]
        );
        let stale = &report.findings[1];
        assert_eq!(stale.severity, super::super::Severity::Error);
        assert!(
            stale
                .remedy
                .contains("upgrade client kubernetes (Python) 11.0.0 to ≥ 12.0.0")
        );
        let json: serde_json::Value = serde_json::from_str(&json(&report)).unwrap();
        assert_eq!(json["kind"], "DiagnoseReport");
        assert_eq!(json["findings"][1]["clients"][0]["upgradeTo"], "12.0.0");
        assert_eq!(json["summary"]["error"], 2);
        let admin = &json["findings"][6];
        assert_eq!(admin["severity"], "error");
        assert_eq!(
            admin["objects"][0],
            serde_json::json!({"kind": "ServiceAccount", "namespace": "default", "name": "ci-deployer"})
        );
        assert_eq!(
            json["findings"][7]["objects"][0],
            serde_json::json!({"kind": "Group", "namespace": "", "name": "system:serviceaccounts:default"})
        );
    }
}
