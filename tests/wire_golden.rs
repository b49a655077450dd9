//! Golden files of wire JSON (STYLE.md habit 8), from the real binary: the discovery
//! documents kubectl reads (`/api`, `/apis`, every group version, the aggregated form) and the
//! `Status` bodies of the common errors. A change to any of them shows up as a reviewed diff;
//! `UPDATE_GOLDEN=1` rewrites the files. Values that change from run to run (the port, uids,
//! timestamps) are replaced by placeholders before comparing.

mod support;

use serde_json::Value;
use support::{Server, check_golden, request, request_as};

/// Pretty JSON of `v` with the server's port replaced, so that the file is stable.
fn stable(s: &Server, v: &Value) -> String {
    let text = serde_json::to_string_pretty(v).unwrap_or_default();
    text.replace(&format!(":{}", s.port()), ":PORT") + "\n"
}

#[test]
fn discovery_documents_match_the_golden_files() {
    let s = Server::start();
    let mut docs = serde_json::Map::new();
    let mut paths = vec![
        "/api".to_string(),
        "/apis".to_string(),
        "/api/v1".to_string(),
    ];
    let groups = request(&s, "GET", "/apis", "", "").json();
    for g in groups["groups"].as_array().cloned().unwrap_or_default() {
        for v in g["versions"].as_array().cloned().unwrap_or_default() {
            paths.push(format!(
                "/apis/{}",
                v["groupVersion"].as_str().unwrap_or_default()
            ));
        }
    }
    for path in &paths {
        let r = request(&s, "GET", path, "", "");
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        docs.insert(path.clone(), r.json());
    }
    let aggregated = [(
        "Accept",
        "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList",
    )];
    let token = s.data_dir().join("admin.token");
    for path in ["/api", "/apis"] {
        let r = request_as(&s, Some(&token), "GET", path, &aggregated, "");
        assert_eq!(r.status, 200, "aggregated {path}: {}", r.text());
        docs.insert(format!("{path} (aggregated)"), r.json());
    }
    check_golden("discovery.json", &stable(&s, &Value::Object(docs)));
}

#[test]
fn status_errors_match_the_golden_file() {
    let s = Server::start();
    s.kubectl_ok(&["create", "sa", "taken"]);
    let sas = "/api/v1/namespaces/default/serviceaccounts";
    let json = "application/json";
    let cases: Vec<(&str, String, &str, &str)> = vec![
        ("NotFound", format!("{sas}/missing"), "GET", ""),
        (
            "AlreadyExists",
            sas.to_string(),
            "POST",
            r#"{"metadata":{"name":"taken"}}"#,
        ),
        (
            "Invalid",
            sas.to_string(),
            "POST",
            r#"{"metadata":{"name":"Not_Valid"}}"#,
        ),
        (
            "BadRequest (parameter)",
            format!("{sas}?limit=abc"),
            "GET",
            "",
        ),
        (
            "Invalid (options)",
            format!("{sas}?resourceVersionMatch=Exact"),
            "GET",
            "",
        ),
        ("MethodNotAllowed", format!("{sas}/taken/token"), "GET", ""),
        ("NotFound (path)", "/api/v1/nothing".to_string(), "GET", ""),
        (
            "UnsupportedMediaType",
            format!("{sas}/taken"),
            "PATCH",
            "{}",
        ),
    ];
    let mut out = serde_json::Map::new();
    for (name, path, method, body) in cases {
        let ct = if method == "PATCH" {
            "text/plain"
        } else {
            json
        };
        let r = request(
            &s,
            method,
            &path,
            if body.is_empty() { "" } else { ct },
            body,
        );
        let mut v = r.json();
        v["_http"] = Value::from(r.status);
        out.insert(format!("{name}: {method} {path}"), v);
    }
    let r = request_as(&s, None, "GET", sas, &[], "");
    let mut v = r.json();
    v["_http"] = Value::from(r.status);
    out.insert("Forbidden (anonymous)".into(), v);
    let bad = s.write_file("bad.token", "not-a-token");
    let r = request_as(&s, Some(std::path::Path::new(&bad)), "GET", sas, &[], "");
    let mut v = r.json();
    v["_http"] = Value::from(r.status);
    out.insert("Unauthorized".into(), v);
    check_golden("status-errors.json", &stable(&s, &Value::Object(out)));
}
