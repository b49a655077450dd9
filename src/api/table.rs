//! Server-side `meta.k8s.io/v1` Table output: the column definitions and cell values that
//! kube-apiserver 1.32 returns for `kubectl get` (`shared/reference/kubectl-wire.md` §3.4, §5.4).
//!
//! Mirrors Kubernetes `pkg/printers/internalversion/printers.go` (columns and print functions),
//! `pkg/printers/storage/storage.go` (the server always prints wide; kubectl hides priority>0),
//! `staging/src/k8s.io/apiserver/pkg/registry/rest/table.go` (the default Name/Created At table),
//! `staging/src/k8s.io/apiserver/pkg/endpoints/handlers/response.go` (`includeObject`) and
//! `staging/src/k8s.io/apimachinery/pkg/util/duration/duration.go` (`HumanDuration`).
//!
//! It is pure formatting of wire JSON: it must not read the store, the clock or the request;
//! the caller passes `now` and fills `metadata.resourceVersion` and `metadata.continue`. It
//! never panics on odd or missing fields: a missing field reads as Go's zero value.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::wellknown::SECRET_TYPE_OPAQUE;

/// What each row's `object` holds (`?includeObject=`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum IncludeObject {
    /// `"object": null`, as Go serialises an empty `RawExtension`.
    None,
    /// A `PartialObjectMetadata` with the object's full `metadata` (kubectl needs it for `-A`
    /// and `--show-labels`).
    #[default]
    Metadata,
    /// The whole object.
    Object,
}

impl IncludeObject {
    /// Absent or empty means `Metadata`; anything else unknown is a 400 with this message
    /// (`asTable` in handlers/response.go).
    pub(crate) fn parse(s: Option<&str>) -> Result<IncludeObject, String> {
        match s.unwrap_or("") {
            "" | "Metadata" => Ok(IncludeObject::Metadata),
            "Object" => Ok(IncludeObject::Object),
            "None" => Ok(IncludeObject::None),
            other => Err(format!("unrecognized includeObject value: {other:?}")),
        }
    }
}

/// (name, type, format, description, priority), serialised in Go's field order.
type Col = (&'static str, &'static str, &'static str, &'static str, u8);

// Column descriptions are the 1.32 `SwaggerDoc()` strings the Go column definitions reference.
const D_NAME: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const D_CREATED: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const D_SA_SECRETS: &str = "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use. Pods are only limited to this list if this service account has a \"kubernetes.io/enforce-mountable-secrets\" annotation set to \"true\". The \"kubernetes.io/enforce-mountable-secrets\" annotation is deprecated since v1.32. Prefer separate namespaces to isolate access to mounted secrets. This field should not be used to find auto-generated service account token secrets for use outside of pods. Instead, tokens can be requested directly using the TokenRequest API, or service account token secrets can be manually created. More info: https://kubernetes.io/docs/concepts/configuration/secret";
const D_SECRET_TYPE: &str = "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types";
const D_SECRET_DATA: &str = "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4";
const D_CM_DATA: &str = "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process.";
const D_POD_IP: &str = "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.";
const D_NODE_NAME: &str = "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName. Once this field is set, the kubelet for this node becomes responsible for the lifecycle of this pod. This field should not be used to express a desire for the pod to be scheduled on a specific node. https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename";
const D_NOMINATED: &str = "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node. Scheduler may decide to place the pod elsewhere if other nodes become available sooner. Scheduler may also decide to give the resources on this node to a higher priority pod that is created after preemption. As a result, this field may be different than PodSpec.nodeName when the pod is scheduled.";
const D_GATES: &str = "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates";
const D_ADDRESSES: &str = "List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This field is declared as mergeable, but the merge key is not sufficiently unique, which can cause data corruption when it is merged. Callers should instead use a full-replacement patch. See https://pr.k8s.io/79391 for an example. Consumers should assume that addresses can change during the lifetime of a Node. However, there are some exceptions where this may not be possible, such as Pods that inherit a Node's address in its own status or consumers of the downward API (status.hostIP).";
const D_FIELD_PATH: &str = "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]. For example, if the object reference is to a container within a pod, this would take on a value like: \"spec.containers{name}\" (where \"name\" refers to the name of the container that triggered the event) or if no container name is specified \"spec.containers[2]\" (container with index 2 in this pod). This syntax is chosen only to have some well-defined way of referencing a part of an object.";

// Service, Endpoints and EndpointSlice columns (their doc strings as k8s-openapi carries them).
const D_SVC_TYPE: &str = "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer. \"ClusterIP\" allocates a cluster-internal IP address for load-balancing to endpoints. Endpoints are determined by the selector or if that is not specified, by manual construction of an Endpoints object or EndpointSlice objects. If clusterIP is \"None\", no virtual IP is allocated and the endpoints are published as a set of endpoints rather than a virtual IP. \"NodePort\" builds on ClusterIP and allocates a port on every node which routes to the same endpoints as the clusterIP. \"LoadBalancer\" builds on NodePort and creates an external load-balancer (if supported in the current cloud) which routes to the same endpoints as the clusterIP. \"ExternalName\" aliases this service to the specified externalName. Several other fields do not apply to ExternalName services. More info: https://kubernetes.io/docs/concepts/services-networking/service/#publishing-services-service-types";
const D_CLUSTER_IP: &str = "clusterIP is the IP address of the service and is usually assigned randomly. If an address is specified manually, is in-range (as per system configuration), and is not in use, it will be allocated to the service; otherwise creation of the service will fail. This field may not be changed through updates unless the type field is also being changed to ExternalName (which requires this field to be blank) or the type field is being changed from ExternalName (in which case this field may optionally be specified, as describe above).  Valid values are \"None\", empty string (\"\"), or a valid IP address. Setting this to \"None\" makes a \"headless service\" (no virtual IP), which is useful when direct endpoint connections are preferred and proxying is not required.  Only applies to types ClusterIP, NodePort, and LoadBalancer. If this field is specified when creating a Service of type ExternalName, creation will fail. This field will be wiped when updating a Service to type ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies";
const D_EXTERNAL_IPS: &str = "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.  These IPs are not managed by Kubernetes.  The user is responsible for ensuring that traffic arrives at a node with this IP.  A common example is external load-balancers that are not part of the Kubernetes system.";
const D_SVC_PORTS: &str = "The list of ports that are exposed by this service. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies";
const D_SELECTOR: &str = "Route service traffic to pods with label keys and values matching this selector. If empty or not present, the service is assumed to have an external process managing its endpoints, which Kubernetes will not modify. Only applies to types ClusterIP, NodePort, and LoadBalancer. Ignored if type is ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/";
const D_SUBSETS: &str = "The set of all endpoints is the union of all subsets. Addresses are placed into subsets according to the IPs they share. A single address with multiple ports, some of which are ready and some of which are not (because they come from different containers) will result in the address being displayed in different subsets for the different ports. No address will appear in both Addresses and NotReadyAddresses in the same subset. Sets of addresses and ports that comprise a service.";
const D_ADDRESS_TYPE: &str = "addressType specifies the type of address carried by this EndpointSlice. All addresses in this slice must be the same type. This field is immutable after creation. The following address types are currently supported: * IPv4: Represents an IPv4 Address. * IPv6: Represents an IPv6 Address. * FQDN: Represents a Fully Qualified Domain Name. (Deprecated) The EndpointSlice controller only generates, and kube-proxy only processes, slices of addressType \"IPv4\" and \"IPv6\". No semantics are defined for the \"FQDN\" type.";
const D_SLICE_PORTS: &str = "ports specifies the list of network ports exposed by each endpoint in this slice. Each port must have a unique name. Each slice may include a maximum of 100 ports. Services always have at least 1 port, so EndpointSlices generated by the EndpointSlice controller will likewise always have at least 1 port. EndpointSlices used for other purposes may have an empty ports list.";
const D_SLICE_ENDPOINTS: &str = "endpoints is a list of unique endpoints in this slice. Each slice may include a maximum of 1000 endpoints.";

