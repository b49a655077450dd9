//! Names mirrored from Kubernetes (see `shared/reference/`): annotation and label keys,
//! Secret types, well-known namespaces, group names and limits. No logic lives here.

/// The version this server reports and emulates. kubectl's dispatcher on these machines
/// picks the kubectl binary by `minor` (`shared/reference/kubectl-wire.md` §0).
pub(crate) const KUBE_MAJOR: &str = "1";
pub(crate) const KUBE_MINOR: &str = "32";
pub(crate) const KUBE_GIT_VERSION: &str = "v1.32.0+tokenwarden";

/// Namespaces that exist from the first start (kube-apiserver's system namespaces
/// controller plus `default`).
pub(crate) const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];
/// Namespaces the NamespaceLifecycle admission plugin refuses to delete (kube-apiserver's
/// `immortalNamespaces`; `kube-node-lease` is not among them).
pub(crate) const IMMORTAL_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];
/// The finalizer every namespace gets in `spec.finalizers` on create, removed by the
/// namespace controller once the namespace is empty (`api.FinalizerKubernetes`).
pub(crate) const FINALIZER_KUBERNETES: &str = "kubernetes";

/// The Service, Endpoints and EndpointSlice that point at the API server.
pub(crate) const KUBERNETES_SERVICE: &str = "kubernetes";
pub(crate) const KUBERNETES_SERVICE_NAMESPACE: &str = "default";
/// The first address of kube-apiserver's default `--service-cluster-ip-range` (10.0.0.0/24).
pub(crate) const KUBERNETES_SERVICE_CLUSTER_IP: &str = "10.0.0.1";

pub(crate) const GROUP_MASTERS: &str = "system:masters";
pub(crate) const GROUP_AUTHENTICATED: &str = "system:authenticated";
pub(crate) const GROUP_UNAUTHENTICATED: &str = "system:unauthenticated";
pub(crate) const USER_ANONYMOUS: &str = "system:anonymous";
pub(crate) const GROUP_SERVICE_ACCOUNTS: &str = "system:serviceaccounts";

/// The OIDC discovery document and the key set (ServiceAccountIssuerDiscovery).
pub(crate) const OIDC_DISCOVERY_PATH: &str = "/.well-known/openid-configuration";
pub(crate) const OIDC_JWKS_PATH: &str = "/openid/v1/jwks";

/// The RBAC API group (`rbac.GroupName`): Roles, ClusterRoles and their bindings, and the
/// default `apiGroup` of User and Group subjects and of every `roleRef`.
pub(crate) const GROUP_RBAC: &str = "rbac.authorization.k8s.io";
/// What marks the bootstrap policy: objects labelled `kubernetes.io/bootstrapping=rbac-defaults`,
/// repaired at every start unless their `rbac.authorization.kubernetes.io/autoupdate`
/// annotation is `false`.
pub(crate) const LABEL_BOOTSTRAPPING: &str = "kubernetes.io/bootstrapping";
pub(crate) const BOOTSTRAPPING_RBAC_DEFAULTS: &str = "rbac-defaults";
pub(crate) const ANNOTATION_RBAC_AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";

pub(crate) const SECRET_TYPE_OPAQUE: &str = "Opaque";
pub(crate) const SECRET_TYPE_SA_TOKEN: &str = "kubernetes.io/service-account-token";
pub(crate) const ANNOTATION_SA_NAME: &str = "kubernetes.io/service-account.name";

/// kube-apiserver's request body limit (`--max-request-bytes` default is 3 MiB).
pub(crate) const MAX_REQUEST_BYTES: usize = 3 * 1024 * 1024;
/// The total size limit of a Secret's or ConfigMap's data (`core.MaxSecretSize`).
pub(crate) const MAX_SECRET_BYTES: usize = 1024 * 1024;
/// `metadata.annotations` total size limit (`TotalAnnotationSizeLimitB`).
pub(crate) const MAX_ANNOTATIONS_BYTES: usize = 256 * 1024;

