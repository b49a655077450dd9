//! Reads the service-account token families out of a `/metrics` body (Prometheus text format
//! 0.0.4, as kube-apiserver and tokenwarden serve it).
//!
//! Owns: a small sample parser (name, labels, value; comments and timestamps ignored) and
//! [`TokenMetrics`], the counters `diagnose` reports.
//! Must not: do I/O. A line it cannot parse is skipped, never an error: a cluster may add
//! families we do not know.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::wellknown::{
    SERVICEACCOUNT_INVALID_LEGACY_AUTO_TOKEN_USES_TOTAL,
    SERVICEACCOUNT_LEGACY_AUTO_TOKEN_USES_TOTAL, SERVICEACCOUNT_LEGACY_MANUAL_TOKEN_USES_TOTAL,
    SERVICEACCOUNT_LEGACY_TOKENS_TOTAL, SERVICEACCOUNT_STALE_TOKENS_TOTAL,
    SERVICEACCOUNT_VALID_TOKENS_TOTAL, TOKENWARDEN_SERVICEACCOUNT_LEGACY_TOKENS_TOTAL,
    TOKENWARDEN_SERVICEACCOUNT_STALE_TOKENS_TOTAL,
};

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sample {
    pub(crate) name: String,
    pub(crate) labels: BTreeMap<String, String>,
    pub(crate) value: f64,
}

/// Parses every sample line of a text exposition.
pub(crate) fn parse_samples(text: &str) -> Vec<Sample> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let name_end = line.find(|c: char| c == '{' || c.is_whitespace())?;
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if rest.starts_with('{') {
        let (parsed, after) = parse_labels(&rest[1..])?;
        labels = parsed;
        rest = after;
    }
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    Some(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parses `k="v",k2="v2"}` and returns the labels and the text after `}`.
fn parse_labels(mut s: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        s = s.trim_start_matches([' ', ',']);
        if let Some(after) = s.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_owned();
        s = s[eq + 1..].strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        labels.insert(key, value);
        s = &s[end + 1..];
    }
}

/// One ServiceAccount's count in a per-ServiceAccount family.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ServiceAccountCount {
    pub(crate) namespace: String,
    pub(crate) service_account: String,
    pub(crate) count: u64,
}

/// The token counters of one `/metrics` body. `None`: the family is absent (an older
/// apiserver, or not tokenwarden for the attributed families).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct TokenMetrics {
    pub(crate) stale_tokens: Option<u64>,
    pub(crate) valid_tokens: Option<u64>,
    pub(crate) legacy_tokens: Option<u64>,
    pub(crate) legacy_auto_token_uses: Option<u64>,
    pub(crate) legacy_manual_token_uses: Option<u64>,
    pub(crate) invalid_legacy_auto_token_uses: Option<u64>,
    /// stale / (stale + valid): the share of projected-token uses that were stale.
    pub(crate) stale_ratio: Option<f64>,
    /// From `tokenwarden_serviceaccount_stale_tokens_total`; `None` when not served.
    pub(crate) stale_by_service_account: Option<Vec<ServiceAccountCount>>,
    /// From `tokenwarden_serviceaccount_legacy_tokens_total`; `None` when not served.
    pub(crate) legacy_by_service_account: Option<Vec<ServiceAccountCount>>,
}