const D_READY: &str = "The aggregate readiness state of this pod for accepting traffic.";
const D_POD_STATUS: &str = "The aggregate status of the containers in this pod.";
const D_RESTARTS: &str = "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.";
const D_KUBELET: &str = "Kubelet Version reported by the node.";
const D_OS: &str =
    "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).";
const D_KERNEL: &str =
    "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).";
const D_RUNTIME: &str = "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).";
const D_LAST_SEEN: &str =
    "The time at which the most recent occurrence of this event was recorded.";
const D_EVENT_TYPE: &str =
    "Type of this event (Normal, Warning), new types could be added in the future";
const D_REASON: &str = "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.";
const D_OBJECT: &str = "The object that this event is about.";
const D_SOURCE: &str =
    "The component reporting this event. Should be a short machine understandable string.";
const D_MESSAGE: &str = "A human-readable description of the status of this operation.";
const D_FIRST_SEEN: &str =
    "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)";
const D_COUNT: &str = "The number of times this event has occurred.";
const D_ROLE_REF: &str = "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error.";
const D_CLUSTER_ROLE_REF: &str = "RoleRef can only reference a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error.";

/// A `string` column shown by plain `kubectl get`.
const fn col(name: &'static str, description: &'static str) -> Col {
    (name, "string", "", description, 0)
}

/// A `string` column shown only by `kubectl get -o wide` (priority 1).
const fn wide(name: &'static str, description: &'static str) -> Col {
    (name, "string", "", description, 1)
}

const NAME: Col = ("Name", "string", "name", D_NAME, 0);
const AGE: Col = col("Age", D_CREATED);

const SA_COLS: &[Col] = &[NAME, col("Secrets", D_SA_SECRETS), AGE];
const SECRET_COLS: &[Col] = &[
    NAME,
    col("Type", D_SECRET_TYPE),
    col("Data", D_SECRET_DATA),
    AGE,
];
const CONFIGMAP_COLS: &[Col] = &[NAME, col("Data", D_CM_DATA), AGE];
const SERVICE_COLS: &[Col] = &[
    NAME,
    col("Type", D_SVC_TYPE),
    col("Cluster-IP", D_CLUSTER_IP),
    col("External-IP", D_EXTERNAL_IPS),
    col("Port(s)", D_SVC_PORTS),
    AGE,
    wide("Selector", D_SELECTOR),
];
const ENDPOINTS_COLS: &[Col] = &[NAME, col("Endpoints", D_SUBSETS), AGE];
const ENDPOINT_SLICE_COLS: &[Col] = &[
    NAME,
    col("AddressType", D_ADDRESS_TYPE),
    col("Ports", D_SLICE_PORTS),
    col("Endpoints", D_SLICE_ENDPOINTS),
    AGE,
];
const NAMESPACE_COLS: &[Col] = &[NAME, col("Status", "The status of the namespace"), AGE];
const POD_COLS: &[Col] = &[
    NAME,
    col("Ready", D_READY),
    col("Status", D_POD_STATUS),
    col("Restarts", D_RESTARTS),
    AGE,
    wide("IP", D_POD_IP),
    wide("Node", D_NODE_NAME),
    wide("Nominated Node", D_NOMINATED),
    wide("Readiness Gates", D_GATES),
];
const NODE_COLS: &[Col] = &[
    NAME,
    col("Status", "The status of the node"),
    col("Roles", "The roles of the node"),
    AGE,
    col("Version", D_KUBELET),
    wide("Internal-IP", D_ADDRESSES),
    wide("External-IP", D_ADDRESSES),
    wide("OS-Image", D_OS),
    wide("Kernel-Version", D_KERNEL),
    wide("Container-Runtime", D_RUNTIME),
];
const EVENT_COLS: &[Col] = &[
    col("Last Seen", D_LAST_SEEN),
    col("Type", D_EVENT_TYPE),
    col("Reason", D_REASON),
    col("Object", D_OBJECT),
    wide("Subobject", D_FIELD_PATH),
    wide("Source", D_SOURCE),
    col("Message", D_MESSAGE),
    wide("First Seen", D_FIRST_SEEN),
    wide("Count", D_COUNT),
    ("Name", "string", "name", D_NAME, 1),
];
const ROLE_BINDING_COLS: &[Col] = &[
    NAME,
    col("Role", D_ROLE_REF),
    AGE,
    wide("Users", "Users in the roleBinding"),
    wide("Groups", "Groups in the roleBinding"),
    wide("ServiceAccounts", "ServiceAccounts in the roleBinding"),
];
const CLUSTER_ROLE_BINDING_COLS: &[Col] = &[
    NAME,
    col("Role", D_CLUSTER_ROLE_REF),
    AGE,
    wide("Users", "Users in the clusterRoleBinding"),
    wide("Groups", "Groups in the clusterRoleBinding"),
    wide(
        "ServiceAccounts",
        "ServiceAccounts in the clusterRoleBinding",
    ),
];
/// rest/table.go `defaultTableConvertor`: used for every kind without a printer.
const DEFAULT_COLS: &[Col] = &[NAME, ("Created At", "date", "", D_CREATED, 0)];

/// `time.Time{}` (0001-01-01T00:00:00Z) as Unix seconds: Go's zero time, which `IsZero` and
/// the printers treat like a missing timestamp.
const GO_ZERO_UNIX_SECONDS: i64 = -62_135_596_800;

type Printer = fn(&Value, Timestamp) -> Vec<Value>;

/// Builds the Table for `objects` of `kind` (e.g. "Pod"); unknown kinds get the apiserver's
/// default Name/Created At table. Rows keep the order of `objects`.
pub(crate) fn table(
    kind: &str,
    objects: &[Value],
    now: Timestamp,
    include: IncludeObject,
) -> Value {
    let (cols, print): (&[Col], Printer) = match kind {
        "ServiceAccount" => (SA_COLS, print_service_account),
        "Secret" => (SECRET_COLS, print_secret),
        "ConfigMap" => (CONFIGMAP_COLS, print_config_map),
        "Service" => (SERVICE_COLS, print_service),
        "Endpoints" => (ENDPOINTS_COLS, print_endpoints),
        "EndpointSlice" => (ENDPOINT_SLICE_COLS, print_endpoint_slice),
        "Namespace" => (NAMESPACE_COLS, print_namespace),
        "Pod" => (POD_COLS, print_pod),
        "Node" => (NODE_COLS, print_node),
        "Event" => (EVENT_COLS, print_event),
        "RoleBinding" => (ROLE_BINDING_COLS, print_binding),
        "ClusterRoleBinding" => (CLUSTER_ROLE_BINDING_COLS, print_binding),
        // Role and ClusterRole have no printer in Kubernetes either: Name and Created At.
        _ => (DEFAULT_COLS, print_default),
    };
    let rows: Vec<Value> = objects
        .iter()
        .map(|obj| {
            let mut row = serde_json::Map::new();
            row.insert("cells".into(), Value::Array(print(obj, now)));
            if kind == "Pod"
                && let Some(conditions) = pod_row_conditions(obj)
            {
                row.insert("conditions".into(), conditions);
            }
            row.insert("object".into(), row_object(obj, include));
            Value::Object(row)
        })
        .collect();
    // The printers build their rows with `make([]TableRow, 0, n)` (`[]` when empty); the
    // default convertor appends to a nil slice, which Go serialises as `null`.
    let rows = if rows.is_empty() && cols == DEFAULT_COLS {
        Value::Null
    } else {
        Value::Array(rows)
    };
    let cols: Vec<Value> = cols
        .iter()
        .map(|(name, ty, format, description, priority)| {
            json!({"name": name, "type": ty, "format": format, "description": description, "priority": priority})
        })
        .collect();
    json!({"kind": "Table", "apiVersion": "meta.k8s.io/v1", "metadata": {}, "columnDefinitions": cols, "rows": rows})
}