/// The default pod termination grace period (`DefaultTerminationGracePeriodSeconds`).
pub(crate) const DEFAULT_TERMINATION_GRACE_SECONDS: i64 = 30;
pub(crate) const LABEL_LEGACY_TOKEN_INVALID_SINCE: &str =
    "kubernetes.io/legacy-token-invalid-since";

/// The default service-account issuer and API audience (the reference cluster's).
pub(crate) const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc";

/// kube-apiserver's default `--etcd-prefix`: every object's key starts with it
/// (`/registry/serviceaccounts/<namespace>/<name>`).
pub(crate) const DEFAULT_ETCD_PREFIX: &str = "/registry";

/// The UID annotation of a legacy token Secret (facts §5.1); empty or absent matches any UID.
pub(crate) const ANNOTATION_SA_UID: &str = "kubernetes.io/service-account.uid";

/// The ServiceAccount a pod runs as when it names none (facts §6.1 step 2).
pub(crate) const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// On the bookmark that ends a watch's initial events (`metav1.InitialEventsAnnotationKey`).
pub(crate) const ANNOTATION_INITIAL_EVENTS_END: &str = "k8s.io/initial-events-end";
/// Marks a mirror pod (a kubelet static pod's API copy); admission leaves its spec alone.
pub(crate) const ANNOTATION_MIRROR_POD: &str = "kubernetes.io/config.mirror";
/// A ServiceAccount annotation: when it parses as true, pods may only reference the
/// secrets the account lists (facts §6.1, Validate).
pub(crate) const ANNOTATION_ENFORCE_MOUNTABLE_SECRETS: &str =
    "kubernetes.io/enforce-mountable-secrets";
/// Where the service-account credentials are mounted in every container.
pub(crate) const SA_TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The name prefix of the injected projected volume (`kube-api-access-<5 chars>`).
pub(crate) const SA_VOLUME_PREFIX: &str = "kube-api-access-";
/// The file names inside the injected volume.
pub(crate) const SA_VOLUME_TOKEN_PATH: &str = "token";
pub(crate) const SA_VOLUME_NAMESPACE_PATH: &str = "namespace";
/// The per-namespace root CA ConfigMap and its key (facts §6.3).
pub(crate) const ROOT_CA_CONFIGMAP: &str = "kube-root-ca.crt";
pub(crate) const ROOT_CA_KEY: &str = "ca.crt";
/// A projected or secret volume's file mode when none is given (0644).
pub(crate) const DEFAULT_VOLUME_MODE: i64 = 0o644;

/// The lifetime of the token in the injected volume: 3607 s, which the issuer may
/// extend to a year for old clients (facts §4.5; `WarnOnlyBoundTokenExpirationSeconds`).
pub(crate) const ADMISSION_TOKEN_EXPIRATION_SECONDS: i64 = 3607;
/// What the admission token is extended to: one year (`ExpirationExtensionSeconds`).
pub(crate) const TOKEN_EXPIRATION_EXTENSION_SECONDS: i64 = 365 * 24 * 3600;
/// A projected `serviceAccountToken` source's lifetime when none is given
/// (`SetDefaults_ServiceAccountTokenProjection`).
pub(crate) const DEFAULT_TOKEN_EXPIRATION_SECONDS: i64 = 3600;
/// The bounds of a requested token lifetime: 10 minutes and 2^32 seconds.
pub(crate) const MIN_TOKEN_EXPIRATION_SECONDS: i64 = 600;
pub(crate) const MAX_TOKEN_EXPIRATION_SECONDS: i64 = 1 << 32;