impl TokenMetrics {
    pub(crate) fn from_text(text: &str) -> TokenMetrics {
        let samples = parse_samples(text);
        let total = |name: &str| -> Option<u64> {
            let mut found = false;
            let mut sum = 0.0;
            for s in samples.iter().filter(|s| s.name == name) {
                found = true;
                sum += s.value;
            }
            found.then_some(sum as u64)
        };
        let by_sa = |name: &str| -> Option<Vec<ServiceAccountCount>> {
            let mut found = false;
            let mut out = Vec::new();
            for s in samples.iter().filter(|s| s.name == name) {
                found = true;
                if s.value <= 0.0 {
                    continue;
                }
                out.push(ServiceAccountCount {
                    namespace: s.labels.get("namespace").cloned().unwrap_or_default(),
                    service_account: s.labels.get("serviceaccount").cloned().unwrap_or_default(),
                    count: s.value as u64,
                });
            }
            out.sort_by(|a, b| {
                (&a.namespace, &a.service_account).cmp(&(&b.namespace, &b.service_account))
            });
            found.then_some(out)
        };
        let stale_tokens = total(SERVICEACCOUNT_STALE_TOKENS_TOTAL);
        let valid_tokens = total(SERVICEACCOUNT_VALID_TOKENS_TOTAL);
        let stale_ratio = match (stale_tokens, valid_tokens) {
            (Some(s), Some(v)) if s + v > 0 => Some(s as f64 / (s + v) as f64),
            _ => None,
        };
        TokenMetrics {
            stale_tokens,
            valid_tokens,
            legacy_tokens: total(SERVICEACCOUNT_LEGACY_TOKENS_TOTAL),
            legacy_auto_token_uses: total(SERVICEACCOUNT_LEGACY_AUTO_TOKEN_USES_TOTAL),
            legacy_manual_token_uses: total(SERVICEACCOUNT_LEGACY_MANUAL_TOKEN_USES_TOTAL),
            invalid_legacy_auto_token_uses: total(
                SERVICEACCOUNT_INVALID_LEGACY_AUTO_TOKEN_USES_TOTAL,
            ),
            stale_ratio,
            stale_by_service_account: by_sa(TOKENWARDEN_SERVICEACCOUNT_STALE_TOKENS_TOTAL),
            legacy_by_service_account: by_sa(TOKENWARDEN_SERVICEACCOUNT_LEGACY_TOKENS_TOTAL),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"# HELP serviceaccount_stale_tokens_total [ALPHA] Cumulative stale projected service account tokens used
# TYPE serviceaccount_stale_tokens_total counter
serviceaccount_stale_tokens_total 3
serviceaccount_valid_tokens_total 1
serviceaccount_legacy_tokens_total 2 1700000000000
tokenwarden_serviceaccount_stale_tokens_total{namespace="default",serviceaccount="old-py"} 2
tokenwarden_serviceaccount_stale_tokens_total{namespace="apps",serviceaccount="we\"ird"} 1
tokenwarden_serviceaccount_stale_tokens_total{namespace="apps",serviceaccount="zero"} 0
apiserver_request_duration_seconds_bucket{le="+Inf",verb="GET"} 7
not a sample line
"#;

    #[test]
    fn parses_samples_with_labels_escapes_and_timestamps() {
        let samples = parse_samples(BODY);
        assert_eq!(samples.len(), 7);
        assert_eq!(samples[2].value, 2.0);
        assert_eq!(samples[4].labels["serviceaccount"], "we\"ird");
        assert_eq!(samples[6].labels["le"], "+Inf");
    }

    #[test]
    fn token_metrics_from_text() {
        let m = TokenMetrics::from_text(BODY);
        assert_eq!(m.stale_tokens, Some(3));
        assert_eq!(m.valid_tokens, Some(1));
        assert_eq!(m.legacy_tokens, Some(2));
        assert_eq!(m.legacy_auto_token_uses, None);
        assert_eq!(m.stale_ratio, Some(0.75));
        let by = m.stale_by_service_account.unwrap_or_default();
        let names: Vec<_> = by
            .iter()
            .map(|c| format!("{}/{}={}", c.namespace, c.service_account, c.count))
            .collect();
        assert_eq!(names, ["apps/we\"ird=1", "default/old-py=2"]);
        assert_eq!(m.legacy_by_service_account, None);
    }

    #[test]
    fn empty_body_has_no_families() {
        assert_eq!(TokenMetrics::from_text(""), TokenMetrics::default());
    }
}
