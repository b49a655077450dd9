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

pub(crate) const GROUP_MASTERS: &str = "system:masters";
pub(crate) const GROUP_AUTHENTICATED: &str = "system:authenticated";
pub(crate) const GROUP_UNAUTHENTICATED: &str = "system:unauthenticated";
pub(crate) const USER_ANONYMOUS: &str = "system:anonymous";
pub(crate) const GROUP_SERVICE_ACCOUNTS: &str = "system:serviceaccounts";

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