fn row_object(obj: &Value, include: IncludeObject) -> Value {
    match include {
        IncludeObject::None => Value::Null,
        IncludeObject::Object => obj.clone(),
        IncludeObject::Metadata => json!({
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": at(obj, &["metadata"]).filter(|m| m.is_object()).cloned().unwrap_or_else(|| json!({})),
        }),
    }
}

/// `HumanDuration` from apimachinery `util/duration`: ~2-3 significant figures. `d` is in
/// nanoseconds, like Go's `time.Duration`; up to 1s in the future still reads "0s".
pub(crate) fn human_duration(d: i64) -> String {
    const SECOND: i64 = 1_000_000_000;
    const MINUTE: i64 = 60 * SECOND;
    const HOUR: i64 = 60 * MINUTE;
    // Integer division truncates toward zero, as Go's `int(d.Seconds())` does.
    let seconds = d / SECOND;
    if seconds < -1 {
        return "<invalid>".into();
    }
    if seconds < 0 {
        return "0s".into();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = d / MINUTE;
    if minutes < 10 {
        return match seconds % 60 {
            0 => format!("{minutes}m"),
            s => format!("{minutes}m{s}s"),
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = d / HOUR;
    if hours < 8 {
        return match minutes % 60 {
            0 => format!("{hours}h"),
            m => format!("{hours}h{m}m"),
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    let days = hours / 24;
    if hours < 24 * 8 {
        return match hours % 24 {
            0 => format!("{days}d"),
            h => format!("{days}d{h}h"),
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{days}d");
    }
    if hours < 24 * 365 * 8 {
        return match days % 365 {
            0 => format!("{}y", days / 365),
            dy => format!("{}y{dy}d", days / 365),
        };
    }
    format!("{}y", days / 365)
}

/// `translateTimestampSince`: `<unknown>` for a missing (zero) time, else `HumanDuration` of
/// `now - t`, saturating like Go's `Time.Sub`.
fn since(t: Option<Timestamp>, now: Timestamp) -> String {
    match t {
        None => "<unknown>".into(),
        Some(t) => {
            let d = now.as_nanosecond() - t.as_nanosecond();
            human_duration(i64::try_from(d).unwrap_or(if d < 0 { i64::MIN } else { i64::MAX }))
        }
    }
}

/// The value at `path`, with JSON `null` read as absent (a nil pointer in Go).
fn at<'a>(v: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter()
        .try_fold(v, |v, key| v.get(key))
        .filter(|v| !v.is_null())
}

fn str_at<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    at(v, path).and_then(Value::as_str).unwrap_or("")
}

fn int_at(v: &Value, path: &[&str]) -> i64 {
    at(v, path).and_then(Value::as_i64).unwrap_or(0)
}

fn is_true(v: &Value, path: &[&str]) -> bool {
    at(v, path).and_then(Value::as_bool).unwrap_or(false)
}

/// `len()` of a list or map field; 0 when missing or of another type.
fn len_at(v: &Value, path: &[&str]) -> usize {
    match at(v, path) {
        Some(Value::Array(a)) => a.len(),
        Some(Value::Object(m)) => m.len(),
        _ => 0,
    }
}

fn items<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// A `metav1.Time`/`MicroTime` field; `None` when missing, unparsable or Go's zero time.
fn time_at(v: &Value, path: &[&str]) -> Option<Timestamp> {
    let t: Timestamp = at(v, path)?.as_str()?.parse().ok()?;
    let zero = t.as_second() == GO_ZERO_UNIX_SECONDS && t.subsec_nanosecond() == 0;
    (!zero).then_some(t)
}

fn or_none(s: &str) -> Value {
    Value::from(if s.is_empty() { "<none>" } else { s })
}

fn name(obj: &Value) -> Value {
    Value::from(str_at(obj, &["metadata", "name"]))
}

fn age(obj: &Value, now: Timestamp) -> Value {
    Value::from(since(time_at(obj, &["metadata", "creationTimestamp"]), now))
}

fn print_default(obj: &Value, _now: Timestamp) -> Vec<Value> {
    // Go prints `CreationTimestamp.UTC().Format(time.RFC3339)`, the zero time included.
    let created = time_at(obj, &["metadata", "creationTimestamp"])
        .or_else(|| Timestamp::from_second(GO_ZERO_UNIX_SECONDS).ok())
        .map_or_else(String::new, |t| {
            t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
        });
    vec![name(obj), Value::from(created)]
}

fn print_service_account(sa: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(sa),
        Value::from(len_at(sa, &["secrets"])),
        age(sa, now),
    ]
}

fn print_secret(secret: &Value, now: Timestamp) -> Vec<Value> {
    // Go reads the internal object: `stringData` has been merged into `data` (its keys win)
    // and an empty type defaulted to Opaque, so count the union of keys.
    let mut keys = BTreeSet::new();
    for field in ["data", "stringData"] {
        if let Some(map) = at(secret, &[field]).and_then(Value::as_object) {
            keys.extend(map.keys());
        }
    }
    let ty = match str_at(secret, &["type"]) {
        "" => SECRET_TYPE_OPAQUE,
        ty => ty,
    };
    vec![
        name(secret),
        Value::from(ty),
        Value::from(keys.len()),
        age(secret, now),
    ]
}

fn print_config_map(cm: &Value, now: Timestamp) -> Vec<Value> {
    let data = len_at(cm, &["data"]) + len_at(cm, &["binaryData"]);
    vec![name(cm), Value::from(data), age(cm, now)]
}

/// `printRoleBinding` / `printClusterRoleBinding`: the role as `Kind/name`, then the
/// subjects split by kind as `rbac.SubjectsStrings` does (ServiceAccounts as
/// `namespace/name`; other kinds are not shown), each list joined with ", ".
fn print_binding(binding: &Value, now: Timestamp) -> Vec<Value> {
    let role = format!(
        "{}/{}",
        str_at(binding, &["roleRef", "kind"]),
        str_at(binding, &["roleRef", "name"])
    );
    let (mut users, mut groups, mut sas) = (Vec::new(), Vec::new(), Vec::new());
    for s in items_at(binding, &["subjects"]) {
        let name = str_at(s, &["name"]).to_owned();
        match str_at(s, &["kind"]) {
            "ServiceAccount" => sas.push(format!("{}/{name}", str_at(s, &["namespace"]))),
            "User" => users.push(name),
            "Group" => groups.push(name),
            _ => {}
        }
    }
    vec![
        name(binding),
        Value::from(role),
        age(binding, now),
        Value::from(users.join(", ")),
        Value::from(groups.join(", ")),
        Value::from(sas.join(", ")),
    ]
}

/// Items of the array at `path` (none when missing or not an array).
fn items_at<'a>(v: &'a Value, path: &[&str]) -> &'a [Value] {
    at(v, path)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// `printService`: the external IPs are shown for ClusterIP services that list some, and
/// ports as `port[:nodePort]/protocol` (`makePortString`).
fn print_service(svc: &Value, now: Timestamp) -> Vec<Value> {
    let none = |s: String| {
        if s.is_empty() {
            "<none>".to_string()
        } else {
            s
        }
    };
    let cluster_ip = none(str_at(svc, &["spec", "clusterIP"]).to_string());
    let external: Vec<&str> = items_at(svc, &["spec", "externalIPs"])
        .iter()
        .filter_map(Value::as_str)
        .collect();
    let ports: Vec<String> = items_at(svc, &["spec", "ports"])
        .iter()
        .map(|p| {
            let port = at(p, &["port"]).and_then(Value::as_i64).unwrap_or(0);
            let protocol = str_at(p, &["protocol"]);
            match at(p, &["nodePort"])
                .and_then(Value::as_i64)
                .filter(|n| *n > 0)
            {
                Some(node) => format!("{port}:{node}/{protocol}"),
                None => format!("{port}/{protocol}"),
            }
        })
        .collect();
    let selector: Vec<String> = at(svc, &["spec", "selector"])
        .and_then(Value::as_object)
        .map(|m| {
            let mut pairs: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or_default()))
                .collect();
            pairs.sort();
            pairs
        })
        .unwrap_or_default();
    vec![
        name(svc),
        Value::from(str_at(svc, &["spec", "type"])),
        Value::from(cluster_ip),
        Value::from(none(external.join(","))),
        Value::from(none(ports.join(","))),
        age(svc, now),
        Value::from(none(selector.join(","))),
    ]
}