/// The namespace of the control plane's own objects (`metav1.NamespaceSystem`).
pub(crate) const NAMESPACE_SYSTEM: &str = "kube-system";
/// Data keys of a `kubernetes.io/service-account-token` Secret (`v1.ServiceAccountTokenKey`,
/// `ServiceAccountRootCAKey`, `ServiceAccountNamespaceKey`; facts §5.1).
pub(crate) const SECRET_KEY_TOKEN: &str = "token";
pub(crate) const SECRET_KEY_CA_CRT: &str = "ca.crt";
pub(crate) const SECRET_KEY_NAMESPACE: &str = "namespace";
/// The `kubernetes.io/description` annotation of `kube-root-ca.crt`, with the publisher's
/// exact text (facts §6.3).
pub(crate) const ANNOTATION_DESCRIPTION: &str = "kubernetes.io/description";
pub(crate) const ROOT_CA_DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the kube-apiserver when using internal endpoints such as the internal service IP or kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes clusters.";

/// The UTC date (`YYYY-MM-DD`) a legacy token was last used (facts §5.4).
pub(crate) const LABEL_LEGACY_TOKEN_LAST_USED: &str = "kubernetes.io/legacy-token-last-used";
/// `kube-system/<this>` holds, in data key `since`, the UTC date legacy token tracking
/// started (facts §5.3).
pub(crate) const LEGACY_TOKEN_TRACKING_CONFIGMAP: &str =
    "kube-apiserver-legacy-service-account-token-tracking";
pub(crate) const LEGACY_TOKEN_TRACKING_SINCE_KEY: &str = "since";
/// `--legacy-service-account-token-clean-up-period` default: 8760h, one year (facts §5.4).
pub(crate) const DEFAULT_LEGACY_TOKEN_CLEAN_UP_PERIOD_SECONDS: i64 = 8760 * 3600;
/// How often the legacy token cleaner runs (`DefaultCleanerSyncInterval`, 24 h).
pub(crate) const LEGACY_TOKEN_CLEANER_INTERVAL_SECONDS: u64 = 24 * 3600;

/// The kubelet's per-pod directory layout below the agent's root (`ROOT/pods/<uid>/volumes/
/// <plugin>/<volume>`) and the plugin directory names it uses.
pub(crate) const POD_VOLUMES_DIR: &str = "volumes";
pub(crate) const PLUGIN_DIR_PROJECTED: &str = "kubernetes.io~projected";
pub(crate) const PLUGIN_DIR_SECRET: &str = "kubernetes.io~secret";
pub(crate) const PLUGIN_DIR_CONFIGMAP: &str = "kubernetes.io~configmap";
pub(crate) const PLUGIN_DIR_DOWNWARD_API: &str = "kubernetes.io~downward-api";
/// Where node heartbeats live (`kube-node-lease`) and how long a node lease lasts (the
/// kubelet's `nodeLeaseDurationSeconds` default, renewed every quarter of it).
pub(crate) const NAMESPACE_NODE_LEASE: &str = "kube-node-lease";
pub(crate) const NODE_LEASE_DURATION_SECONDS: i32 = 40;
/// The `kubernetes.io/hostname` and `kubernetes.io/os` node labels.
pub(crate) const LABEL_HOSTNAME: &str = "kubernetes.io/hostname";
pub(crate) const LABEL_OS: &str = "kubernetes.io/os";
/// Marks a Pod made by `tokenwarden run` for its own process: only that process's embedded
/// agent serves it, a node agent leaves it alone.
pub(crate) const ANNOTATION_RUN_POD: &str = "tokenwarden.io/run";
/// The in-cluster environment variables of the API server's address.
pub(crate) const ENV_SERVICE_HOST: &str = "KUBERNETES_SERVICE_HOST";
pub(crate) const ENV_SERVICE_PORT: &str = "KUBERNETES_SERVICE_PORT";

