//! The stale-token uses of the audit log over time, per ServiceAccount: the data behind the
//! chart of the HTML and markdown reports (`staleTimeline` in the JSON one).
//!
//! Owns: [`StaleTimeline`], the bucket size chosen from the log's span ([`build`]), and the cut
//! to the few series a chart can tell apart ([`StaleTimeline::chart_series`]).
//! Must not: render anything (that is `html` and `markdown`) or read the log (`audit`).

use serde::Serialize;

use super::audit::AuditSummary;

/// Bucket sizes in minutes, finest first: the first that covers the log's stale uses in at
/// most [`MAX_BUCKETS`] buckets is used (the last one whatever the span). A chart of more
/// bars than that is no longer read bar by bar, and a markdown table gets too long.
const BUCKET_MINUTES: [i64; 7] = [1, 5, 15, 60, 6 * 60, 24 * 60, 7 * 24 * 60];
const MAX_BUCKETS: i64 = 60;
/// ServiceAccounts a chart names (one colour or column each); beyond that, the ones with the
/// fewest stale uses are summed into one "others" series.
const CHART_SERIES: usize = 8;

/// Stale uses per ServiceAccount in equal buckets of time, aligned on the Unix epoch (UTC).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StaleTimeline {
    pub(crate) bucket_minutes: i64,
    /// The start of every bucket, oldest first, without gaps; empty when no stale use had a
    /// time.
    pub(crate) bucket_starts: Vec<jiff::Timestamp>,
    /// Most stale uses first; each has a count per bucket.
    pub(crate) series: Vec<StaleSeries>,
    /// Stale uses whose audit event had no readable timestamp (not in any bucket).
    pub(crate) untimed_stale_events: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StaleSeries {
    pub(crate) namespace: String,
    pub(crate) service_account: String,
    pub(crate) counts: Vec<u64>,
}

/// A series as a chart shows it: `namespace/name`, or the sum of the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChartSeries {
    pub(crate) label: String,
    pub(crate) counts: Vec<u64>,
}

/// The timeline of `audit`'s timed stale uses.
pub(crate) fn build(audit: &AuditSummary) -> StaleTimeline {
    let minutes = audit
        .accounts
        .values()
        .flat_map(|a| a.stale_by_minute.keys().copied());
    let span = minutes.fold(None, |acc: Option<(i64, i64)>, m| match acc {
        None => Some((m, m)),
        Some((lo, hi)) => Some((lo.min(m), hi.max(m))),
    });
    let mut timeline = StaleTimeline {
        bucket_minutes: BUCKET_MINUTES[0],
        bucket_starts: Vec::new(),
        series: Vec::new(),
        untimed_stale_events: audit.untimed_stale,
    };
    let Some((first, last)) = span else {
        return timeline;
    };
    let buckets = |step: i64| last.div_euclid(step) - first.div_euclid(step) + 1;
    let step = BUCKET_MINUTES
        .into_iter()
        .find(|step| buckets(*step) <= MAX_BUCKETS)
        .unwrap_or(BUCKET_MINUTES[BUCKET_MINUTES.len() - 1]);
    let start = first.div_euclid(step);
    let count = usize::try_from(buckets(step)).unwrap_or(0);
    timeline.bucket_minutes = step;
    timeline.bucket_starts = (start..start + buckets(step))
        .map(|b| {
            // Minutes came from valid timestamps; flooring can only step out of jiff's range
            // (years ±9999) at its very edge.
            jiff::Timestamp::from_second(b * step * 60).unwrap_or(jiff::Timestamp::MIN)
        })
        .collect();
    for ((ns, name), account) in &audit.accounts {
        if account.stale_by_minute.is_empty() {
            continue;
        }
        let mut counts = vec![0; count];
        for (minute, n) in &account.stale_by_minute {
            let i = usize::try_from(minute.div_euclid(step) - start).unwrap_or(0);
            if let Some(c) = counts.get_mut(i) {
                *c += n;
            }
        }
        timeline.series.push(StaleSeries {
            namespace: ns.clone(),
            service_account: name.clone(),
            counts,
        });
    }
    // Most stale uses first; accounts come in name order, and the sort is stable.
    timeline
        .series
        .sort_by_key(|s| std::cmp::Reverse(s.counts.iter().sum::<u64>()));
    timeline
}