/// At most three entries, then ` + N more...`, as the endpoint printers show them.
fn first_three(list: &[String], count: usize) -> String {
    let shown = list.iter().take(3).cloned().collect::<Vec<_>>().join(",");
    if count > 3 {
        format!("{shown} + {} more...", count - 3)
    } else {
        shown
    }
}

/// `formatEndpoints`: `ip:port` for every address and port of every subset.
fn print_endpoints(ep: &Value, now: Timestamp) -> Vec<Value> {
    let subsets = items_at(ep, &["subsets"]);
    let mut list = Vec::new();
    for ss in subsets {
        let addresses: Vec<&str> = items_at(ss, &["addresses"])
            .iter()
            .map(|a| str_at(a, &["ip"]))
            .collect();
        let ports = items_at(ss, &["ports"]);
        if ports.is_empty() {
            list.extend(addresses.iter().map(|a| (*a).to_string()));
        }
        for p in ports {
            let port = at(p, &["port"]).and_then(Value::as_i64).unwrap_or(0);
            for a in &addresses {
                let host = if a.contains(':') {
                    format!("[{a}]")
                } else {
                    (*a).to_string()
                };
                list.push(format!("{host}:{port}"));
            }
        }
    }
    let cell = if subsets.is_empty() {
        "<none>".to_string()
    } else {
        first_three(&list, list.len())
    };
    vec![name(ep), Value::from(cell), age(ep, now)]
}

/// `printEndpointSlice`: ports by number and addresses, `<unset>` when there are none.
fn print_endpoint_slice(slice: &Value, now: Timestamp) -> Vec<Value> {
    let unset = |s: String| {
        if s.is_empty() {
            "<unset>".to_string()
        } else {
            s
        }
    };
    let ports: Vec<String> = items_at(slice, &["ports"])
        .iter()
        .map(|p| {
            at(p, &["port"])
                .and_then(Value::as_i64)
                .map_or_else(|| "<unset>".to_string(), |n| n.to_string())
        })
        .collect();
    let addresses: Vec<String> = items_at(slice, &["endpoints"])
        .iter()
        .flat_map(|e| items_at(e, &["addresses"]).iter())
        .filter_map(Value::as_str)
        .map(str::to_string)
        .collect();
    vec![
        name(slice),
        Value::from(str_at(slice, &["addressType"])),
        Value::from(unset(ports.join(","))),
        Value::from(unset(first_three(&addresses, addresses.len()))),
        age(slice, now),
    ]
}

fn print_namespace(ns: &Value, now: Timestamp) -> Vec<Value> {
    vec![
        name(ns),
        Value::from(str_at(ns, &["status", "phase"])),
        age(ns, now),
    ]
}

/// The row conditions `printPod` sets for finished pods.
fn pod_row_conditions(pod: &Value) -> Option<Value> {
    let (reason, message) = match str_at(pod, &["status", "phase"]) {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{"type": "Completed", "status": "True", "reason": reason, "message": message}]))
}

/// Keeps the latest `lastState.terminated.finishedAt` (Go's `lastRestartDate.Before(...)`).
fn note_restart(latest: &mut Option<Timestamp>, status: &Value) {
    if let Some(finished) = time_at(status, &["lastState", "terminated", "finishedAt"])
        && latest.is_none_or(|l| l < finished)
    {
        *latest = Some(finished);
    }
}

/// The reason shown for a terminated container: its reason, else `Signal:N`, else `ExitCode:N`.
fn terminated_reason(prefix: &str, terminated: &Value) -> String {
    match (
        str_at(terminated, &["reason"]),
        int_at(terminated, &["signal"]),
    ) {
        ("", 0) => format!("{prefix}ExitCode:{}", int_at(terminated, &["exitCode"])),
        ("", signal) => format!("{prefix}Signal:{signal}"),
        (reason, _) => format!("{prefix}{reason}"),
    }
}

