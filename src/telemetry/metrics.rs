//! The server's Prometheus metric families and their `/metrics` exposition.
//!
//! Owns: the one [`Metrics`] value (created once at start-up, shared as an `Arc`,
//! cheap to update from any thread: an existing series costs a shared read lock
//! and an atomic add, a histogram observation that series' own short lock;
//! only a new series takes a write lock), the family names and
//! HELP texts mirrored from kube-apiserver, and [`Metrics::render`], which produces
//! the body and content type of `GET /metrics`.
//! Must not: know HTTP (the `api` module serves the body), read the clock (callers
//! pass durations in seconds), or take anything from a token other than the
//! namespace and name of its ServiceAccount.
//!
//! # Families
//!
//! Names, HELP texts (with the `[ALPHA]`/`[STABLE]` prefix component-base adds),
//! labels and buckets mirror kube-apiserver 1.32:
//! * `pkg/serviceaccount/metrics.go`: the six `serviceaccount_*_total` counters,
//!   no labels (`shared/reference/k8s-sa-token-facts.md` §8);
//! * `staging/src/k8s.io/apiserver/pkg/endpoints/metrics/metrics.go`:
//!   `apiserver_request_total` and `apiserver_request_duration_seconds`;
//! * `staging/src/k8s.io/apiserver/pkg/authentication/request/.../metrics.go`
//!   (1.32, before the `authenticator` label was added): `authentication_attempts`
//!   and `authentication_duration_seconds`;
//! * `staging/src/k8s.io/apiserver/pkg/authentication/token/cache/stats.go`:
//!   `authentication_token_cache_request_total` (its HELP is empty upstream, so
//!   the line reads `[ALPHA] ` with a trailing space, as in Kubernetes).
//!
//! Beyond Kubernetes, `tokenwarden_serviceaccount_{stale,legacy}_tokens_total`
//! carry `namespace` and `serviceaccount` labels so an operator can see *who* uses
//! stale or legacy tokens (deckhouse#19529: the stale-token audit annotation is
//! only written on an authenticator-cache miss, so the log cannot answer that).
//! Their cardinality is bounded: each family holds at most
//! [`MAX_SERVICE_ACCOUNT_SERIES`] (namespace, serviceaccount) series; uses by
//! further ServiceAccounts are counted under `namespace=""`,
//! `serviceaccount="_other"`. A series, once created, lives until restart.
//! The request families are bounded the same way ([`MAX_REQUEST_SERIES`]), as
//! their labels come from request paths.
//!
//! # Exposition format
//!
//! kube-apiserver serves the Prometheus text format 0.0.4
//! (`text/plain; version=0.0.4; charset=utf-8`): a counter's HELP/TYPE lines carry
//! the `_total` sample name and there is no `# EOF`. `prometheus-client` only
//! encodes OpenMetrics, where a counter's family name drops `_total`
//! (`# TYPE serviceaccount_stale_tokens counter`), HELP texts get a period
//! appended and the body ends in `# EOF`. Served as-is, promtool 2.42 (which
//! parses 0.0.4) sees the OpenMetrics family names as separate families without
//! samples, and `grep stale` shows HELP lines that differ from Kubernetes'.
//! So [`Metrics::render`] encodes with `prometheus-client` and rewrites only the
//! comment lines ([`to_text_format`]): sample lines are passed through untouched.
//!
//! One deliberate difference: Kubernetes types `authentication_attempts` as a
//! counter although its name lacks `_total`, which `promtool check metrics`
//! reports as a problem. We keep the Kubernetes sample name (dashboards query it)
//! and type it `untyped`, which promtool accepts and PromQL treats the same.

use std::sync::{Mutex, PoisonError};

use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::Registry;

use crate::wellknown::{
    APISERVER_REQUEST_DURATION_SECONDS, APISERVER_REQUEST_TOTAL, AUTHENTICATION_ATTEMPTS,
    AUTHENTICATION_DURATION_SECONDS, AUTHENTICATION_TOKEN_CACHE_REQUEST_TOTAL,
    SERVICEACCOUNT_INVALID_LEGACY_AUTO_TOKEN_USES_TOTAL,
    SERVICEACCOUNT_LEGACY_AUTO_TOKEN_USES_TOTAL, SERVICEACCOUNT_LEGACY_MANUAL_TOKEN_USES_TOTAL,
    SERVICEACCOUNT_LEGACY_TOKENS_TOTAL, SERVICEACCOUNT_STALE_TOKENS_TOTAL,
    SERVICEACCOUNT_VALID_TOKENS_TOTAL, TOKENWARDEN_SERVICEACCOUNT_LEGACY_TOKENS_TOTAL,
    TOKENWARDEN_SERVICEACCOUNT_STALE_TOKENS_TOTAL,
};