impl StaleTimeline {
    /// "1 minute", "6 hours", "7 days".
    pub(crate) fn bucket_text(&self) -> String {
        let (n, unit) = match self.bucket_minutes {
            m if m % (24 * 60) == 0 => (m / (24 * 60), "day"),
            m if m % 60 == 0 => (m / 60, "hour"),
            m => (m, "minute"),
        };
        if n == 1 {
            format!("1 {unit}")
        } else {
            format!("{n} {unit}s")
        }
    }

    /// The start of bucket `i` in UTC: a date for day buckets, else a date and a time.
    pub(crate) fn bucket_label(&self, i: usize) -> String {
        let Some(start) = self.bucket_starts.get(i) else {
            return String::new();
        };
        if self.bucket_minutes % (24 * 60) == 0 {
            start.strftime("%Y-%m-%d").to_string()
        } else {
            start.strftime("%Y-%m-%d %H:%M").to_string()
        }
    }

    /// At most `CHART_SERIES` series, most stale uses first; when there are more
    /// ServiceAccounts, the last one is the sum of the rest.
    pub(crate) fn chart_series(&self) -> Vec<ChartSeries> {
        let label = |s: &StaleSeries| format!("{}/{}", s.namespace, s.service_account);
        if self.series.len() <= CHART_SERIES {
            return self
                .series
                .iter()
                .map(|s| ChartSeries {
                    label: label(s),
                    counts: s.counts.clone(),
                })
                .collect();
        }
        let (named, rest) = self.series.split_at(CHART_SERIES - 1);
        let mut out: Vec<ChartSeries> = named
            .iter()
            .map(|s| ChartSeries {
                label: label(s),
                counts: s.counts.clone(),
            })
            .collect();
        let mut others = vec![0; self.bucket_starts.len()];
        for s in rest {
            for (sum, n) in others.iter_mut().zip(&s.counts) {
                *sum += n;
            }
        }
        out.push(ChartSeries {
            label: format!("{} other ServiceAccounts", rest.len()),
            counts: others,
        });
        out
    }
}