/// `printPod`: Ready, Status (the reason logic), Restarts, Age, then the wide columns.
fn print_pod(pod: &Value, now: Timestamp) -> Vec<Value> {
    let phase = str_at(pod, &["status", "phase"]);
    let status_reason = str_at(pod, &["status", "reason"]);
    let conditions = items(pod, &["status", "conditions"]);
    let condition = |ty: &str| conditions.iter().find(|c| str_at(c, &["type"]) == ty);
    let mut reason = Some(status_reason)
        .filter(|r| !r.is_empty())
        .unwrap_or(phase)
        .to_owned();
    if conditions.iter().any(|c| {
        str_at(c, &["type"]) == "PodScheduled" && str_at(c, &["reason"]) == "SchedulingGated"
    }) {
        reason = "SchedulingGated".into();
    }

    // Restartable ("sidecar") init containers count as containers. Go indexes them by name in
    // a map, so with duplicate names the last one wins.
    let init_specs = items(pod, &["spec", "initContainers"]);
    let sidecar = |c: &Value| str_at(c, &["restartPolicy"]) == "Always";
    let is_sidecar = |name: &str| {
        init_specs
            .iter()
            .rev()
            .find(|c| str_at(c, &["name"]) == name)
            .is_some_and(sidecar)
    };
    let total =
        len_at(pod, &["spec", "containers"]) + init_specs.iter().filter(|c| sidecar(c)).count();
    let mut ready = 0;
    let (mut restarts, mut sidecar_restarts) = (0, 0);
    let (mut last_restart, mut last_sidecar_restart) = (None, None);

    let mut initializing = false;
    for (i, status) in items(pod, &["status", "initContainerStatuses"])
        .iter()
        .enumerate()
    {
        let count = int_at(status, &["restartCount"]);
        restarts += count;
        note_restart(&mut last_restart, status);
        let is_sidecar = is_sidecar(str_at(status, &["name"]));
        if is_sidecar {
            sidecar_restarts += count;
            note_restart(&mut last_sidecar_restart, status);
        }
        let terminated = at(status, &["state", "terminated"]);
        if terminated.is_some_and(|t| int_at(t, &["exitCode"]) == 0) {
            continue;
        }
        if is_sidecar && is_true(status, &["started"]) {
            if is_true(status, &["ready"]) {
                ready += 1;
            }
            continue;
        }
        let waiting = str_at(status, &["state", "waiting", "reason"]);
        reason = match terminated {
            Some(t) => terminated_reason("Init:", t),
            None if !waiting.is_empty() && waiting != "PodInitializing" => {
                format!("Init:{waiting}")
            }
            None => format!("Init:{i}/{}", init_specs.len()),
        };
        initializing = true;
        break;
    }

    let initialized = condition("Initialized").is_some_and(|c| str_at(c, &["status"]) == "True");
    if !initializing || initialized {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for status in items(pod, &["status", "containerStatuses"]).iter().rev() {
            restarts += int_at(status, &["restartCount"]);
            note_restart(&mut last_restart, status);
            let waiting = str_at(status, &["state", "waiting", "reason"]);
            if !waiting.is_empty() {
                reason = waiting.to_owned();
            } else if let Some(t) = at(status, &["state", "terminated"]) {
                reason = terminated_reason("", t);
            } else if is_true(status, &["ready"]) && at(status, &["state", "running"]).is_some() {
                has_running = true;
                ready += 1;
            }
        }
        // A finished container next to a running one: the pod is not "Completed".
        if reason == "Completed" && has_running {
            let pod_ready = conditions
                .iter()
                .any(|c| str_at(c, &["type"]) == "Ready" && str_at(c, &["status"]) == "True");
            reason = if pod_ready { "Running" } else { "NotReady" }.into();
        }
    }

    if at(pod, &["metadata", "deletionTimestamp"]).is_some() {
        if status_reason == "NodeLost" {
            reason = "Unknown".into();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".into();
        }
    }

    let restarts = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", since(Some(t), now)),
        _ => restarts.to_string(),
    };
    let ip = items(pod, &["status", "podIPs"])
        .first()
        .map_or("", |ip| str_at(ip, &["ip"]));
    let gates = items(pod, &["spec", "readinessGates"]);
    let gates = if gates.is_empty() {
        "<none>".to_owned()
    } else {
        let met = gates
            .iter()
            .filter(|g| {
                condition(str_at(g, &["conditionType"]))
                    .is_some_and(|c| str_at(c, &["status"]) == "True")
            })
            .count();
        format!("{met}/{}", gates.len())
    };
    vec![
        name(pod),
        Value::from(format!("{ready}/{total}")),
        Value::from(reason),
        Value::from(restarts),
        age(pod, now),
        or_none(ip),
        or_none(str_at(pod, &["spec", "nodeName"])),
        or_none(str_at(pod, &["status", "nominatedNodeName"])),
        Value::from(gates),
    ]
}

