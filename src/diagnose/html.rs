//! Renders a diagnosis [`Report`] as one self-contained HTML page (`-o html > report.html`): a
//! summary, the findings at a glance, a chart of stale-token uses per ServiceAccount over time
//! (an inline SVG drawn here), then a section per finding with tables of its objects and
//! clients and its remedy.
//!
//! Owns: the page's layout, its inline CSS and the SVG chart.
//! Must not: load anything (no script, no external stylesheet, font or image: the page is mailed
//! and archived, and its Content-Security-Policy forbids it), decide anything (`analyze` does),
//! or write a string of the report unescaped: object names, User-Agents and remedies come from
//! the cluster and its clients.

use std::borrow::Cow;
use std::fmt::Write as _;

use super::report::{audit_line, tokens_line};
use super::timeline::{self, StaleTimeline};
use super::{Finding, Report, Severity};

/// Colours of the chart's series (Tableau 10), as CSS classes `c0`..`c7` for both the SVG
/// bars and the legend's swatches.
const PALETTE: [&str; 8] = [
    "#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7",
];

const STYLE: &str = "
body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;color:#1f2328;max-width:1100px;margin:2em auto;padding:0 1em}
h1{font-size:1.6em;margin:0 0 .4em}
h2{margin-top:1.8em;border-bottom:1px solid #d0d7de;padding-bottom:.2em}
h3{margin:.2em 0}
table{border-collapse:collapse;margin:.6em 0;width:100%}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f6f8fa}
td.n{text-align:right;font-variant-numeric:tabular-nums}
caption{text-align:left;font-weight:600;padding:4px 0}
table.facts th{width:9em}
pre{background:#f6f8fa;border:1px solid #d0d7de;padding:8px;white-space:pre-wrap}
code,pre{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:.92em}
.sev{display:inline-block;padding:0 .55em;border-radius:1em;font-size:.85em;font-weight:600;color:#fff}
.sev-error{background:#cf222e}.sev-warning{background:#9a6700}.sev-info{background:#0969da}
section.finding{border-left:4px solid #0969da;padding-left:1em;margin:1.6em 0}
section.error{border-color:#cf222e}section.warning{border-color:#9a6700}
.note{color:#57606a}
figure{margin:1em 0}
svg{width:100%;height:auto;max-width:760px}
svg text{font-size:10px;fill:#57606a}
svg .grid{stroke:#d8dee4}svg .axis{stroke:#57606a}
.legend{list-style:none;padding:0;display:flex;flex-wrap:wrap;gap:.3em 1.4em}
.swatch{display:inline-block;width:.9em;height:.9em;margin-right:.4em;vertical-align:-.1em;border-radius:2px}
";

/// Escapes text for an element's content or a quoted attribute value: `&`, `<`, `>`, `"` and
/// `'` (the `html-escape` crate's `encode_quoted_attribute`; the page puts report text nowhere
/// else: not in a script, a style, a URL or an unquoted attribute).
fn esc(s: &str) -> Cow<'_, str> {
    html_escape::encode_quoted_attribute(s)
}

/// The page.
pub(crate) fn render(report: &Report) -> String {
    let mut out = String::new();
    let server = esc(&report.cluster.server);
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>tokenwarden diagnose: {server}</title>\n<style>{STYLE}"
    );
    for (i, colour) in PALETTE.iter().enumerate() {
        let _ = writeln!(out, ".c{i}{{fill:{colour};background:{colour}}}");
    }
    out.push_str("</style>\n</head>\n<body>\n");
    summary(&mut out, report);
    overview(&mut out, report);
    chart_section(&mut out, report.stale_timeline.as_ref());
    for (i, f) in report.findings.iter().enumerate() {
        finding(&mut out, i + 1, f);
    }
    if !report.warnings.is_empty() {
        out.push_str("<h2>Warnings (checks that could not run)</h2>\n<ul>\n");
        for w in &report.warnings {
            let _ = writeln!(out, "<li>{}</li>", esc(w));
        }
        out.push_str("</ul>\n");
    }
    out.push_str("</body>\n</html>\n");
    out
}

fn badge(severity: Severity) -> String {
    let s = severity.as_str();
    format!("<span class=\"sev sev-{s}\">{s}</span>")
}

fn summary(out: &mut String, report: &Report) {
    let version = report
        .cluster
        .version
        .as_deref()
        .unwrap_or("unknown version");
    let s = &report.summary;
    let mut counts = Vec::new();
    for (n, severity) in [
        (s.error, Severity::Error),
        (s.warning, Severity::Warning),
        (s.info, Severity::Info),
    ] {
        if n > 0 {
            counts.push(format!("{n} {}", badge(severity)));
        }
    }
    if counts.is_empty() {
        counts.push("none".to_owned());
    }
    let _ = write!(
        out,
        "<h1>tokenwarden diagnose</h1>\n<table class=\"facts\">\n\
         <tr><th>Cluster</th><td><code>{}</code> (Kubernetes {})</td></tr>\n\
         <tr><th>Tokens</th><td>{}</td></tr>\n\
         <tr><th>Audit log</th><td>{}</td></tr>\n\
         <tr><th>Findings</th><td>{}</td></tr>\n</table>\n",
        esc(&report.cluster.server),
        esc(version),
        esc(&tokens_line(report)),
        esc(&audit_line(report)),
        counts.join(" "),
    );
}

/// One row per finding, linking to its section.
fn overview(out: &mut String, report: &Report) {
    out.push_str("<h2>Findings</h2>\n");
    if report.findings.is_empty() {
        out.push_str("<p>No findings.</p>\n");
        return;
    }
    out.push_str(
        "<table class=\"overview\">\n<thead><tr><th>#</th><th>Severity</th><th>Check</th>\
         <th>Finding</th><th>Objects</th><th>Clients</th></tr></thead>\n<tbody>\n",
    );
    for (i, f) in report.findings.iter().enumerate() {
        let n = i + 1;
        let _ = writeln!(
            out,
            "<tr><td><a href=\"#finding-{n}\">{n}</a></td><td>{}</td><td><code>{}</code></td>\
             <td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            badge(f.severity),
            esc(f.check),
            esc(&f.title),
            f.objects.len(),
            f.clients.len(),
        );
    }
    out.push_str("</tbody>\n</table>\n");
}

/// A finding: its title, a table of its objects, one of its clients, and the remedy.
fn finding(out: &mut String, n: usize, f: &Finding) {
    let severity = f.severity.as_str();
    let _ = write!(
        out,
        "<section class=\"finding {severity}\" id=\"finding-{n}\">\n\
         <h3>{n}. {} <code>{}</code></h3>\n<p>{}</p>\n",
        badge(f.severity),
        esc(f.check),
        esc(&f.title),
    );
    if !f.objects.is_empty() {
        let _ = write!(
            out,
            "<table class=\"objects\">\n<caption>Objects ({})</caption>\n\
             <thead><tr><th>Kind</th><th>Namespace</th><th>Name</th></tr></thead>\n<tbody>\n",
            f.objects.len()
        );
        for o in &f.objects {
            let namespace = if o.namespace.is_empty() {
                "(cluster)"
            } else {
                &o.namespace
            };
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td><code>{}</code></td></tr>",
                esc(&o.kind),
                esc(namespace),
                esc(&o.name)
            );
        }
        out.push_str("</tbody>\n</table>\n");
    }
    if !f.clients.is_empty() {
        clients(out, f);
    }
    let _ = write!(
        out,
        "<h4>Remedy</h4>\n<pre>{}</pre>\n</section>\n",
        esc(&f.remedy)
    );
}

fn clients(out: &mut String, f: &Finding) {
    let _ = write!(
        out,
        "<table class=\"clients\">\n<caption>Clients ({})</caption>\n<thead><tr>\
         <th>User-Agent</th><th>Requests</th><th>Stale</th><th>Client</th><th>Version</th>\
         <th>Upgrade to</th><th>Note</th></tr></thead>\n<tbody>\n",
        f.clients.len()
    );
    for c in &f.clients {
        let info = &c.info;
        let _ = writeln!(
            out,
            "<tr><td><code>{}</code></td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td>{}</td><td>{}</td><td>{}</td><td class=\"note\">{}</td></tr>",
            esc(&c.user_agent),
            c.requests,
            c.stale_requests,
            esc(&info.library),
            esc(info.version.as_deref().unwrap_or("?")),
            esc(info.upgrade_to.as_deref().map_or("", |v| v)),
            esc(&info.note),
        );
    }
    out.push_str("</tbody>\n</table>\n");
}

/// The chart with its legend, or the sentence that says why there is none.
fn chart_section(out: &mut String, timeline: Option<&StaleTimeline>) {
    out.push_str("<h2>Stale-token uses over time</h2>\n");
    let (Some(t), None) = (timeline, timeline::no_chart_reason(timeline)) else {
        let why = timeline::no_chart_reason(timeline).unwrap_or_default();
        let _ = writeln!(out, "<p class=\"no-chart\">{}</p>", esc(why));
        return;
    };
    let last = t.bucket_starts.len().saturating_sub(1);
    let _ = write!(
        out,
        "<p>Per ServiceAccount, in buckets of {} from {} to {} (UTC, the start of each \
         bucket), from the audit log's requestReceivedTimestamp.",
        t.bucket_text(),
        esc(&t.bucket_label(0)),
        esc(&t.bucket_label(last)),
    );
    if t.untimed_stale_events > 0 {
        let _ = write!(
            out,
            " {} stale use(s) without a timestamp are not shown.",
            t.untimed_stale_events
        );
    }
    out.push_str("</p>\n<figure>\n");
    out.push_str(&svg_chart(t));
    out.push_str("<figcaption><ul class=\"legend\">\n");
    for (k, s) in t.chart_series().iter().enumerate() {
        let total: u64 = s.counts.iter().sum();
        let _ = writeln!(
            out,
            "<li><span class=\"swatch c{}\"></span>{} ({total})</li>",
            k % PALETTE.len(),
            esc(&s.label)
        );
    }
    out.push_str("</ul></figcaption>\n</figure>\n");
}

const WIDTH: f64 = 760.0;
const HEIGHT: f64 = 260.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 36.0;
/// Time labels under the x axis, at most.
const X_LABELS: usize = 6;

/// A stacked bar chart: one bar per bucket, one `<rect class="bar …">` per ServiceAccount with
/// stale uses in that bucket (a `<title>` on each says who, how many and when).
pub(crate) fn svg_chart(t: &StaleTimeline) -> String {
    let series = t.chart_series();
    let buckets = t.bucket_starts.len().max(1);
    let totals: Vec<u64> = (0..buckets)
        .map(|i| series.iter().filter_map(|s| s.counts.get(i)).sum())
        .collect();
    let max = totals.iter().copied().max().unwrap_or(0).max(1);
    let plot_w = WIDTH - LEFT - RIGHT;
    let plot_h = HEIGHT - TOP - BOTTOM;
    let base = TOP + plot_h;
    // Counts and bucket numbers are far below 2^52: the conversions to f64 are exact.
    let slot = plot_w / buckets as f64;
    let height_of = |n: u64| plot_h * n as f64 / max as f64;
    let bar_w = (slot * 0.8).max(1.0);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {WIDTH} {HEIGHT}\" role=\"img\" \
         aria-label=\"Stale-token uses per ServiceAccount over time\">\n"
    );
    axes(&mut svg, max, base, plot_h);
    for i in 0..buckets {
        let x = LEFT + slot * i as f64 + (slot - bar_w) / 2.0;
        let mut top = base;
        let when = t.bucket_label(i);
        for (k, s) in series.iter().enumerate() {
            let n = s.counts.get(i).copied().unwrap_or(0);
            if n == 0 {
                continue;
            }
            let h = height_of(n);
            top -= h;
            let _ = writeln!(
                svg,
                "<rect class=\"bar c{}\" x=\"{x:.1}\" y=\"{top:.1}\" width=\"{bar_w:.1}\" \
                 height=\"{h:.1}\"><title>{}: {n} stale use(s), {} from {} UTC</title></rect>",
                k % PALETTE.len(),
                esc(&s.label),
                t.bucket_text(),
                esc(&when),
            );
        }
    }
    let every = buckets.div_ceil(X_LABELS);
    for i in (0..buckets).step_by(every) {
        let x = (LEFT + slot * (i as f64 + 0.5)).clamp(LEFT + 30.0, WIDTH - RIGHT - 30.0);
        let _ = writeln!(
            svg,
            "<text x=\"{x:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{}</text>",
            base + 16.0,
            esc(&axis_label(t, i))
        );
    }
    svg.push_str("</svg>\n");
    svg
}

/// The start of bucket `i` as short as the chart allows (the paragraph above it gives the
/// full first and last): a date for day buckets, a time when every bucket is on one day.
fn axis_label(t: &StaleTimeline, i: usize) -> String {
    let (Some(start), Some(first), Some(last)) = (
        t.bucket_starts.get(i),
        t.bucket_starts.first(),
        t.bucket_starts.last(),
    ) else {
        return String::new();
    };
    let day = |ts: &jiff::Timestamp| ts.as_second().div_euclid(24 * 60 * 60);
    let format = if t.bucket_minutes % (24 * 60) == 0 {
        "%Y-%m-%d"
    } else if day(first) == day(last) {
        "%H:%M"
    } else {
        "%m-%d %H:%M"
    };
    start.strftime(format).to_string()
}

/// The axes, with grid lines and labels at 0, half the maximum and the maximum.
fn axes(svg: &mut String, max: u64, base: f64, plot_h: f64) {
    let mut ticks = vec![0, max];
    if max >= 4 {
        ticks.insert(1, max / 2);
    }
    for tick in ticks {
        let y = base - plot_h * tick as f64 / max as f64;
        let _ = writeln!(
            svg,
            "<line class=\"grid\" x1=\"{LEFT}\" y1=\"{y:.1}\" x2=\"{:.1}\" y2=\"{y:.1}\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{tick}</text>",
            WIDTH - RIGHT,
            LEFT - 6.0,
            y + 3.5
        );
    }
    let _ = writeln!(
        svg,
        "<line class=\"axis\" x1=\"{LEFT}\" y1=\"{base:.1}\" x2=\"{:.1}\" y2=\"{base:.1}\"/>",
        WIDTH - RIGHT
    );
}

#[cfg(test)]
mod tests {
    use super::super::audit::summarize;
    use super::super::report::tests::{fixed_inputs, today};
    use super::super::timeline::StaleSeries;
    use super::super::{Inputs, analyze};
    use super::*;

    /// A stale use by a ServiceAccount, Pod and client whose names are markup, as a cluster
    /// and its clients may send them.
    const HOSTILE_LOG: &str = r##"{"user":{"username":"system:serviceaccount:default:<img src=x onerror=alert(1)>","extra":{"authentication.kubernetes.io/pod-name":["<script>alert('pod')</script>"]}},"userAgent":"evil/1.0 <script>alert(\"ua\")</script> & co","requestReceivedTimestamp":"2026-11-23T10:05:00Z","annotations":{"authentication.k8s.io/stale-token":"subject: x"}}
"##;

    fn report_of(log: &str) -> Report {
        let inputs = Inputs {
            server: "https://k/".into(),
            version: Some("v1.32.0".into()),
            audit: Some(("a.log".into(), summarize(log.as_bytes()).unwrap())),
            ..Inputs::default()
        };
        analyze(inputs, today())
    }

    /// The first unbalanced tag of `page`, if any: every element the page opens is closed in
    /// order, except the void `meta` (and `<… />`).
    fn unbalanced(page: &str) -> Option<String> {
        let mut open: Vec<String> = Vec::new();
        let mut rest = page;
        while let Some(at) = rest.find('<') {
            let Some(end) = rest[at..].find('>') else {
                return Some(format!("unterminated tag at {:?}", &rest[at..]));
            };
            let tag = &rest[at + 1..at + end];
            rest = &rest[at + end + 1..];
            let name: String = tag
                .trim_start_matches('/')
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric())
                .collect();
            if tag.starts_with('!') || tag.ends_with('/') || name == "meta" {
                continue;
            }
            if tag.starts_with('/') {
                if open.pop().as_deref() != Some(name.as_str()) {
                    return Some(format!("</{name}> closes {open:?}"));
                }
            } else {
                open.push(name);
            }
        }
        (!open.is_empty()).then(|| format!("never closed: {open:?}"))
    }

    #[test]
    fn markup_from_the_cluster_is_escaped_everywhere() {
        let report = report_of(HOSTILE_LOG);
        let stale = &report.findings[1];
        assert_eq!(stale.check, "stale-token-use", "{:#?}", report.findings);
        let page = render(&report);
        let lower = page.to_lowercase();
        assert!(!lower.contains("<script"), "{page}");
        assert!(!lower.contains("<img"), "{page}");
        for escaped in [
            "&lt;script&gt;alert(&#x27;pod&#x27;)&lt;/script&gt;",
            "evil/1.0 &lt;script&gt;alert(&quot;ua&quot;)&lt;/script&gt; &amp; co",
            "default/&lt;img src=x onerror=alert(1)&gt;",
        ] {
            assert!(page.contains(escaped), "{escaped} missing:\n{page}");
        }
        // In the chart too: the bar's title and the legend name the ServiceAccount.
        let svg = &page[page.find("<svg").unwrap()..page.find("</svg>").unwrap()];
        assert!(svg.contains("<title>default/&lt;img src=x onerror=alert(1)&gt;: 1 stale use(s)"));
        assert_eq!(unbalanced(&page), None, "{page}");
    }

    #[test]
    fn the_page_loads_nothing() {
        let page = render(&analyze(fixed_inputs(), today()));
        for banned in [
            "<script",
            "<link",
            " src=",
            " href=\"http",
            "url(",
            "@import",
        ] {
            assert!(!page.contains(banned), "{banned} in:\n{page}");
        }
        assert!(page.contains("content=\"default-src 'none'; style-src 'unsafe-inline'\""));
        // A remedy with a placeholder is shown, not parsed.
        assert!(page.contains("kubectl create role &lt;serviceaccount&gt;-minimal"));
        assert_eq!(unbalanced(&page), None, "{page}");
        // Every finding has its section, and a table of its objects where it has some.
        assert_eq!(page.matches("<section class=\"finding").count(), 8);
        assert_eq!(page.matches("<table class=\"objects\">").count(), 7);
        assert_eq!(page.matches("<table class=\"clients\">").count(), 2);
    }

    #[test]
    fn two_service_accounts_over_four_buckets_make_five_bars() {
        let hour = |h: i64| jiff::Timestamp::from_second(1_795_000_000 / 3600 * 3600 + h * 3600);
        let series = |name: &str, counts: &[u64]| StaleSeries {
            namespace: "ns".into(),
            service_account: name.into(),
            counts: counts.to_vec(),
        };
        let t = StaleTimeline {
            bucket_minutes: 60,
            bucket_starts: (0..4).map(|h| hour(h).unwrap()).collect(),
            series: vec![series("a", &[1, 0, 2, 3]), series("b", &[0, 1, 1, 0])],
            untimed_stale_events: 0,
        };
        let svg = svg_chart(&t);
        assert_eq!(svg.matches("<rect class=\"bar ").count(), 5, "{svg}");
        assert_eq!(svg.matches("<rect class=\"bar c0\"").count(), 3, "{svg}");
        assert_eq!(svg.matches("<rect class=\"bar c1\"").count(), 2, "{svg}");
        // One time label per bucket (four fit), and the y axis goes to the tallest bar, 3.
        assert_eq!(svg.matches("text-anchor=\"middle\"").count(), 4, "{svg}");
        let first = t.bucket_starts[0].strftime("%H:%M").to_string();
        assert!(svg.contains(&format!("middle\">{first}</text>")), "{svg}");
        assert!(svg.contains("text-anchor=\"end\">3</text>"), "{svg}");
        assert_eq!(unbalanced(&svg), None, "{svg}");
        // The tallest stacks (3 uses) reach the top of the plot; bucket 1's one use a third.
        let heights: Vec<f64> = svg
            .match_indices("height=\"")
            .map(|(i, m)| {
                let v = &svg[i + m.len()..];
                v[..v.find('"').unwrap()].parse().unwrap()
            })
            .collect();
        let plot_h = HEIGHT - TOP - BOTTOM;
        assert!((heights[0] - plot_h / 3.0).abs() < 0.1, "{heights:?}");
        assert!(
            (heights.iter().sum::<f64>() - plot_h * 8.0 / 3.0).abs() < 0.5,
            "{heights:?}"
        );
    }

    #[test]
    fn no_chart_without_timed_stale_uses_and_a_sentence_why() {
        let empty_log = render(&report_of(""));
        assert!(!empty_log.contains("<svg"), "{empty_log}");
        assert!(
            empty_log.contains("the audit log has no stale-token use"),
            "{empty_log}"
        );
        let no_log = render(&analyze(
            Inputs {
                server: "https://k/".into(),
                ..Inputs::default()
            },
            today(),
        ));
        assert!(!no_log.contains("<svg"));
        assert!(no_log.contains("no audit log was given (--audit-log)"));
        assert!(no_log.contains("<p>No findings.</p>"));
        assert_eq!(unbalanced(&no_log), None, "{no_log}");
    }
}
