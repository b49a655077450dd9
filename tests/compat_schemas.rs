//! Issue 9 (items 2–4), black-box: OpenAPI v2 (JSON and protobuf, ETag) and v3 with real
//! schemas, exercised by the real kubectl 1.32 and 1.27 (`apply -f` of a `kind: List`,
//! `get -o yaml | apply -f -`, `explain`, `create`/`apply`/`diff`); server-side field
//! validation (`fieldValidation=Strict|Warn|Ignore`, unknown and duplicated fields, never
//! storing an unknown field); and `kind`/`apiVersion` checked against the URL. Expected
//! texts come from kube-apiserver's source and its integration test
//! `test/integration/apiserver/field_validation_test.go` (named beside each assertion).
//! Must not: sleep, assert on timing, or share a server between tests.

mod support;

use serde_json::Value;
use support::{KUBECTL, Reply, Server, assert_stderr_line, ensure};

const SA_TYPO: &str = "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: typo-sa\n\
                       automountServiceAcountToken: true\n";

const LIST: &str = "apiVersion: v1\nkind: List\nitems:\n\
                    - apiVersion: v1\n  kind: ServiceAccount\n  metadata:\n    name: list-sa\n\
                    - apiVersion: v1\n  kind: ConfigMap\n  metadata:\n    name: list-cm\n  data:\n    a: \"1\"\n";

/// Unless the reply is a `Status` with this code, reason and message, fails.
#[track_caller]
fn assert_status(s: &Server, r: &Reply, code: u16, reason: &str, message: &str) {
    support::assert_status(s, r, code, reason, message);
    s.check(
        r.json()["message"] == message,
        &format!("expected the message {message:?}"),
        &r.out,
    );
}