/// Audit annotations of kube-apiserver's service-account authenticator (facts §8).
pub(crate) const AUDIT_STALE_TOKEN: &str = "authentication.k8s.io/stale-token";
/// The authorizer's decision on every audited request (`allow` or `forbid`).
pub(crate) const AUDIT_AUTHORIZATION_DECISION: &str = "authorization.k8s.io/decision";
pub(crate) const AUDIT_AUTHORIZATION_REASON: &str = "authorization.k8s.io/reason";
pub(crate) const AUDIT_LEGACY_TOKEN_AUTO_SECRET: &str =
    "authentication.k8s.io/legacy-token-autogenerated-secret";
pub(crate) const AUDIT_LEGACY_TOKEN_MANUAL_SECRET: &str =
    "authentication.k8s.io/legacy-token-manual-secret";
/// Its value is `<secretName>/<namespace>`, in this order.
pub(crate) const AUDIT_LEGACY_TOKEN_INVALIDATED: &str =
    "authentication.k8s.io/legacy-token-invalidated";
/// The audit annotation of an issued token: `JTI=<jti>` (token.go `IssuedCredentialIDAuditAnnotationKey`).
pub(crate) const AUDIT_ISSUED_CREDENTIAL_ID: &str =
    "authentication.kubernetes.io/issued-credential-id";
/// The user extra key naming the Pod a bound token belongs to.
pub(crate) const USER_EXTRA_POD_NAME: &str = "authentication.kubernetes.io/pod-name";
/// The username prefix of a ServiceAccount: `system:serviceaccount:<namespace>:<name>`.
pub(crate) const SERVICE_ACCOUNT_USER_PREFIX: &str = "system:serviceaccount:";

/// Metric names (exposed sample names): `telemetry` serves them, `diagnose` reads them.
pub(crate) const SERVICEACCOUNT_LEGACY_TOKENS_TOTAL: &str = "serviceaccount_legacy_tokens_total";
pub(crate) const SERVICEACCOUNT_STALE_TOKENS_TOTAL: &str = "serviceaccount_stale_tokens_total";
pub(crate) const SERVICEACCOUNT_VALID_TOKENS_TOTAL: &str = "serviceaccount_valid_tokens_total";
pub(crate) const SERVICEACCOUNT_LEGACY_AUTO_TOKEN_USES_TOTAL: &str =
    "serviceaccount_legacy_auto_token_uses_total";
pub(crate) const SERVICEACCOUNT_LEGACY_MANUAL_TOKEN_USES_TOTAL: &str =
    "serviceaccount_legacy_manual_token_uses_total";
pub(crate) const SERVICEACCOUNT_INVALID_LEGACY_AUTO_TOKEN_USES_TOTAL: &str =
    "serviceaccount_invalid_legacy_auto_token_uses_total";
pub(crate) const TOKENWARDEN_SERVICEACCOUNT_STALE_TOKENS_TOTAL: &str =
    "tokenwarden_serviceaccount_stale_tokens_total";
pub(crate) const TOKENWARDEN_SERVICEACCOUNT_LEGACY_TOKENS_TOTAL: &str =
    "tokenwarden_serviceaccount_legacy_tokens_total";
pub(crate) const APISERVER_REQUEST_TOTAL: &str = "apiserver_request_total";
pub(crate) const APISERVER_REQUEST_DURATION_SECONDS: &str = "apiserver_request_duration_seconds";
pub(crate) const AUTHENTICATION_ATTEMPTS: &str = "authentication_attempts";
pub(crate) const AUTHENTICATION_DURATION_SECONDS: &str = "authentication_duration_seconds";
pub(crate) const AUTHENTICATION_TOKEN_CACHE_REQUEST_TOTAL: &str =
    "authentication_token_cache_request_total";

/// The ClusterRole that grants everything (kube-apiserver's bootstrap policy, bound to
/// `system:masters`).
pub(crate) const CLUSTER_ROLE_CLUSTER_ADMIN: &str = "cluster-admin";
/// The RBAC wildcard in a rule's `verbs`, `resources` and `apiGroups` (`rbacv1.VerbAll`,
/// `ResourceAll`, `APIGroupAll`).
pub(crate) const RBAC_ALL: &str = "*";