/// The `Content-Type` of [`Metrics::render`]'s body: Prometheus text format 0.0.4,
/// what kube-apiserver's `/metrics` answers.
pub(crate) const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bound on (namespace, serviceaccount) series in each per-ServiceAccount
/// family. 10 000 series of one counter are about 1 MB of exposition.
pub(crate) const MAX_SERVICE_ACCOUNT_SERIES: usize = 10_000;
/// The `serviceaccount` label value that collects uses beyond the bound.
pub(crate) const OVERFLOW_SERVICE_ACCOUNT: &str = "_other";
/// Upper bound on label sets (without `code`) of the request families. Their
/// group/version/resource/subresource come from request paths, so a client
/// probing made-up paths must not grow memory without end; requests beyond the
/// bound are counted with `resource="_other"` and empty group, version and
/// subresource (verb, scope and dry_run are small fixed sets and are kept).
pub(crate) const MAX_REQUEST_SERIES: usize = 2_000;
/// The `resource` label value of requests beyond [`MAX_REQUEST_SERIES`].
pub(crate) const OVERFLOW_RESOURCE: &str = "_other";

/// The `component` label of the request families; kube-apiserver's own value.
const COMPONENT_APISERVER: &str = "apiserver";

// HELP texts, with the stability prefix that component-base prepends.
const HELP_LEGACY_TOKENS: &str = "[ALPHA] Cumulative legacy service account tokens used";
const HELP_STALE_TOKENS: &str = "[ALPHA] Cumulative stale projected service account tokens used";
const HELP_VALID_TOKENS: &str = "[ALPHA] Cumulative valid projected service account tokens used";
const HELP_LEGACY_AUTO_USES: &str = "[ALPHA] Cumulative auto-generated legacy tokens used";
const HELP_LEGACY_MANUAL_USES: &str = "[ALPHA] Cumulative manually created legacy tokens used";
const HELP_INVALID_LEGACY_AUTO_USES: &str =
    "[ALPHA] Cumulative invalid auto-generated legacy tokens used";
const HELP_TW_STALE: &str = "[ALPHA] Cumulative stale projected service account tokens used, by the namespace and name of the token's service account";
const HELP_TW_LEGACY: &str = "[ALPHA] Cumulative legacy service account tokens used, by the namespace and name of the token's service account";
const HELP_REQUEST_TOTAL: &str = "[STABLE] Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code.";
const HELP_REQUEST_DURATION: &str = "[STABLE] Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component.";
const HELP_AUTH_ATTEMPTS: &str = "[ALPHA] Counter of authenticated attempts.";
const HELP_AUTH_DURATION: &str = "[ALPHA] Authentication duration in seconds broken out by result.";
const HELP_TOKEN_CACHE_REQUESTS: &str = "[ALPHA] ";

/// `apiserver_request_duration_seconds` buckets (kube-apiserver `metrics.go`).
const REQUEST_DURATION_BUCKETS: [f64; 23] = [
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];

/// The result label of the authentication families (`success`, `failure`, `error`
/// in kube-apiserver): `Failure` is "no authenticator accepted the credential",
/// `Error` is "an authenticator failed or the audiences did not match".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum AuthResult {
    Success,
    Failure,
    Error,
}

impl AuthResult {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            AuthResult::Success => "success",
            AuthResult::Failure => "failure",
            AuthResult::Error => "error",
        }
    }
}

/// What a request handler knows about a request, in kube-apiserver's label terms
/// (`endpoints/metrics.MonitorRequest`): `verb` is the upper-case reported verb
/// (`GET`, `LIST`, `WATCH`, `POST`, `PUT`, `PATCH`, `DELETE`, `APPLY`...), `scope` is
/// `resource`, `namespace`, `cluster` or empty, and `dry_run` is whether the
/// request carried `dryRun=All` (the label reads `All` or is empty). For a
/// non-resource request, kube-apiserver leaves `resource` empty and puts the path
/// in `subresource`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub(crate) struct RequestLabels {
    pub(crate) verb: String,
    pub(crate) group: String,
    pub(crate) version: String,
    pub(crate) resource: String,
    pub(crate) subresource: String,
    pub(crate) scope: String,
    pub(crate) dry_run: bool,
}