/// `printNode`: Status from the Ready condition (+SchedulingDisabled), Roles from labels.
fn print_node(node: &Value, now: Timestamp) -> Vec<Value> {
    // Go builds a map by condition type, so a repeated type keeps its last entry.
    let ready = items(node, &["status", "conditions"])
        .iter()
        .rev()
        .find(|c| str_at(c, &["type"]) == "Ready");
    let mut status = vec![match ready {
        Some(c) if str_at(c, &["status"]) == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if is_true(node, &["spec", "unschedulable"]) {
        status.push("SchedulingDisabled");
    }
    let mut roles = BTreeSet::new();
    if let Some(labels) = at(node, &["metadata", "labels"]).and_then(Value::as_object) {
        for (key, value) in labels {
            if let Some(role) = key.strip_prefix("node-role.kubernetes.io/") {
                if !role.is_empty() {
                    roles.insert(role);
                }
            } else if key == "kubernetes.io/role"
                && let Some(role) = value.as_str().filter(|r| !r.is_empty())
            {
                roles.insert(role);
            }
        }
    }
    let roles = roles.into_iter().collect::<Vec<_>>().join(",");
    let address = |ty: &str| {
        items(node, &["status", "addresses"])
            .iter()
            .find(|a| str_at(a, &["type"]) == ty)
            .map_or_else(
                || Value::from("<none>"),
                |a| Value::from(str_at(a, &["address"])),
            )
    };
    let info = |field: &str| match str_at(node, &["status", "nodeInfo", field]) {
        "" => Value::from("<unknown>"),
        s => Value::from(s),
    };
    vec![
        name(node),
        Value::from(status.join(",")),
        or_none(&roles),
        age(node, now),
        Value::from(str_at(node, &["status", "nodeInfo", "kubeletVersion"])),
        address("InternalIP"),
        address("ExternalIP"),
        info("osImage"),
        info("kernelVersion"),
        info("containerRuntimeVersion"),
    ]
}

/// `printEvent` (wide): the times fall back from firstTimestamp to eventTime and from
/// lastTimestamp to the first; a series overrides the last time and the count.
fn print_event(event: &Value, now: Timestamp) -> Vec<Value> {
    let first = match time_at(event, &["firstTimestamp"]) {
        Some(t) => since(Some(t), now),
        None => since(time_at(event, &["eventTime"]), now),
    };
    let mut last = match time_at(event, &["lastTimestamp"]) {
        Some(t) => since(Some(t), now),
        None => first.clone(),
    };
    let mut count = int_at(event, &["count"]);
    if let Some(series) = at(event, &["series"]) {
        last = since(time_at(series, &["lastObservedTime"]), now);
        count = int_at(series, &["count"]);
    } else if count == 0 {
        // Singleton events of the events.k8s.io API have no count.
        count = 1;
    }
    let kind = str_at(event, &["involvedObject", "kind"]).to_lowercase();
    let target = match str_at(event, &["involvedObject", "name"]) {
        "" => kind,
        name => format!("{kind}/{name}"),
    };
    let first_non_empty = |a: &'static str, b: &'static str| match str_at(event, &["source", a]) {
        "" => str_at(event, &[b]),
        s => s,
    };
    let component = first_non_empty("component", "reportingComponent");
    let source = match first_non_empty("host", "reportingInstance") {
        "" => component.to_owned(),
        instance => format!("{component}, {instance}"),
    };
    vec![
        Value::from(last),
        Value::from(str_at(event, &["type"])),
        Value::from(str_at(event, &["reason"])),
        Value::from(target),
        Value::from(str_at(event, &["involvedObject", "fieldPath"])),
        Value::from(source),
        Value::from(str_at(event, &["message"]).trim()),
        Value::from(first),
        Value::from(count),
        name(event),
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // unwrap is allowed in tests (HELPERS.md); a panic is a test failure
mod tests {
    use super::*;

    const SEC: i64 = 1_000_000_000;
    const MIN: i64 = 60 * SEC;
    const HOUR: i64 = 60 * MIN;
    const DAY: i64 = 24 * HOUR;
    const YEAR: i64 = 365 * DAY;

    fn now() -> Timestamp {
        "2025-06-01T12:00:00Z".parse().unwrap()
    }

    /// `now` minus `d` nanoseconds, in RFC 3339.
    fn ago(d: i64) -> String {
        let t = Timestamp::from_nanosecond(now().as_nanosecond() - i128::from(d)).unwrap();
        t.to_string()
    }

    fn render(kind: &str, objects: &[Value]) -> Value {
        table(kind, objects, now(), IncludeObject::Metadata)
    }

    fn cells(kind: &str, obj: Value) -> Vec<Value> {
        render(kind, &[obj])["rows"][0]["cells"]
            .as_array()
            .unwrap()
            .clone()
    }

    fn columns(kind: &str) -> Vec<(String, u64)> {
        let t = render(kind, &[]);
        let cols = t["columnDefinitions"].as_array().unwrap().iter();
        cols.map(|c| {
            (
                c["name"].as_str().unwrap().to_owned(),
                c["priority"].as_u64().unwrap(),
            )
        })
        .collect()
    }

    #[test]
    fn human_duration_matches_go_boundaries() {
        let cases: &[(i64, &str)] = &[
            (i64::MIN, "<invalid>"),
            (-2 * SEC, "<invalid>"),
            (-SEC - SEC / 2, "0s"),
            (-1, "0s"),
            (0, "0s"),
            (SEC - 1, "0s"),
            (13 * SEC, "13s"),
            (2 * MIN - 1, "119s"),
            (2 * MIN, "2m"),
            (2 * MIN + SEC, "2m1s"),
            (5 * MIN + 31 * SEC, "5m31s"),
            (10 * MIN - 1, "9m59s"),
            (10 * MIN, "10m"),
            (10 * MIN + 59 * SEC, "10m"),
            (3 * HOUR - 1, "179m"),
            (3 * HOUR, "3h"),
            (3 * HOUR + 4 * MIN, "3h4m"),
            (8 * HOUR - 1, "7h59m"),
            (8 * HOUR, "8h"),
            (8 * HOUR + 30 * MIN, "8h"),
            (2 * DAY - 1, "47h"),
            (2 * DAY, "2d"),
            (2 * DAY + 5 * HOUR, "2d5h"),
            (8 * DAY - 1, "7d23h"),
            (8 * DAY, "8d"),
            (8 * DAY + 23 * HOUR, "8d"),
            (45 * DAY, "45d"),
            (2 * YEAR - 1, "729d"),
            (2 * YEAR, "2y"),
            (3 * YEAR + 30 * DAY, "3y30d"),
            (8 * YEAR - 1, "7y364d"),
            (8 * YEAR, "8y"),
            (100 * YEAR + 200 * DAY, "100y"),
            (i64::MAX, "292y"),
        ];
        for &(d, want) in cases {
            assert_eq!(human_duration(d), want, "duration {d}ns");
        }
    }

    #[test]
    fn include_object_parse() {
        let cases = [
            (None, IncludeObject::Metadata),
            (Some(""), IncludeObject::Metadata),
            (Some("Metadata"), IncludeObject::Metadata),
            (Some("Object"), IncludeObject::Object),
            (Some("None"), IncludeObject::None),
        ];
        for (input, want) in cases {
            assert_eq!(IncludeObject::parse(input), Ok(want), "{input:?}");
        }
        let err = IncludeObject::parse(Some("object"));
        assert_eq!(
            err,
            Err(r#"unrecognized includeObject value: "object""#.to_owned())
        );
    }

    #[test]
    fn service_account_table_has_the_wire_shape() {
        let sa = json!({"kind": "ServiceAccount", "apiVersion": "v1", "secrets": [{"name": "a"}, {"name": "b"}],
            "metadata": {"name": "example-sa", "namespace": "default", "creationTimestamp": ago(13 * SEC), "labels": {"a": "b"}}});
        let t = render("ServiceAccount", std::slice::from_ref(&sa));
        let keys: Vec<&String> = t.as_object().unwrap().keys().collect();
        assert_eq!(
            keys,
            [
                "kind",
                "apiVersion",
                "metadata",
                "columnDefinitions",
                "rows"
            ]
        );
        assert_eq!(
            (&t["kind"], &t["apiVersion"], &t["metadata"]),
            (&json!("Table"), &json!("meta.k8s.io/v1"), &json!({}))
        );
        let name_col = json!({"name": "Name", "type": "string", "format": "name", "description": D_NAME, "priority": 0});
        assert_eq!(t["columnDefinitions"][0], name_col);
        assert_eq!(t["columnDefinitions"][1]["type"], "string");
        assert_eq!(
            columns("ServiceAccount"),
            [("Name".into(), 0), ("Secrets".into(), 0), ("Age".into(), 0)]
        );
        assert_eq!(t["rows"][0]["cells"], json!(["example-sa", 2, "13s"]));
        let partial = json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": sa["metadata"]});
        assert_eq!(t["rows"][0]["object"], partial);
        assert!(t["rows"][0].get("conditions").is_none());
        let with = |include| table("ServiceAccount", std::slice::from_ref(&sa), now(), include);
        assert_eq!(with(IncludeObject::Object)["rows"][0]["object"], sa);
        assert_eq!(with(IncludeObject::None)["rows"][0]["object"], Value::Null);
        assert_eq!(render("ServiceAccount", &[])["rows"], json!([]));
    }

    #[test]
    fn secret_configmap_namespace_cells() {
        let secret = json!({"metadata": {"name": "s", "creationTimestamp": ago(5 * MIN + 31 * SEC)}, "type": "kubernetes.io/service-account-token",
            "data": {"token": "eA==", "ca.crt": "eA=="}, "stringData": {"token": "x", "namespace": "y"}});
        assert_eq!(
            cells("Secret", secret),
            json!(["s", "kubernetes.io/service-account-token", 3, "5m31s"])
                .as_array()
                .unwrap()[..]
        );
        assert_eq!(
            cells("Secret", json!({"metadata": {"name": "o"}})),
            [json!("o"), json!("Opaque"), json!(0), json!("<unknown>")]
        );
        let cm = json!({"metadata": {"name": "kube-root-ca.crt", "creationTimestamp": ago(3 * HOUR + 4 * MIN)},
            "data": {"ca.crt": "x"}, "binaryData": {"b": "eA=="}});
        assert_eq!(
            cells("ConfigMap", cm),
            [json!("kube-root-ca.crt"), json!(2), json!("3h4m")]
        );
        let ns = json!({"metadata": {"name": "default", "creationTimestamp": ago(2 * DAY + 5 * HOUR)}, "status": {"phase": "Active"}});
        assert_eq!(
            cells("Namespace", ns),
            [json!("default"), json!("Active"), json!("2d5h")]
        );
        assert_eq!(columns("Secret").len(), 4);
    }

    #[test]
    fn age_edge_cases() {
        let cases = json!([
            [null, "<unknown>"],
            ["0001-01-01T00:00:00Z", "<unknown>"],
            ["not a time", "<unknown>"],
            [7, "<unknown>"],
            [ago(-SEC - SEC / 2), "0s"],
            [ago(-3 * SEC), "<invalid>"],
            ["2025-06-01T13:59:00+02:00", "60s"],
            ["2025-06-01T11:59:59.999999Z", "0s"],
            ["0001-01-01T00:00:01Z", "292y"],
        ]);
        for case in cases.as_array().unwrap() {
            let sa = json!({"metadata": {"name": "a", "creationTimestamp": case[0]}});
            assert_eq!(cells("ServiceAccount", sa)[2], case[1], "{case}");
        }
    }

    #[test]
    fn odd_input_never_panics() {
        let odd = [
            json!(null),
            json!(42),
            json!({"metadata": 1, "status": [], "spec": "y", "data": 3, "secrets": {}}),
            json!({"metadata": {"name": 5, "labels": [], "deletionTimestamp": 1}, "status": {"conditions": {},
                "initContainerStatuses": [1, null, {"state": []}], "containerStatuses": [{"state": 3, "lastState": {"terminated": 1}}],
                "podIPs": [null], "addresses": [2]}, "spec": {"initContainers": [null], "readinessGates": [7]}, "series": {}}),
        ];
        for kind in [
            "ServiceAccount",
            "Secret",
            "ConfigMap",
            "Namespace",
            "Pod",
            "Node",
            "Event",
            "Foo",
        ] {
            let t = render(kind, &odd);
            let width = t["columnDefinitions"].as_array().unwrap().len();
            assert_eq!(t["rows"].as_array().unwrap().len(), odd.len(), "{kind}");
            for row in t["rows"].as_array().unwrap() {
                assert_eq!(row["cells"].as_array().unwrap().len(), width, "{kind}");
                assert!(row["object"]["metadata"].is_object(), "{kind}");
            }
        }
    }

    /// Each case: [status, spec, Ready, Status, Restarts].
    #[test]
    fn pod_ready_status_and_restarts() {
        let one = json!({"containers": [{"name": "c"}]});
        let two = json!({"containers": [{"name": "a"}, {"name": "b"}]});
        let init = json!({"initContainers": [{"name": "i1"}, {"name": "i2"}], "containers": [{"name": "c"}]});
        let side = json!({"initContainers": [{"name": "side", "restartPolicy": "Always"}, {"name": "i"}], "containers": [{"name": "c"}]});
        let run = json!({"running": {}});
        let done = json!({"name": "i1", "state": {"terminated": {"exitCode": 0}}});
        let cases = json!([
            [{"phase": "Pending"}, one, "0/1", "Pending", "0"],
            [{"phase": "Failed", "reason": "Evicted"}, one, "0/1", "Evicted", "0"],
            [{"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]}, one, "0/1", "SchedulingGated", "0"],
            [{"phase": "Running", "containerStatuses": [{"ready": true, "state": run}]}, one, "1/1", "Running", "0"],
            [{"phase": "Running", "containerStatuses": [{"ready": true, "state": {}}]}, one, "0/1", "Running", "0"],
            [{"phase": "Running", "containerStatuses": [
                {"name": "a", "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}}, "lastState": {"terminated": {"finishedAt": ago(5 * MIN)}}},
                {"name": "b", "restartCount": 2, "ready": true, "state": run, "lastState": {"terminated": {"finishedAt": ago(HOUR)}}}]},
             two, "1/2", "CrashLoopBackOff", "5 (5m ago)"],
            [{"phase": "Running", "containerStatuses": [{"restartCount": 4, "state": run}]}, one, "0/1", "Running", "4"],
            [{"phase": "Pending", "initContainerStatuses": [{"name": "side", "started": false, "ready": true, "state": run}]}, side, "0/2", "Init:0/2", "0"],
            [{"phase": "Running", "containerStatuses": [{"state": run, "lastState": {"terminated": {"finishedAt": ago(MIN)}}}]}, one, "0/1", "Running", "0"],
            [{"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}], "initContainerStatuses": [{"name": "i1", "state": run}],
              "containerStatuses": [{"ready": true, "state": run}]}, init, "1/1", "Init:0/2", "0"],
            [{"phase": "Pending", "containerStatuses": [{"state": {"waiting": {"reason": "ErrImagePull"}}}, {"state": {"waiting": {"reason": "ContainerCreating"}}}]},
             two, "0/2", "ErrImagePull", "0"],
            [{"phase": "Failed", "containerStatuses": [{"state": {"terminated": {"exitCode": 2}}}]}, one, "0/1", "ExitCode:2", "0"],
            [{"phase": "Failed", "containerStatuses": [{"state": {"terminated": {"exitCode": 137, "signal": 9}}}]}, one, "0/1", "Signal:9", "0"],
            [{"phase": "Failed", "containerStatuses": [{"state": {"terminated": {"exitCode": 1, "reason": "Error"}}}]}, one, "0/1", "Error", "0"],
            [{"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}], "containerStatuses": [
                {"ready": true, "state": run}, {"state": {"terminated": {"reason": "Completed"}}}]}, two, "1/2", "Running", "0"],
            [{"phase": "Running", "conditions": [{"type": "Ready", "status": "False"}], "containerStatuses": [
                {"ready": true, "state": run}, {"state": {"terminated": {"reason": "Completed"}}}]}, two, "1/2", "NotReady", "0"],
            [{"phase": "Pending", "initContainerStatuses": [done, {"name": "i2", "state": run}]}, init, "0/1", "Init:1/2", "0"],
            [{"phase": "Pending", "initContainerStatuses": [{"name": "i1", "state": {"waiting": {"reason": "PodInitializing"}}}]}, init, "0/1", "Init:0/2", "0"],
            [{"phase": "Pending", "initContainerStatuses": [{"name": "i1", "state": {"waiting": {"reason": "ErrImagePull"}}}]}, init, "0/1", "Init:ErrImagePull", "0"],
            [{"phase": "Pending", "initContainerStatuses": [{"name": "i1", "state": {"terminated": {"exitCode": 3}}}]}, init, "0/1", "Init:ExitCode:3", "0"],
            [{"phase": "Pending", "initContainerStatuses": [{"name": "i1", "state": {"terminated": {"exitCode": 3, "signal": 15}}}]}, init, "0/1", "Init:Signal:15", "0"],
            [{"phase": "Pending", "initContainerStatuses": [{"name": "i1", "state": {"terminated": {"exitCode": 3, "reason": "OOMKilled"}}}]}, init, "0/1", "Init:OOMKilled", "0"],
            [{"phase": "Pending", "initContainerStatuses": [{"name": "i1", "restartCount": 2, "state": {"waiting": {"reason": "CrashLoopBackOff"}}}],
              "containerStatuses": [{"restartCount": 9, "state": {"waiting": {"reason": "PodInitializing"}}}]}, init, "0/1", "Init:CrashLoopBackOff", "2"],
            [{"phase": "Running", "conditions": [{"type": "Initialized", "status": "True"}], "initContainerStatuses": [
                {"name": "side", "started": true, "ready": true, "restartCount": 1, "state": run, "lastState": {"terminated": {"finishedAt": ago(90 * SEC)}}},
                {"name": "i", "restartCount": 7, "state": {"terminated": {"exitCode": 0}}}],
              "containerStatuses": [{"name": "c", "ready": true, "state": run}]}, side, "2/2", "Running", "1 (90s ago)"],
        ]);
        for case in cases.as_array().unwrap() {
            let pod = json!({"metadata": {"name": "p"}, "status": case[0], "spec": case[1]});
            assert_eq!(
                cells("Pod", pod)[1..4],
                case.as_array().unwrap()[2..5],
                "{}",
                case[0]
            );
        }
    }

    #[test]
    fn pod_deletion_conditions_and_wide_columns() {
        let mut p = json!({"metadata": {"name": "p", "creationTimestamp": ago(45 * DAY), "deletionTimestamp": ago(0)},
            "spec": {"containers": [{"name": "c"}]}, "status": {"phase": "Running"}});
        assert_eq!(cells("Pod", p.clone())[2], "Terminating");
        p["status"]["reason"] = json!("NodeLost");
        assert_eq!(cells("Pod", p.clone())[2], "Unknown");
        p["status"] = json!({"phase": "Succeeded"});
        assert_eq!(cells("Pod", p.clone())[2], "Succeeded");
        let row = render("Pod", &[p.clone()])["rows"][0].clone();
        let keys: Vec<&String> = row.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["cells", "conditions", "object"]);
        let done = json!([{"type": "Completed", "status": "True", "reason": "Succeeded", "message": "The pod has completed successfully."}]);
        assert_eq!(row["conditions"], done);
        p["status"]["phase"] = json!("Failed");
        assert_eq!(
            render("Pod", &[p])["rows"][0]["conditions"][0]["message"],
            "The pod failed."
        );

        let p = json!({"metadata": {"name": "p", "creationTimestamp": ago(45 * DAY)},
            "spec": {"containers": [{"name": "c"}], "nodeName": "n1", "readinessGates": [{"conditionType": "example.com/g"}, {"conditionType": "x"}]},
            "status": {"phase": "Running", "podIP": "10.0.0.9", "podIPs": [{"ip": "10.0.0.5"}, {"ip": "fd00::5"}],
                "conditions": [{"type": "Ready", "status": "True"}, {"type": "example.com/g", "status": "True"}, {"type": "x", "status": "False"}],
                "containerStatuses": [{"ready": true, "state": {"running": {}}}]}});
        let want = json!([
            "p", "1/1", "Running", "0", "45d", "10.0.0.5", "n1", "<none>", "1/2"
        ]);
        assert_eq!(cells("Pod", p), want.as_array().unwrap()[..]);
        let pending = json!({"metadata": {"name": "p"}, "status": {"phase": "Pending"}});
        assert_eq!(
            cells("Pod", pending)[5..],
            [
                json!("<none>"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>")
            ]
        );
        let cols = columns("Pod");
        assert_eq!(cols.iter().filter(|c| c.1 == 0).count(), 5);
        assert_eq!(
            (cols[3].0.as_str(), cols[7].0.as_str()),
            ("Restarts", "Nominated Node")
        );
    }

    #[test]
    fn node_cells() {
        let node = json!({"metadata": {"name": "n1", "creationTimestamp": ago(8 * DAY), "labels": {"node-role.kubernetes.io/worker": "",
                "node-role.kubernetes.io/": "x", "kubernetes.io/role": "master", "node-role.kubernetes.io/master": "", "other": "y"}},
            "spec": {"unschedulable": true},
            "status": {"conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                "addresses": [{"type": "Hostname", "address": "n1"}, {"type": "InternalIP", "address": "10.0.0.1"}],
                "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "Debian", "kernelVersion": "6.1.0"}}});
        let want = json!([
            "n1",
            "Ready,SchedulingDisabled",
            "master,worker",
            "8d",
            "v1.32.0",
            "10.0.0.1",
            "<none>",
            "Debian",
            "6.1.0",
            "<unknown>"
        ]);
        assert_eq!(cells("Node", node), want.as_array().unwrap()[..]);
        let not_ready = json!({"metadata": {"name": "n2"}, "status": {"conditions": [{"type": "Ready", "status": "True"}, {"type": "Ready", "status": "Unknown"}]}});
        assert_eq!(
            cells("Node", not_ready)[1..3],
            [json!("NotReady"), json!("<none>")]
        );
        assert_eq!(
            cells("Node", json!({"metadata": {"name": "n3"}}))[1],
            "Unknown"
        );
        assert_eq!(columns("Node").iter().filter(|c| c.1 == 1).count(), 5);
    }

    #[test]
    fn event_cells() {
        let cases = json!([
            [{"metadata": {"name": "p.17f"}, "type": "Warning", "reason": "BackOff", "message": "  Back-off restarting\n", "count": 5,
              "involvedObject": {"kind": "Pod", "name": "p", "fieldPath": "spec.containers{c}"}, "source": {"component": "kubelet", "host": "n1"},
              "firstTimestamp": ago(10 * MIN), "lastTimestamp": ago(30 * SEC)},
             ["30s", "Warning", "BackOff", "pod/p", "spec.containers{c}", "kubelet, n1", "Back-off restarting", "10m", 5, "p.17f"]],
            [{"metadata": {"name": "e"}, "involvedObject": {"kind": "Node"}, "eventTime": ago(3 * MIN), "reportingComponent": "scheduler",
              "series": {"count": 4, "lastObservedTime": ago(20 * SEC)}},
             ["20s", "", "", "node", "", "scheduler", "", "3m", 4, "e"]],
            [{"metadata": {"name": "e"}, "source": {"host": "h"}, "reportingComponent": "rc", "firstTimestamp": ago(MIN)},
             ["60s", "", "", "", "", "rc, h", "", "60s", 1, "e"]],
            [{"metadata": {"name": "e"}}, ["<unknown>", "", "", "", "", "", "", "<unknown>", 1, "e"]],
        ]);
        for case in cases.as_array().unwrap() {
            assert_eq!(
                cells("Event", case[0].clone()),
                case[1].as_array().unwrap()[..],
                "{}",
                case[0]
            );
        }
        let cols = &render("Event", &[])["columnDefinitions"];
        assert_eq!(
            cols[9],
            json!({"name": "Name", "type": "string", "format": "name", "description": D_NAME, "priority": 1})
        );
        assert_eq!(columns("Event").iter().filter(|c| c.1 == 0).count(), 5);
    }

    #[test]
    fn binding_cells_split_subjects_by_kind() {
        let rb = json!({"metadata": {"name": "read", "creationTimestamp": ago(3 * MIN)},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "cm-reader"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "ServiceAccount", "name": "app", "namespace": "a"},
                {"kind": "User", "name": "bob"}, {"kind": "Group", "name": "devs"}, {"kind": "Robot", "name": "r2"}]});
        let want = json!([
            "read",
            "Role/cm-reader",
            "3m",
            "alice, bob",
            "devs",
            "a/app"
        ]);
        assert_eq!(cells("RoleBinding", rb), want.as_array().unwrap()[..]);
        let bare =
            json!({"metadata": {"name": "b"}, "roleRef": {"kind": "ClusterRole", "name": "view"}});
        assert_eq!(
            cells("ClusterRoleBinding", bare),
            [
                json!("b"),
                json!("ClusterRole/view"),
                json!("<unknown>"),
                json!(""),
                json!(""),
                json!("")
            ]
        );
        let cols = columns("ClusterRoleBinding");
        assert_eq!(cols.iter().filter(|c| c.1 == 1).count(), 3);
        let t = render("RoleBinding", &[]);
        assert_eq!(t["columnDefinitions"][1]["description"], D_ROLE_REF);
        assert_eq!(
            t["columnDefinitions"][3]["description"],
            "Users in the roleBinding"
        );
        // Roles use the default convertor, as in Kubernetes.
        assert_eq!(columns("ClusterRole")[1].0, "Created At");
    }

    #[test]
    fn unknown_kind_uses_default_convertor() {
        let objects = [
            json!({"metadata": {"name": "l", "creationTimestamp": "2024-02-03T04:05:06.7+01:00"}}),
            json!({"metadata": {"name": "m"}}),
        ];
        let t = render("Lease", &objects);
        let created = json!({"name": "Created At", "type": "date", "format": "", "description": D_CREATED, "priority": 0});
        assert_eq!(t["columnDefinitions"][1], created);
        assert_eq!(t["rows"][0]["cells"], json!(["l", "2024-02-03T03:05:06Z"]));
        assert_eq!(t["rows"][1]["cells"], json!(["m", "0001-01-01T00:00:00Z"]));
        assert_eq!(render("Lease", &[])["rows"], Value::Null);
    }
}