/// The sentence a report shows instead of the chart, or `None` when there is a chart.
pub(crate) fn no_chart_reason(timeline: Option<&StaleTimeline>) -> Option<&'static str> {
    match timeline {
        None => Some(
            "No chart of stale-token uses over time: no audit log was given (--audit-log), \
             and only the audit log says when a stale token was used.",
        ),
        Some(t) if !t.bucket_starts.is_empty() => None,
        Some(t) if t.untimed_stale_events > 0 => Some(
            "No chart of stale-token uses over time: the audit log's stale-token events carry \
             no requestReceivedTimestamp or stageTimestamp.",
        ),
        Some(_) => Some(
            "No chart of stale-token uses over time: the audit log has no stale-token use \
             (no authentication.k8s.io/stale-token annotation).",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::super::audit::{AccountUse, AuditSummary};
    use super::*;

    fn minute(t: &str) -> i64 {
        t.parse::<jiff::Timestamp>().unwrap().as_second() / 60
    }

    fn audit(uses: &[(&str, &str, u64)]) -> AuditSummary {
        let mut audit = AuditSummary::default();
        for (sa, at, n) in uses {
            let account: &mut AccountUse = audit
                .accounts
                .entry(("ns".to_owned(), (*sa).to_owned()))
                .or_default();
            account.stale += n;
            *account.stale_by_minute.entry(minute(at)).or_default() += n;
        }
        audit
    }

    #[test]
    fn the_bucket_follows_the_span() {
        for (from, to, bucket, buckets) in [
            (
                "2026-11-23T10:00:00Z",
                "2026-11-23T10:00:30Z",
                "1 minute",
                1,
            ),
            (
                "2026-11-23T10:00:00Z",
                "2026-11-23T10:59:00Z",
                "1 minute",
                60,
            ),
            (
                "2026-11-23T10:00:00Z",
                "2026-11-23T11:00:00Z",
                "5 minutes",
                13,
            ),
            (
                "2026-11-23T10:17:00Z",
                "2026-11-23T20:00:00Z",
                "15 minutes",
                40,
            ),
            ("2026-11-23T10:00:00Z", "2026-11-24T10:00:00Z", "1 hour", 25),
            (
                "2026-11-01T00:00:00Z",
                "2026-11-08T00:00:00Z",
                "6 hours",
                29,
            ),
            ("2026-09-01T00:00:00Z", "2026-10-15T00:00:00Z", "1 day", 45),
            (
                "2025-01-01T00:00:00Z",
                "2026-11-23T00:00:00Z",
                "7 days",
                100,
            ),
        ] {
            let t = build(&audit(&[("a", from, 1), ("b", to, 2)]));
            assert_eq!(
                (t.bucket_text().as_str(), t.bucket_starts.len()),
                (bucket, buckets),
                "{from} .. {to}"
            );
            // Both uses land in a bucket: the first and the last.
            assert_eq!(t.series[0].service_account, "b", "most uses first");
            assert_eq!(t.series[0].counts.last(), Some(&2));
            assert_eq!(t.series[1].counts.first(), Some(&1));
            assert!(t.bucket_starts[0] <= from.parse::<jiff::Timestamp>().unwrap());
        }
    }

    #[test]
    fn two_accounts_over_several_hours() {
        let t = build(&audit(&[
            ("a", "2026-11-23T10:05:00Z", 3),
            ("a", "2026-11-23T13:59:00Z", 1),
            ("b", "2026-11-23T11:30:00Z", 2),
            ("b", "2026-11-23T11:31:00Z", 2),
        ]));
        assert_eq!(t.bucket_text(), "5 minutes");
        assert_eq!(t.bucket_label(0), "2026-11-23 10:05");
        let sums: Vec<u64> = t.series.iter().map(|s| s.counts.iter().sum()).collect();
        assert_eq!(sums, [4, 4]);
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(json["bucketStarts"][0], "2026-11-23T10:05:00Z");
        assert_eq!(json["series"][1]["serviceAccount"], "b");
    }

    #[test]
    fn day_labels_and_the_others_series() {
        let names: Vec<String> = (0..10).map(|i| format!("sa{i}")).collect();
        let uses: Vec<(&str, &str, u64)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), "2026-11-23T10:05:00Z", 20 - i as u64))
            .chain([("sa0", "2026-12-20T00:00:00Z", 1)])
            .collect();
        let t = build(&audit(&uses));
        assert_eq!(t.bucket_text(), "1 day");
        assert_eq!(t.bucket_label(0), "2026-11-23");
        let chart = t.chart_series();
        assert_eq!(chart.len(), 8);
        assert_eq!(chart[0].label, "ns/sa0");
        assert_eq!(chart[7].label, "3 other ServiceAccounts");
        assert_eq!(chart[7].counts[0], 13 + 12 + 11);
    }

    #[test]
    fn no_chart_says_why() {
        assert!(no_chart_reason(None).unwrap().contains("no audit log"));
        let empty = build(&AuditSummary::default());
        assert!(
            no_chart_reason(Some(&empty))
                .unwrap()
                .contains("no stale-token use")
        );
        let untimed = build(&AuditSummary {
            untimed_stale: 2,
            ..AuditSummary::default()
        });
        assert!(
            no_chart_reason(Some(&untimed))
                .unwrap()
                .contains("no requestReceivedTimestamp")
        );
        let timed = build(&audit(&[("a", "2026-11-23T10:05:00Z", 1)]));
        assert_eq!(no_chart_reason(Some(&timed)), None);
    }
}