// Label sets. Fields are in alphabetical order because client_golang sorts label
// names on output, so our lines read like Kubernetes' (`code`, `component`, ...).

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestKey {
    component: &'static str,
    dry_run: &'static str,
    group: String,
    resource: String,
    scope: String,
    subresource: String,
    verb: String,
    version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RequestCodeKey {
    code: u16,
    #[prometheus(flatten)]
    request: RequestKey,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResultKey {
    result: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct StatusKey {
    status: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ServiceAccountKey {
    namespace: String,
    serviceaccount: String,
}

/// A counter whose exposed type is `untyped`: for `authentication_attempts`, a
/// Kubernetes counter whose name has no `_total` (see the module docs). It is
/// encoded like a gauge, which writes the bare family name, no suffix.
#[derive(Debug, Clone, Default)]
struct UntypedCounter(Counter);

impl TypedMetric for UntypedCounter {
    const TYPE: MetricType = MetricType::Unknown;
}

impl EncodeMetric for UntypedCounter {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        encoder.encode_gauge(&self.0.get())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Unknown
    }
}

type HistogramFamily<K> = Family<K, Histogram, fn() -> Histogram>;

fn request_duration_histogram() -> Histogram {
    Histogram::new(REQUEST_DURATION_BUCKETS)
}

fn authentication_duration_histogram() -> Histogram {
    // metrics.ExponentialBuckets(0.001, 2, 15): 1 ms to about 16 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// A budget of new series for a family. Only creating a series takes the lock,
/// which makes "check the budget, then create" atomic; existing series are
/// updated without it.
#[derive(Debug)]
struct SeriesLimit {
    created: Mutex<usize>,
    limit: usize,
}

impl SeriesLimit {
    fn new(limit: usize) -> Self {
        SeriesLimit {
            created: Mutex::new(0),
            limit,
        }
    }

    /// Runs `create` unless the budget is spent. `exists` is re-checked under the
    /// lock, as another thread may have created the series meanwhile. Returns
    /// whether the series exists afterwards.
    fn admit(&self, exists: impl Fn() -> bool, create: impl FnOnce()) -> bool {
        // A poisoned lock only means another thread panicked while holding it;
        // the count it guards is still a valid number.
        let mut created = self.created.lock().unwrap_or_else(PoisonError::into_inner);
        if exists() {
            return true;
        }
        if *created >= self.limit {
            return false;
        }
        *created += 1;
        create();
        true
    }
}

/// A per-ServiceAccount counter family with a bounded number of series.
#[derive(Debug)]
struct PerServiceAccount {
    family: Family<ServiceAccountKey, Counter>,
    series: SeriesLimit,
}

impl PerServiceAccount {
    fn new(limit: usize) -> Self {
        PerServiceAccount {
            family: Family::default(),
            series: SeriesLimit::new(limit),
        }
    }

    fn inc(&self, namespace: &str, service_account: &str) {
        let key = ServiceAccountKey {
            namespace: namespace.to_owned(),
            serviceaccount: service_account.to_owned(),
        };
        if let Some(counter) = self.family.get(&key) {
            counter.inc();
            return;
        }
        let admitted = self.series.admit(
            || self.family.get(&key).is_some(),
            // Creates the series; the guard it returns is released at once.
            || drop(self.family.get_or_create(&key)),
        );
        let key = if admitted {
            key
        } else {
            ServiceAccountKey {
                namespace: String::new(),
                serviceaccount: OVERFLOW_SERVICE_ACCOUNT.to_owned(),
            }
        };
        self.family.get_or_create(&key).inc();
    }
}

/// Every metric family of the server. Create one with [`Metrics::new`] at start-up
/// and share it (`Arc<Metrics>`); all update methods take `&self`. A scrape holds
/// each family's read lock only while encoding it; updates of existing series
/// are readers too and proceed alongside it.
#[derive(Debug)]
pub(crate) struct Metrics {
    registry: Registry,
    legacy_tokens: Counter,
    stale_tokens: Counter,
    valid_tokens: Counter,
    legacy_auto_uses: Counter,
    legacy_manual_uses: Counter,
    invalid_legacy_auto_uses: Counter,
    stale_by_sa: PerServiceAccount,
    legacy_by_sa: PerServiceAccount,
    requests: Family<RequestCodeKey, Counter>,
    request_duration: HistogramFamily<RequestKey>,
    /// Bounds the request families: their labels come from request paths.
    request_series: SeriesLimit,
    auth_attempts: Family<ResultKey, UntypedCounter>,
    auth_duration: HistogramFamily<ResultKey>,
    token_cache_requests: Family<StatusKey, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub(crate) fn new() -> Metrics {
        Metrics::with_limits(MAX_SERVICE_ACCOUNT_SERIES, MAX_REQUEST_SERIES)
    }

    /// [`Metrics::new`] with other bounds, so tests can reach them.
    fn with_limits(service_account_series: usize, request_series: usize) -> Metrics {
        let metrics = Metrics {
            registry: Registry::default(),
            legacy_tokens: Counter::default(),
            stale_tokens: Counter::default(),
            valid_tokens: Counter::default(),
            legacy_auto_uses: Counter::default(),
            legacy_manual_uses: Counter::default(),
            invalid_legacy_auto_uses: Counter::default(),
            stale_by_sa: PerServiceAccount::new(service_account_series),
            legacy_by_sa: PerServiceAccount::new(service_account_series),
            requests: Family::default(),
            request_duration: Family::new_with_constructor(request_duration_histogram),
            request_series: SeriesLimit::new(request_series),
            auth_attempts: Family::default(),
            auth_duration: Family::new_with_constructor(authentication_duration_histogram),
            token_cache_requests: Family::default(),
        };
        metrics.registered()
    }

    /// Registers every family, in name order: client_golang sorts families by
    /// name, so the exposition reads in the order Kubernetes prints it.
    fn registered(mut self) -> Metrics {
        let r = &mut self.registry;
        r.register(
            family_name(APISERVER_REQUEST_DURATION_SECONDS),
            HELP_REQUEST_DURATION,
            self.request_duration.clone(),
        );
        r.register(
            family_name(APISERVER_REQUEST_TOTAL),
            HELP_REQUEST_TOTAL,
            self.requests.clone(),
        );
        r.register(
            family_name(AUTHENTICATION_ATTEMPTS),
            HELP_AUTH_ATTEMPTS,
            self.auth_attempts.clone(),
        );
        r.register(
            family_name(AUTHENTICATION_DURATION_SECONDS),
            HELP_AUTH_DURATION,
            self.auth_duration.clone(),
        );
        r.register(
            family_name(AUTHENTICATION_TOKEN_CACHE_REQUEST_TOTAL),
            HELP_TOKEN_CACHE_REQUESTS,
            self.token_cache_requests.clone(),
        );
        r.register(
            family_name(SERVICEACCOUNT_INVALID_LEGACY_AUTO_TOKEN_USES_TOTAL),
            HELP_INVALID_LEGACY_AUTO_USES,
            self.invalid_legacy_auto_uses.clone(),
        );
        r.register(
            family_name(SERVICEACCOUNT_LEGACY_AUTO_TOKEN_USES_TOTAL),
            HELP_LEGACY_AUTO_USES,
            self.legacy_auto_uses.clone(),
        );
        r.register(
            family_name(SERVICEACCOUNT_LEGACY_MANUAL_TOKEN_USES_TOTAL),
            HELP_LEGACY_MANUAL_USES,
            self.legacy_manual_uses.clone(),
        );
        r.register(
            family_name(SERVICEACCOUNT_LEGACY_TOKENS_TOTAL),
            HELP_LEGACY_TOKENS,
            self.legacy_tokens.clone(),
        );
        r.register(
            family_name(SERVICEACCOUNT_STALE_TOKENS_TOTAL),
            HELP_STALE_TOKENS,
            self.stale_tokens.clone(),
        );
        r.register(
            family_name(SERVICEACCOUNT_VALID_TOKENS_TOTAL),
            HELP_VALID_TOKENS,
            self.valid_tokens.clone(),
        );
        r.register(
            family_name(TOKENWARDEN_SERVICEACCOUNT_LEGACY_TOKENS_TOTAL),
            HELP_TW_LEGACY,
            self.legacy_by_sa.family.clone(),
        );
        r.register(
            family_name(TOKENWARDEN_SERVICEACCOUNT_STALE_TOKENS_TOTAL),
            HELP_TW_STALE,
            self.stale_by_sa.family.clone(),
        );
        self
    }

    /// A bound token was used after its `warnafter` (claims.go): the Kubernetes
    /// counter and the per-ServiceAccount one.
    pub(crate) fn stale_token(&self, namespace: &str, service_account: &str) {
        self.stale_tokens.inc();
        self.stale_by_sa.inc(namespace, service_account);
    }

    /// A bound token carrying `warnafter` was used before it.
    pub(crate) fn valid_token(&self) {
        self.valid_tokens.inc();
    }

    /// A legacy (no `aud`) ServiceAccount token passed signature and issuer checks.
    pub(crate) fn legacy_token(&self, namespace: &str, service_account: &str) {
        self.legacy_tokens.inc();
        self.legacy_by_sa.inc(namespace, service_account);
    }

    /// A legacy token whose Secret is listed in the ServiceAccount's `secrets`.
    pub(crate) fn legacy_auto_use(&self) {
        self.legacy_auto_uses.inc();
    }

    /// A legacy token whose Secret is not listed in the ServiceAccount's `secrets`.
    pub(crate) fn legacy_manual_use(&self) {
        self.legacy_manual_uses.inc();
    }

    /// A legacy token whose Secret carries `kubernetes.io/legacy-token-invalid-since`.
    pub(crate) fn legacy_invalid_auto_use(&self) {
        self.invalid_legacy_auto_uses.inc();
    }

    /// One run of the request authenticator chain and how long it took.
    pub(crate) fn auth_attempt(&self, result: AuthResult, seconds: f64) {
        let key = ResultKey {
            result: result.as_str(),
        };
        self.auth_attempts.get_or_create(&key).0.inc();
        self.auth_duration.get_or_create(&key).observe(seconds);
    }

    /// A lookup in the authenticator's token cache.
    pub(crate) fn token_cache(&self, hit: bool) {
        let status = if hit { "hit" } else { "miss" };
        self.token_cache_requests
            .get_or_create(&StatusKey { status })
            .inc();
    }

    /// A finished API request: its labels, HTTP status code and duration.
    pub(crate) fn request(&self, labels: &RequestLabels, code: u16, seconds: f64) {
        let mut key = RequestKey {
            component: COMPONENT_APISERVER,
            // endpoints/metrics cleanDryRun: the dryRun values joined; only `All` is valid.
            dry_run: if labels.dry_run { "All" } else { "" },
            group: labels.group.clone(),
            resource: labels.resource.clone(),
            scope: labels.scope.clone(),
            subresource: labels.subresource.clone(),
            verb: labels.verb.clone(),
            version: labels.version.clone(),
        };
        // A statement of its own: the family's read guard must be gone before
        // `admit` may take its write lock.
        let exists = self.request_duration.get(&key).is_some();
        if !exists
            && !self.request_series.admit(
                || self.request_duration.get(&key).is_some(),
                || drop(self.request_duration.get_or_create(&key)),
            )
        {
            key.group.clear();
            key.version.clear();
            key.subresource.clear();
            key.resource = OVERFLOW_RESOURCE.to_owned();
        }
        self.request_duration.get_or_create(&key).observe(seconds);
        self.requests
            .get_or_create(&RequestCodeKey { code, request: key })
            .inc();
    }

    /// The `/metrics` response: the body in Prometheus text format 0.0.4 and its
    /// content type ([`METRICS_CONTENT_TYPE`]).
    pub(crate) fn render(&self) -> (String, &'static str) {
        let mut open_metrics = String::with_capacity(16 * 1024);
        if let Err(err) =
            prometheus_client::encoding::text::encode_registry(&mut open_metrics, &self.registry)
        {
            // Writing into a String cannot fail; an encoder error would be a bug in
            // a metric type. Serve every complete line rather than nothing.
            tracing::error!(error = %err, "encoding metrics failed");
            let complete = open_metrics.rfind('\n').map_or(0, |i| i + 1);
            open_metrics.truncate(complete);
        }
        (to_text_format(&open_metrics), METRICS_CONTENT_TYPE)
    }
}

/// The `prometheus-client` family name of an exposed metric name: counters are
/// registered without `_total`, which the encoder appends to every sample.
fn family_name(exposed: &'static str) -> &'static str {
    exposed.strip_suffix("_total").unwrap_or(exposed)
}

/// Rewrites `prometheus-client`'s OpenMetrics text into Prometheus text 0.0.4.
///
/// The encoder writes every family as `# HELP`, `# TYPE`, optional `# UNIT`, then
/// its samples, one per line (label values have `\n` escaped, and HELP texts are
/// our constants, so no record spans lines). Only comment lines change:
/// 1. HELP loses the period the registry appends to every help text;
/// 2. a counter's HELP and TYPE name gains `_total`, the name its samples carry;
/// 3. type `unknown` becomes `untyped`;
/// 4. `# UNIT` and `# EOF` lines are dropped (0.0.4 has neither).
fn to_text_format(open_metrics: &str) -> String {
    let mut out = String::with_capacity(open_metrics.len());
    let mut lines = open_metrics.split_terminator('\n').peekable();
    while let Some(line) = lines.next() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            let (name, help) = rest.split_once(' ').unwrap_or((rest, ""));
            let help = help.strip_suffix('.').unwrap_or(help);
            // The TYPE line follows its HELP line; it decides the exposed name.
            let kind = lines
                .peek()
                .and_then(|next| next.strip_prefix("# TYPE "))
                .and_then(|t| t.split_once(' '))
                .filter(|(type_name, _)| *type_name == name)
                .map(|(_, kind)| kind);
            let suffix = if kind == Some("counter") {
                "_total"
            } else {
                ""
            };
            push_line(&mut out, &["# HELP ", name, suffix, " ", help]);
            if let Some(kind) = kind {
                lines.next();
                let kind = if kind == "unknown" { "untyped" } else { kind };
                push_line(&mut out, &["# TYPE ", name, suffix, " ", kind]);
            }
        } else if line.starts_with("# UNIT ") || line == "# EOF" {
            continue;
        } else {
            push_line(&mut out, &[line]);
        }
    }
    out
}

fn push_line(out: &mut String, parts: &[&str]) {
    for part in parts {
        out.push_str(part);
    }
    out.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::process::{Command, Stdio};
    use std::sync::Arc;

    fn lines_matching<'a>(body: &'a str, needle: &str) -> Vec<&'a str> {
        body.lines().filter(|l| l.contains(needle)).collect()
    }

    fn sample_labels() -> RequestLabels {
        RequestLabels {
            verb: "POST".into(),
            group: String::new(),
            version: "v1".into(),
            resource: "serviceaccounts".into(),
            subresource: "token".into(),
            scope: "resource".into(),
            dry_run: false,
        }
    }

    /// A registry with every family populated, for format checks.
    fn populated() -> Metrics {
        let m = Metrics::new();
        m.stale_token("default", "example-sa");
        m.valid_token();
        m.legacy_token("kube-system", "old-client");
        m.legacy_auto_use();
        m.legacy_manual_use();
        m.legacy_invalid_auto_use();
        m.auth_attempt(AuthResult::Success, 0.0012);
        m.auth_attempt(AuthResult::Failure, 0.0003);
        m.auth_attempt(AuthResult::Error, 20.0);
        m.token_cache(true);
        m.token_cache(false);
        m.request(&sample_labels(), 201, 0.0052);
        m.request(&sample_labels(), 404, 0.001);
        m
    }

    /// `kubectl get --raw /metrics | grep stale` on a fresh server prints exactly
    /// what kube-apiserver prints (seed 001: the diagnosis reads this counter).
    #[test]
    fn grep_stale_on_a_fresh_server_matches_kubernetes() {
        let (body, content_type) = Metrics::new().render();
        assert_eq!(content_type, "text/plain; version=0.0.4; charset=utf-8");
        assert_eq!(
            lines_matching(&body, "stale"),
            [
                "# HELP serviceaccount_stale_tokens_total [ALPHA] Cumulative stale projected service account tokens used",
                "# TYPE serviceaccount_stale_tokens_total counter",
                "serviceaccount_stale_tokens_total 0",
            ]
        );
    }

    #[test]
    fn fresh_exposition_has_the_six_serviceaccount_counters_at_zero() {
        let (body, _) = Metrics::new().render();
        let samples: Vec<&str> = body
            .lines()
            .filter(|l| l.starts_with("serviceaccount_"))
            .collect();
        assert_eq!(
            samples,
            [
                "serviceaccount_invalid_legacy_auto_token_uses_total 0",
                "serviceaccount_legacy_auto_token_uses_total 0",
                "serviceaccount_legacy_manual_token_uses_total 0",
                "serviceaccount_legacy_tokens_total 0",
                "serviceaccount_stale_tokens_total 0",
                "serviceaccount_valid_tokens_total 0",
            ]
        );
        assert!(
            body.contains(
                "# HELP serviceaccount_legacy_manual_token_uses_total [ALPHA] Cumulative manually created legacy tokens used\n\
                 # TYPE serviceaccount_legacy_manual_token_uses_total counter\n"
            ),
            "{body}"
        );
        // Labelled families without series print nothing, as in Kubernetes.
        assert!(!body.contains("apiserver_request_total"), "{body}");
        assert!(!body.contains("tokenwarden_"), "{body}");
    }

    #[test]
    fn no_openmetrics_artifacts_remain() {
        let (body, _) = populated().render();
        assert!(!body.contains("# EOF"), "{body}");
        assert!(!body.contains("# UNIT"), "{body}");
        for line in body.lines().filter(|l| l.starts_with("# HELP ")) {
            assert!(!line.ends_with(".."), "double period: {line}");
        }
        assert!(body.contains(
            "# HELP authentication_attempts [ALPHA] Counter of authenticated attempts.\n"
        ));
        assert!(body.contains("# HELP authentication_token_cache_request_total [ALPHA] \n"));
        // Every HELP/TYPE name is the name its samples carry.
        for line in body.lines().filter(|l| l.starts_with("# TYPE ")) {
            let mut parts = line.split(' ').skip(2);
            let (name, kind) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let has_sample = body.lines().any(|l| {
                !l.starts_with('#')
                    && (l.starts_with(&format!("{name} "))
                        || l.starts_with(&format!("{name}{{"))
                        || (kind == "histogram" && l.starts_with(&format!("{name}_bucket{{"))))
            });
            assert!(has_sample, "no sample named after {line}");
        }
    }

    #[test]
    fn each_token_method_moves_only_its_counter() {
        type Method = fn(&Metrics);
        let cases: [(Method, &str); 6] = [
            (
                |m| m.stale_token("ns", "sa"),
                "serviceaccount_stale_tokens_total",
            ),
            (|m| m.valid_token(), "serviceaccount_valid_tokens_total"),
            (
                |m| m.legacy_token("ns", "sa"),
                "serviceaccount_legacy_tokens_total",
            ),
            (
                |m| m.legacy_auto_use(),
                "serviceaccount_legacy_auto_token_uses_total",
            ),
            (
                |m| m.legacy_manual_use(),
                "serviceaccount_legacy_manual_token_uses_total",
            ),
            (
                |m| m.legacy_invalid_auto_use(),
                "serviceaccount_invalid_legacy_auto_token_uses_total",
            ),
        ];
        for (method, name) in cases {
            let m = Metrics::new();
            method(&m);
            method(&m);
            let (body, _) = m.render();
            for line in body.lines().filter(|l| l.starts_with("serviceaccount_")) {
                let expected = if line.starts_with(&format!("{name} ")) {
                    format!("{name} 2")
                } else {
                    format!("{} 0", line.split(' ').next().unwrap_or(""))
                };
                assert_eq!(line, expected, "after calling the method for {name}");
            }
        }
    }

    #[test]
    fn stale_and_legacy_uses_are_also_counted_per_service_account() {
        let m = Metrics::new();
        m.stale_token("default", "example-sa");
        m.stale_token("default", "example-sa");
        m.stale_token("team-a", "builder");
        m.legacy_token("kube-system", "old-client");
        let (body, _) = m.render();
        assert!(
            body.contains("serviceaccount_stale_tokens_total 3\n"),
            "{body}"
        );
        let mut stale = lines_matching(&body, "tokenwarden_serviceaccount_stale_tokens_total{");
        stale.sort_unstable();
        assert_eq!(
            stale,
            [
                r#"tokenwarden_serviceaccount_stale_tokens_total{namespace="default",serviceaccount="example-sa"} 2"#,
                r#"tokenwarden_serviceaccount_stale_tokens_total{namespace="team-a",serviceaccount="builder"} 1"#,
            ]
        );
        assert_eq!(
            lines_matching(&body, "tokenwarden_serviceaccount_legacy_tokens_total"),
            [
                "# HELP tokenwarden_serviceaccount_legacy_tokens_total [ALPHA] Cumulative legacy service account tokens used, by the namespace and name of the token's service account",
                "# TYPE tokenwarden_serviceaccount_legacy_tokens_total counter",
                r#"tokenwarden_serviceaccount_legacy_tokens_total{namespace="kube-system",serviceaccount="old-client"} 1"#,
            ]
        );
    }

    #[test]
    fn per_service_account_series_are_bounded() {
        let m = Metrics::with_limits(2, MAX_REQUEST_SERIES);
        m.stale_token("ns", "a");
        m.stale_token("ns", "b");
        m.stale_token("ns", "c");
        m.stale_token("ns", "d");
        // Existing series keep counting after the bound is reached.
        m.stale_token("ns", "a");
        let (body, _) = m.render();
        let mut series = lines_matching(&body, "tokenwarden_serviceaccount_stale_tokens_total{");
        series.sort_unstable();
        assert_eq!(
            series,
            [
                r#"tokenwarden_serviceaccount_stale_tokens_total{namespace="",serviceaccount="_other"} 2"#,
                r#"tokenwarden_serviceaccount_stale_tokens_total{namespace="ns",serviceaccount="a"} 2"#,
                r#"tokenwarden_serviceaccount_stale_tokens_total{namespace="ns",serviceaccount="b"} 1"#,
            ]
        );
        // The Kubernetes counter counts every use.
        assert!(
            body.contains("serviceaccount_stale_tokens_total 5\n"),
            "{body}"
        );
    }

    #[test]
    fn concurrent_updates_are_all_counted_and_respect_the_bound() {
        let m = Arc::new(Metrics::with_limits(50, MAX_REQUEST_SERIES));
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let m = Arc::clone(&m);
                std::thread::spawn(move || {
                    for i in 0..500 {
                        m.stale_token("ns", &format!("sa-{}", (t * 500 + i) % 100));
                        m.token_cache(i % 2 == 0);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let (body, _) = m.render();
        assert!(
            body.contains("serviceaccount_stale_tokens_total 4000\n"),
            "{body}"
        );
        let series = lines_matching(&body, "tokenwarden_serviceaccount_stale_tokens_total{");
        // 50 named series plus the overflow series, and no count lost.
        assert_eq!(series.len(), 51);
        let sum: u64 = series
            .iter()
            .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
            .sum();
        assert_eq!(sum, 4000);
        assert!(body.contains("authentication_token_cache_request_total{status=\"hit\"} 2000\n"));
        assert!(body.contains("authentication_token_cache_request_total{status=\"miss\"} 2000\n"));
    }

    #[test]
    fn request_families_use_kubernetes_labels_and_buckets() {
        let m = Metrics::new();
        m.request(&sample_labels(), 201, 0.0052);
        m.request(&sample_labels(), 201, 0.07);
        m.request(&sample_labels(), 422, 0.001);
        let (body, _) = m.render();
        assert!(body.contains(
            "apiserver_request_total{code=\"201\",component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"serviceaccounts\",scope=\"resource\",subresource=\"token\",verb=\"POST\",version=\"v1\"} 2\n"
        ), "{body}");
        assert!(
            body.contains("apiserver_request_total{code=\"422\","),
            "{body}"
        );
        assert!(body.contains("# TYPE apiserver_request_total counter\n"));
        assert!(body.contains("# TYPE apiserver_request_duration_seconds histogram\n"));
        let buckets: Vec<&str> = body
            .lines()
            .filter(|l| l.starts_with("apiserver_request_duration_seconds_bucket{"))
            .collect();
        // 23 bounds plus +Inf, for the one label set (the code is not a label here).
        assert_eq!(buckets.len(), 24, "{body}");
        let le = |l: &str| {
            l.split("le=\"")
                .nth(1)
                .and_then(|r| r.split('"').next())
                .map(str::to_owned)
        };
        let bounds: Vec<String> = buckets.iter().filter_map(|l| le(l)).collect();
        let expected: Vec<String> = REQUEST_DURATION_BUCKETS
            .iter()
            .map(|b| b.to_string())
            .chain(["+Inf".to_owned()])
            .collect();
        let parsed: Vec<String> = bounds
            .iter()
            .map(|b| {
                if b == "+Inf" {
                    b.clone()
                } else {
                    b.parse::<f64>().unwrap().to_string()
                }
            })
            .collect();
        assert_eq!(parsed, expected);
        // 0.0052 and 0.001 fall in le=0.025 and le=0.005; 0.07 in le=0.1.
        assert!(
            buckets
                .iter()
                .any(|l| l.contains("le=\"0.005\"") && l.ends_with(" 1"))
        );
        assert!(
            buckets
                .iter()
                .any(|l| l.contains("le=\"0.025\"") && l.ends_with(" 2"))
        );
        assert!(
            buckets
                .iter()
                .any(|l| l.contains("le=\"0.1\"") && l.ends_with(" 3"))
        );
        assert!(body.contains(
            "apiserver_request_duration_seconds_count{component=\"apiserver\",dry_run=\"\",group=\"\",resource=\"serviceaccounts\",scope=\"resource\",subresource=\"token\",verb=\"POST\",version=\"v1\"} 3\n"
        ), "{body}");
    }

    #[test]
    fn dry_run_requests_are_labelled_all() {
        let m = Metrics::new();
        let labels = RequestLabels {
            dry_run: true,
            ..sample_labels()
        };
        m.request(&labels, 201, 0.01);
        let (body, _) = m.render();
        assert!(
            body.contains(
                "apiserver_request_total{code=\"201\",component=\"apiserver\",dry_run=\"All\","
            ),
            "{body}"
        );
    }

    #[test]
    fn request_series_from_made_up_paths_are_bounded() {
        let m = Metrics::with_limits(MAX_SERVICE_ACCOUNT_SERIES, 2);
        for resource in ["pods", "secrets", "probe-1", "probe-2"] {
            let labels = RequestLabels {
                verb: "GET".into(),
                version: "v1".into(),
                resource: resource.into(),
                subresource: "x".into(),
                scope: "namespace".into(),
                ..RequestLabels::default()
            };
            m.request(&labels, 404, 0.001);
        }
        // An admitted series keeps its own labels after the bound is reached.
        m.request(
            &RequestLabels {
                verb: "GET".into(),
                version: "v1".into(),
                resource: "pods".into(),
                subresource: "x".into(),
                scope: "namespace".into(),
                ..RequestLabels::default()
            },
            200,
            0.001,
        );
        let (body, _) = m.render();
        let mut totals = lines_matching(&body, "apiserver_request_total{");
        totals.sort_unstable();
        assert_eq!(
            totals,
            [
                r#"apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="pods",scope="namespace",subresource="x",verb="GET",version="v1"} 1"#,
                r#"apiserver_request_total{code="404",component="apiserver",dry_run="",group="",resource="_other",scope="namespace",subresource="",verb="GET",version=""} 2"#,
                r#"apiserver_request_total{code="404",component="apiserver",dry_run="",group="",resource="pods",scope="namespace",subresource="x",verb="GET",version="v1"} 1"#,
                r#"apiserver_request_total{code="404",component="apiserver",dry_run="",group="",resource="secrets",scope="namespace",subresource="x",verb="GET",version="v1"} 1"#,
            ]
        );
        let histograms = lines_matching(&body, "apiserver_request_duration_seconds_count{");
        assert_eq!(histograms.len(), 3, "{body}");
    }

    #[test]
    fn authentication_families() {
        let m = Metrics::new();
        m.auth_attempt(AuthResult::Success, 0.0015);
        m.auth_attempt(AuthResult::Success, 0.0015);
        m.auth_attempt(AuthResult::Error, 0.5);
        let (body, _) = m.render();
        assert!(
            body.contains("# TYPE authentication_attempts untyped\n"),
            "{body}"
        );
        assert!(
            body.contains("authentication_attempts{result=\"success\"} 2\n"),
            "{body}"
        );
        assert!(
            body.contains("authentication_attempts{result=\"error\"} 1\n"),
            "{body}"
        );
        assert!(!body.contains("result=\"failure\""), "{body}");
        let buckets = body
            .lines()
            .filter(|l| {
                l.starts_with("authentication_duration_seconds_bucket{") && l.contains("success")
            })
            .count();
        assert_eq!(buckets, 16, "15 exponential bounds plus +Inf: {body}");
        assert!(body.contains("le=\"16.384\""), "{body}");
        assert!(body.contains("authentication_duration_seconds_count{result=\"success\"} 2\n"));
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        let labels = RequestLabels {
            verb: "GET".into(),
            subresource: "/weird\"path\\with\nnewline".into(),
            ..RequestLabels::default()
        };
        m.request(&labels, 404, 0.01);
        let (body, _) = m.render();
        assert!(
            body.contains(r#"subresource="/weird\"path\\with\nnewline""#),
            "{body}"
        );
        assert!(body.lines().all(|l| !l.starts_with("newline")), "{body}");
        promtool_check(&body);
    }

    #[test]
    fn text_format_rewrite_handles_each_comment_kind() {
        let om = "# HELP a_seconds Help a.\n# TYPE a_seconds histogram\n# UNIT a_seconds seconds\na_seconds_sum 0.0\n\
                  # HELP b Help b.\n# TYPE b counter\nb_total 3\n\
                  # HELP c Help c.\n# TYPE c unknown\nc{x=\"# HELP y\"} 1\n# EOF\n";
        assert_eq!(
            to_text_format(om),
            "# HELP a_seconds Help a\n# TYPE a_seconds histogram\na_seconds_sum 0.0\n\
             # HELP b_total Help b\n# TYPE b_total counter\nb_total 3\n\
             # HELP c Help c\n# TYPE c untyped\nc{x=\"# HELP y\"} 1\n"
        );
    }

    /// The CI machine installs promtool (`apt-get install -y prometheus`); a
    /// missing promtool fails this test rather than skipping the check.
    fn promtool_check(body: &str) {
        let mut child = match Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
        {
            Ok(child) => child,
            Err(err) => panic!(
                "promtool not runnable ({err}); install it with: apt-get update && apt-get install -y prometheus"
            ),
        };
        child
            .stdin
            .take()
            .unwrap()
            .write_all(body.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && report.trim().is_empty(),
            "promtool check metrics: {report}\n--- exposition ---\n{body}"
        );
    }

    #[test]
    fn promtool_accepts_the_exposition() {
        promtool_check(&Metrics::new().render().0);
        promtool_check(&populated().render().0);
    }

    /// Guards the reason for the rewrite: promtool rejects or flags the raw
    /// OpenMetrics text of the same registry, so serving it unchanged would not do.
    #[test]
    fn promtool_flags_the_raw_openmetrics_text() {
        let m = populated();
        let mut raw = String::new();
        prometheus_client::encoding::text::encode(&mut raw, &m.registry).unwrap();
        let mut child = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("promtool (apt-get install -y prometheus)");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(raw.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let report = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            !out.status.success() || !report.trim().is_empty(),
            "{report}"
        );
    }
}