/// The object at `path`, or `None` when the server answers 404.
#[track_caller]
fn stored(s: &Server, path: &str) -> Option<Value> {
    let r = s.https("GET", path, &["Accept: application/json"], None);
    match r.status {
        200 => Some(r.json()),
        404 => None,
        _ => s.fail(format!("GET {path}: unexpected answer\n{}", r.out)),
    }
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";
const SAS: &str = "/api/v1/namespaces/default/serviceaccounts";
const JSON: &str = "Content-Type: application/json";

#[test]
fn openapi_v2_json_protobuf_etag_and_v3_components_r9() {
    let s = Server::start();
    // JSON, with kube-openapi's quoted upper-case SHA-512 ETag (`handler.go` computeETag).
    let json = s.https("GET", "/openapi/v2", &["Accept: application/json"], None);
    s.check(json.status == 200, "GET /openapi/v2 as JSON", &json.out);
    ensure(
        &s,
        json.header("content-type") == "application/json",
        "v2 JSON content type",
        json.header("content-type"),
    );
    let doc = json.json();
    let sa = &doc["definitions"]["io.k8s.api.core.v1.ServiceAccount"];
    ensure(
        &s,
        doc["swagger"] == "2.0"
            && sa["x-kubernetes-group-version-kind"][0]["kind"] == "ServiceAccount"
            && sa["properties"]["automountServiceAccountToken"]["type"] == "boolean",
        "a Swagger 2.0 document with the ServiceAccount schema",
        &doc["definitions"]["io.k8s.api.core.v1.ServiceAccount"],
    );
    let etag = json.header("etag").to_string();
    ensure(
        &s,
        etag.len() == 130 && etag.starts_with('"') && etag.ends_with('"'),
        "a quoted SHA-512 ETag",
        &etag,
    );
    // kubectl's disk cache revalidates with If-None-Match (Go's http.ServeContent: 304).
    let again = s.https(
        "GET",
        "/openapi/v2",
        &[
            "Accept: application/json",
            &format!("If-None-Match: {etag}"),
        ],
        None,
    );
    s.check(
        again.status == 304 && again.body.is_empty() && again.header("content-length") != "0",
        "304 on a matching ETag, not announcing an empty document",
        &again.out,
    );

    // The protobuf kubectl asks for (the deprecated `@v1.0` spelling is what it sends).
    let proto = s.https(
        "GET",
        "/openapi/v2",
        &["Accept: application/com.github.proto-openapi.spec.v2@v1.0+protobuf"],
        None,
    );
    s.check(
        proto.status == 200,
        "GET /openapi/v2 as protobuf",
        &proto.out,
    );
    ensure(
        &s,
        proto.header("content-type")
            == "application/com.github.proto-openapi.spec.v2.v1.0+protobuf",
        "v2 protobuf content type",
        proto.header("content-type"),
    );
    // openapi_v2.Document: field 1 (swagger) = "2.0" first.
    ensure(
        &s,
        proto.body.starts_with(&[0x0a, 3, b'2', b'.', b'0']) && proto.header("etag") != etag,
        "a gnostic Document with its own ETag",
        format!("{:?}", &proto.body[..proto.body.len().min(16)]),
    );
    let refused = s.https("GET", "/openapi/v2", &["Accept: text/html"], None);
    s.check(
        refused.status == 406,
        "406 for an unserved media type",
        &refused.out,
    );

    // v3: components with the kind's schema and group-version-kind.
    let v3 = s.https(
        "GET",
        "/openapi/v3/api/v1",
        &["Accept: application/json"],
        None,
    );
    let schemas = &v3.json()["components"]["schemas"];
    ensure(
        &s,
        schemas["io.k8s.api.core.v1.Pod"]["x-kubernetes-group-version-kind"][0]["kind"] == "Pod"
            && schemas["io.k8s.api.core.v1.Container"]["properties"]["imagePullPolicy"]["type"]
                == "string",
        "v3 component schemas",
        &v3.out,
    );

    // The protobuf decodes in kubectl: 1.27 validates a List's items against it on the
    // client and names the schema of the field it does not know.
    let list = s.write_file(
        "bad-list.yaml",
        "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ServiceAccount\n  metadata:\n    name: x\n  automountServiceAcountToken: true\n",
    );
    let out = s.kubectl_127(&["apply", "-f", &list]);
    s.check(!out.success(), "kubectl 1.27 should refuse the List", &out);
    assert_stderr_line(
        &s,
        &out,
        &format!(
            "error: error validating \"{list}\": error validating data: ValidationError(ServiceAccount): unknown field \"automountServiceAcountToken\" in io.k8s.api.core.v1.ServiceAccount; if you choose to ignore these errors, turn validation off with --validate=false"
        ),
    );
    // kubectl 1.27 keeps /openapi/v2 in its disk cache and revalidates it by ETag: the
    // second run gets it from the cache (httpcache marks such answers X-From-Cache).
    let sa = s.write_file(
        "cached-sa.yaml",
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: cached\n",
    );
    s.kubectl_127_ok(&["apply", "-f", &sa]);
    let out = s.kubectl_127(&["apply", "-f", &sa, "-v=8"]);
    let after_get = out
        .stderr
        .split("GET https://127.0.0.1")
        .find(|part| part.contains("/openapi/v2?"))
        .unwrap_or_default();
    let response = after_get.split("Response Body").next().unwrap_or_default();
    s.check(
        out.success()
            && response.contains("X-From-Cache: 1")
            && !response.contains("Content-Length: 0"),
        "kubectl 1.27 serves /openapi/v2 from its cache after revalidating",
        &out,
    );
    ensure(
        &s,
        stored(&s, &format!("{SAS}/x")).is_none(),
        "nothing stored",
        "an object",
    );
}

#[test]
fn kubectl_apply_list_roundtrip_explain_and_127_r9() {
    let s = Server::start();
    let list = s.write_file("list.yaml", LIST);
    let out = s.kubectl_ok(&["apply", "-f", &list]);
    ensure(
        &s,
        out == "serviceaccount/list-sa created\nconfigmap/list-cm created\n",
        "kubectl 1.32 applies a kind: List",
        &out,
    );
    let changed = s.write_file("list2.yaml", &LIST.replace("a: \"1\"", "a: \"2\""));
    let out = s.kubectl_127_ok(&["apply", "-f", &changed]);
    ensure(
        &s,
        out == "serviceaccount/list-sa unchanged\nconfigmap/list-cm configured\n",
        "kubectl 1.27 applies a kind: List",
        &out,
    );

    // get -o yaml | apply -f - (a List of everything, server fields included).
    let yaml = s.kubectl_ok(&["get", "sa", "-o", "yaml"]);
    let out = s.kubectl_stdin(&["apply", "-f", "-"], &yaml);
    s.check(
        out.success() && out.stdout.contains("serviceaccount/list-sa"),
        "get -o yaml | apply -f -",
        &out,
    );

    // explain reads the v3 schemas.
    let out = s.kubectl_ok(&["explain", "serviceaccount"]);
    ensure(
        &s,
        out.starts_with("KIND:       ServiceAccount\nVERSION:    v1\n")
            && support::has_line(&out, "  automountServiceAccountToken\t<boolean>")
            && support::has_line(&out, "  metadata\t<ObjectMeta> -required-"),
        "explain serviceaccount",
        &out,
    );
    // A ServiceAccount has no spec: kubectl names the field (explain's own error).
    let out = s.kubectl(&["explain", "serviceaccount.spec"]);
    s.check(
        !out.success(),
        "explain serviceaccount.spec must fail",
        &out,
    );
    assert_stderr_line(&s, &out, "error: field \"spec\" does not exist");
    let out = s.kubectl_ok(&["explain", "secret.type"]);
    ensure(
        &s,
        support::has_line(&out, "FIELD: type <string>"),
        "explain secret.type",
        &out,
    );
    let out = s.kubectl_ok(&["explain", "pod.spec.containers"]);
    ensure(
        &s,
        support::has_line(&out, "FIELD: containers <[]Container>")
            && support::has_line(&out, "  imagePullPolicy\t<string>"),
        "explain pod.spec.containers",
        &out,
    );
    let out = s.kubectl_127_ok(&["explain", "secret.type"]);
    ensure(
        &s,
        support::has_line(&out, "FIELD: type <string>"),
        "1.27 explain",
        &out,
    );

    // With /openapi/v2 served kubectl takes strategic-merge metadata from it: the schemas
    // must carry x-kubernetes-patch-merge-key, or a removed list item would survive the
    // server's merge by key.
    for (which, name) in [("1.32", "merge-132"), ("1.27", "merge-127")] {
        let sa = |secrets: &str| {
            format!(
                "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: {name}\nsecrets:\n{secrets}"
            )
        };
        let two = s.write_file(&format!("{name}-2.yaml"), &sa("- name: a\n- name: b\n"));
        let one = s.write_file(&format!("{name}-1.yaml"), &sa("- name: a\n"));
        for file in [&two, &one] {
            let out = if which == "1.27" {
                s.kubectl_127(&["apply", "-f", file])
            } else {
                s.kubectl(&["apply", "-f", file])
            };
            s.check(out.success(), "apply", &out);
        }
        let secrets = s.kubectl_ok(&["get", "sa", name, "-o", "jsonpath={.secrets}"]);
        ensure(
            &s,
            secrets == r#"[{"name":"a"}]"#,
            &format!("kubectl {which} removes a merged list item"),
            &secrets,
        );
    }

    // kubectl 1.27: create -f, apply -f, diff.
    let cm = s.write_file(
        "cm.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: old-cm\ndata:\n  k: v\n",
    );
    let out = s.kubectl_127_ok(&["create", "-f", &cm]);
    ensure(
        &s,
        out == "configmap/old-cm created\n",
        "1.27 create -f",
        &out,
    );
    let cm2 = s.write_file(
        "cm2.yaml",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: old-cm\ndata:\n  k: w\n",
    );
    let diff = s.kubectl_127(&["diff", "-f", &cm2]);
    s.check(
        diff.status.code() == Some(1)
            && diff.stdout.contains("-  k: v")
            && diff.stdout.contains("+  k: w"),
        "1.27 diff shows the change (exit 1)",
        &diff,
    );
    let out = s.kubectl_127(&["apply", "-f", &cm2]);
    s.check(
        out.success() && out.stdout == "configmap/old-cm configured\n",
        "1.27 apply -f",
        &out,
    );
    let same = s.kubectl_127(&["diff", "-f", &cm2]);
    s.check(
        same.success() && same.stdout.is_empty(),
        "1.27 diff after apply: nothing",
        &same,
    );
}

#[test]
fn field_validation_strict_warn_ignore_r9() {
    let s = Server::start();
    // kubectl sends fieldValidation=Strict by default; the message is the create handler's
    // transformDecodeError around runtime.NewStrictDecodingError.
    let typo = s.write_file("typo.yaml", SA_TYPO);
    let out = s.kubectl(&["apply", "-f", &typo]);
    s.check(!out.success(), "strict apply must fail", &out);
    assert_stderr_line(
        &s,
        &out,
        &format!(
            "Error from server (BadRequest): error when creating \"{typo}\": ServiceAccount in version \"v1\" cannot be handled as a ServiceAccount: strict decoding error: unknown field \"automountServiceAcountToken\""
        ),
    );
    ensure(
        &s,
        stored(&s, &format!("{SAS}/typo-sa")).is_none(),
        "nothing stored",
        "an object",
    );
    let pod = s.write_file(
        "pod.yaml",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p1\nspec:\n  containers:\n  - name: c\n    image: nginx\n    imagePullPolicyy: Always\n",
    );
    let out = s.kubectl_127(&["create", "-f", &pod]);
    s.check(!out.success(), "1.27 strict create must fail", &out);
    assert_stderr_line(
        &s,
        &out,
        &format!(
            "Error from server (BadRequest): error when creating \"{pod}\": Pod in version \"v1\" cannot be handled as a Pod: strict decoding error: unknown field \"spec.containers[0].imagePullPolicyy\""
        ),
    );
    // --validate=warn: created, the warning printed, the field dropped.
    let out = s.kubectl(&["apply", "-f", &typo, "--validate=warn"]);
    s.check(out.success(), "warn apply succeeds", &out);
    assert_stderr_line(
        &s,
        &out,
        "Warning: unknown field \"automountServiceAcountToken\"",
    );
    let sa = stored(&s, &format!("{SAS}/typo-sa")).unwrap_or_default();
    ensure(
        &s,
        sa["metadata"]["name"] == "typo-sa" && sa.get("automountServiceAcountToken").is_none(),
        "created without the unknown field",
        &sa,
    );

    // Raw: several problems, joined by ", " in document order; the unknown field that is
    // also duplicated is reported once (field_validation_test.go, post-strict-validation).
    let body = r#"{"apiVersion":"v1","kind":"ConfigMap",
        "metadata":{"name":"dupename","name":"raw-cm","unknownMeta":"x"},
        "data":{"a":"1","a":"2"},"unknownDupe":1,"unknownDupe":2}"#;
    let r = s.https(
        "POST",
        &format!("{CMS}?fieldValidation=Strict"),
        &[JSON],
        Some(body),
    );
    assert_status(
        &s,
        &r,
        400,
        "BadRequest",
        "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: duplicate field \"metadata.name\", unknown field \"metadata.unknownMeta\", duplicate field \"data.a\", unknown field \"unknownDupe\"",
    );
    ensure(
        &s,
        stored(&s, &format!("{CMS}/raw-cm")).is_none(),
        "nothing stored (Strict)",
        "an object",
    );
    // Warn: created, one Warning header per problem (`299 - "<text>"`).
    let r = s.https(
        "POST",
        &format!("{CMS}?fieldValidation=Warn"),
        &[JSON],
        Some(body),
    );
    s.check(r.status == 201, "Warn creates", &r.out);
    let warnings = r.header_values("warning");
    ensure(
        &s,
        warnings
            == [
                r#"299 - "duplicate field \"metadata.name\"""#,
                r#"299 - "unknown field \"metadata.unknownMeta\"""#,
                r#"299 - "duplicate field \"data.a\"""#,
                r#"299 - "unknown field \"unknownDupe\"""#,
            ],
        "Warn answers with a Warning per problem",
        format!("{warnings:?}"),
    );
    let cm = stored(&s, &format!("{CMS}/raw-cm")).unwrap_or_default();
    ensure(
        &s,
        cm["data"]["a"] == "2"
            && cm.get("unknownDupe").is_none()
            && cm["metadata"].get("unknownMeta").is_none(),
        "the last duplicate wins and unknown fields are not stored",
        &cm,
    );
    // Absent means Warn (handlers/rest.go fieldValidation()); Ignore is silent.
    let body = r#"{"metadata":{"name":"quiet"},"bogus":true}"#;
    let r = s.https("POST", CMS, &[JSON], Some(body));
    ensure(
        &s,
        r.status == 201 && r.header_values("warning") == [r#"299 - "unknown field \"bogus\"""#],
        "no directive: warnings",
        &r.out,
    );
    let body = r#"{"metadata":{"name":"ignored"},"bogus":true}"#;
    let r = s.https(
        "POST",
        &format!("{CMS}?fieldValidation=Ignore"),
        &[JSON],
        Some(body),
    );
    s.check(
        r.status == 201 && r.header_values("warning").is_empty(),
        "Ignore: silent",
        &r.out,
    );
    let cm = stored(&s, &format!("{CMS}/ignored")).unwrap_or_default();
    ensure(
        &s,
        cm.get("bogus").is_none(),
        "Ignore still drops the field",
        &cm,
    );

    // A repeated YAML key is not a parse error: the last one wins, as in Go's YAML decoder.
    let r = s.https(
        "POST",
        &format!("{CMS}?fieldValidation=Ignore"),
        &["Content-Type: application/yaml"],
        Some("metadata:\n  name: yaml-first\n  name: yaml-last\nnope: 1\n"),
    );
    s.check(
        r.status == 201
            && r.json()["metadata"]["name"] == "yaml-last"
            && r.json().get("nope").is_none(),
        "YAML with a repeated key",
        &r.out,
    );
    // Strict/Warn report it as Go's YAML decoder does, by line, before the unknown fields.
    let yaml = "metadata:\n  name: yaml-2\n  name: yaml-3\nnope: 1\n";
    let r = s.https(
        "POST",
        &format!("{CMS}?fieldValidation=Strict"),
        &["Content-Type: application/yaml"],
        Some(yaml),
    );
    assert_status(
        &s,
        &r,
        400,
        "BadRequest",
        "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: yaml: unmarshal errors:\n  line 3: key \"name\" already set in map, unknown field \"nope\"",
    );
    let r = s.https(
        "POST",
        &format!("{CMS}?fieldValidation=Warn"),
        &["Content-Type: application/yaml"],
        Some(yaml),
    );
    ensure(
        &s,
        r.status == 201
            && r.header_values("warning")
                == [
                    r#"299 - "line 3: key \"name\" already set in map""#,
                    r#"299 - "unknown field \"nope\"""#,
                ],
        "YAML under Warn",
        &r.out,
    );

    // Values are case-sensitive; anything else fails ValidateCreateOptions (422).
    for value in ["foo", "strict"] {
        let r = s.https(
            "POST",
            &format!("{CMS}?fieldValidation={value}"),
            &[JSON],
            Some(r#"{"metadata":{"name":"v"}}"#),
        );
        assert_status(
            &s,
            &r,
            422,
            "Invalid",
            &format!(
                "CreateOptions.meta.k8s.io \"\" is invalid: fieldValidation: Unsupported value: \"{value}\": supported values: \"\", \"Ignore\", \"Strict\", \"Warn\""
            ),
        );
    }
    ensure(
        &s,
        stored(&s, &format!("{CMS}/v")).is_none(),
        "nothing stored (bad directive)",
        "an object",
    );

    // PUT: the update handler decodes the same way.
    let mut cm = stored(&s, &format!("{CMS}/ignored")).unwrap_or_default();
    cm["extra"] = Value::from(1);
    let r = s.https(
        "PUT",
        &format!("{CMS}/ignored?fieldValidation=Strict"),
        &[JSON],
        Some(&cm.to_string()),
    );
    assert_status(
        &s,
        &r,
        400,
        "BadRequest",
        "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: strict decoding error: unknown field \"extra\"",
    );
    // PATCH: problems of the patch, then the patched object's unknown fields; Strict is a
    // 422 on field `patch` (handlers/patch.go); the message ends with the strict error.
    let patch = r#"{"data":{"b":"1","b":"2"},"zzz":1}"#;
    let r = s.https(
        "PATCH",
        &format!("{CMS}/ignored?fieldValidation=Strict"),
        &["Content-Type: application/merge-patch+json"],
        Some(patch),
    );
    let message = r.json()["message"].as_str().unwrap_or_default().to_string();
    s.check(
        r.status == 422
            && r.json()["reason"] == "Invalid"
            && message.starts_with(" \"\" is invalid: patch: Invalid value: ")
            && message.ends_with(
                ": strict decoding error: duplicate field \"data.b\", unknown field \"zzz\"",
            ),
        "strict merge patch",
        &r.out,
    );
    let r = s.https(
        "PATCH",
        &format!("{CMS}/ignored?fieldValidation=Warn"),
        &["Content-Type: application/merge-patch+json"],
        Some(patch),
    );
    ensure(
        &s,
        r.status == 200 && r.header_values("warning").len() == 2 && r.json().get("zzz").is_none(),
        "warn merge patch: applied, warned, unknown dropped",
        &r.out,
    );
    // Server-side apply refuses undeclared fields whatever the directive
    // (structured-merge-diff's typed conversion).
    let out = s.kubectl(&["apply", "--server-side", "-f", &typo, "--validate=false"]);
    s.check(
        !out.success(),
        "server-side apply of an undeclared field fails",
        &out,
    );
    assert_stderr_line(
        &s,
        &out,
        "Error from server: failed to create typed patch object (/v1, Kind=ServiceAccount): .automountServiceAcountToken: field not declared in schema",
    );
}

#[test]
fn kind_and_api_version_must_match_the_url_r9() {
    let s = Server::start();
    // The codec creates the data's kind and converts it to the URL's type
    // (UseOrCreateObject, then an unknown conversion); transformDecodeError wraps it.
    let secret = r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"wrong"}}"#;
    let r = s.https("POST", CMS, &[JSON], Some(secret));
    assert_status(
        &s,
        &r,
        400,
        "BadRequest",
        "Secret in version \"v1\" cannot be handled as a ConfigMap: converting (v1.Secret) to (core.ConfigMap): unknown conversion",
    );
    ensure(
        &s,
        stored(&s, &format!("{CMS}/wrong")).is_none(),
        "nothing stored (kind)",
        "an object",
    );
    // A group-version with no such kind is not registered in the scheme.
    for (api_version, shown, gv) in [("v2", "v2", "v2"), ("apps/v1", "v1", "apps/v1")] {
        let body = format!(
            r#"{{"apiVersion":"{api_version}","kind":"ConfigMap","metadata":{{"name":"wrong"}}}}"#
        );
        let r = s.https("POST", CMS, &[JSON], Some(&body));
        assert_status(
            &s,
            &r,
            400,
            "BadRequest",
            &format!(
                "ConfigMap in version \"{shown}\" cannot be handled as a ConfigMap: no kind \"ConfigMap\" is registered for version \"{gv}\" in scheme \"pkg/api/legacyscheme/scheme.go:30\""
            ),
        );
    }
    ensure(
        &s,
        stored(&s, &format!("{CMS}/wrong")).is_none(),
        "nothing stored (apiVersion)",
        "an object",
    );
    // YAML bodies are checked the same way.
    let r = s.https(
        "POST",
        CMS,
        &["Content-Type: application/yaml"],
        Some("apiVersion: v1\nkind: Secret\nmetadata:\n  name: wrong\n"),
    );
    s.check(r.status == 400, "a YAML Secret to configmaps", &r.out);
    // Absent kind and apiVersion are taken from the URL (gvkWithDefaults).
    let r = s.https(
        "POST",
        CMS,
        &[JSON],
        Some(r#"{"metadata":{"name":"bare"}}"#),
    );
    s.check(
        r.status == 201 && r.json()["kind"] == "ConfigMap" && r.json()["apiVersion"] == "v1",
        "defaults from the URL",
        &r.out,
    );
    // PUT with another kind: refused, the object unchanged.
    let r = s.https(
        "PUT",
        &format!("{CMS}/bare"),
        &[JSON],
        Some(
            r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"bare"},"data":{"x":"eA=="}}"#,
        ),
    );
    s.check(
        r.status == 400,
        "PUT of a Secret body to a ConfigMap",
        &r.out,
    );
    let cm = stored(&s, &format!("{CMS}/bare")).unwrap_or_default();
    ensure(
        &s,
        cm["kind"] == "ConfigMap" && cm.get("data").is_none(),
        "unchanged",
        &cm,
    );
    // kubectl's protobuf bodies carry their kind too, and still work.
    let out = s.run(
        s.command(KUBECTL, &s.kubeconfig(), &["create", "sa", "typed"]),
        None,
    );
    s.check(out.success(), "create sa (protobuf body)", &out);
}
