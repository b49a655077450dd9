//! Renders a diagnosis [`Report`] as GitHub-flavoured markdown (`-o markdown`), to paste into
//! an issue or a pull request: a summary table, the findings at a glance, stale-token uses per
//! ServiceAccount over time as a text histogram (markdown has no charts), then each finding
//! with tables of its objects and clients and its remedy in a code block.
//!
//! Owns: the markdown layout and its escaping.
//! Must not: decide anything (`analyze` does), or write a string of the report into a table
//! or paragraph unescaped: object names, User-Agents and titles come from the cluster and its
//! clients, and a `|` would split a cell, a `<` open raw HTML.

use std::fmt::Write as _;

use super::report::{audit_line, summary_line, tokens_line};
use super::timeline::{self, StaleTimeline};
use super::{Finding, Report};

/// Text for a paragraph or a table cell: every character CommonMark could read as markup is
/// backslash-escaped (GFM then shows it as is, `\|` included inside a table), and a line break
/// becomes a space, since a cell is one line.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '|' | '&' | '~' | '#' | '!' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            _ => out.push(c),
        }
    }
    out
}

/// `text` in a fenced code block whose fence is longer than any run of backticks in it.
fn code_block(out: &mut String, text: &str) {
    let longest = text.split(|c| c != '`').map(str::len).max().unwrap_or(0);
    let fence = "`".repeat(longest.max(2) + 1);
    let _ = writeln!(out, "{fence}text\n{text}\n{fence}\n");
}

/// A table of `rows` under `header`; the cells are escaped here, the header is written as is.
fn table(out: &mut String, header: &[&str], rows: &[Vec<String>]) {
    let _ = writeln!(out, "| {} |", header.join(" | "));
    let _ = writeln!(out, "|{}", "---|".repeat(header.len()));
    for row in rows {
        let cells: Vec<String> = row.iter().map(|c| esc(c)).collect();
        let _ = writeln!(out, "| {} |", cells.join(" | "));
    }
    out.push('\n');
}

/// The document.
pub(crate) fn render(report: &Report) -> String {
    let mut out = String::from("# tokenwarden diagnose\n\n");
    let version = report
        .cluster
        .version
        .as_deref()
        .unwrap_or("unknown version");
    let facts = [
        (
            "Cluster",
            format!("{} (Kubernetes {version})", report.cluster.server),
        ),
        ("Tokens", tokens_line(report)),
        ("Audit log", audit_line(report)),
        ("Findings", summary_line(report)),
    ];
    for (what, value) in facts {
        let _ = writeln!(out, "- **{what}:** {}", esc(&value));
    }
    out.push('\n');
    out.push_str("## Findings\n\n");
    if report.findings.is_empty() {
        out.push_str("No findings.\n\n");
    } else {
        let rows: Vec<Vec<String>> = report
            .findings
            .iter()
            .enumerate()
            .map(|(i, f)| {
                vec![
                    (i + 1).to_string(),
                    f.severity.as_str().to_owned(),
                    f.check.to_owned(),
                    f.title.clone(),
                ]
            })
            .collect();
        table(&mut out, &["#", "Severity", "Check", "Finding"], &rows);
    }
    out.push_str("## Stale-token uses over time\n\n");
    histogram(&mut out, report.stale_timeline.as_ref());
    for (i, f) in report.findings.iter().enumerate() {
        finding(&mut out, i + 1, f);
    }
    if !report.warnings.is_empty() {
        out.push_str("## Warnings (checks that could not run)\n\n");
        for w in &report.warnings {
            let _ = writeln!(out, "- {}", esc(w));
        }
        out.push('\n');
    }
    out
}

fn finding(out: &mut String, n: usize, f: &Finding) {
    let _ = writeln!(
        out,
        "## {n}. {}: {}\n\n{}\n",
        f.severity.as_str(),
        esc(f.check),
        esc(&f.title)
    );
    if !f.objects.is_empty() {
        let rows: Vec<Vec<String>> = f
            .objects
            .iter()
            .map(|o| vec![o.kind.clone(), o.namespace.clone(), o.name.clone()])
            .collect();
        table(out, &["Kind", "Namespace", "Name"], &rows);
    }
    if !f.clients.is_empty() {
        let rows: Vec<Vec<String>> = f
            .clients
            .iter()
            .map(|c| {
                let info = &c.info;
                vec![
                    c.user_agent.clone(),
                    c.requests.to_string(),
                    c.stale_requests.to_string(),
                    info.library.clone(),
                    info.version.clone().unwrap_or_else(|| "?".to_owned()),
                    info.upgrade_to.clone().unwrap_or_default(),
                    info.note.clone(),
                ]
            })
            .collect();
        let header = [
            "User-Agent",
            "Requests",
            "Stale",
            "Client",
            "Version",
            "Upgrade to",
            "Note",
        ];
        table(out, &header, &rows);
    }
    out.push_str("Remedy:\n\n");
    code_block(out, &f.remedy);
}

/// Bars of a histogram cell are at most this many blocks wide.
const BAR_WIDTH: u64 = 12;

/// One row per time bucket and one column per ServiceAccount, each cell a bar of `█` as long
/// as its count is against the largest cell, then the count; runs of two or more buckets
/// without a stale use are one row.
fn histogram(out: &mut String, timeline: Option<&StaleTimeline>) {
    let (Some(t), None) = (timeline, timeline::no_chart_reason(timeline)) else {
        let why = timeline::no_chart_reason(timeline).unwrap_or_default();
        let _ = writeln!(out, "{}\n", esc(why));
        return;
    };
    let series = t.chart_series();
    let max = series
        .iter()
        .flat_map(|s| s.counts.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let _ = write!(
        out,
        "Stale uses per ServiceAccount, in buckets of {} (UTC, the start of each bucket).",
        t.bucket_text()
    );
    if t.untimed_stale_events > 0 {
        let _ = write!(
            out,
            " {} stale use(s) without a timestamp are not shown.",
            t.untimed_stale_events
        );
    }
    out.push_str("\n\n");
    // The column names come from the cluster too: escaped like the cells.
    let mut header = vec!["Time (UTC)".to_owned()];
    header.extend(series.iter().map(|s| esc(&s.label)));
    let mut rows: Vec<Vec<String>> = Vec::new();
    let empty = |i: usize| {
        series
            .iter()
            .all(|s| s.counts.get(i).is_none_or(|n| *n == 0))
    };
    let mut i = 0;
    while i < t.bucket_starts.len() {
        let run = (i..t.bucket_starts.len()).take_while(|j| empty(*j)).count();
        if run >= 2 {
            let last = t.bucket_label(i + run - 1);
            let mut row = vec![format!("{} … {last}", t.bucket_label(i))];
            row.extend(series.iter().map(|_| String::new()));
            rows.push(row);
            i += run;
            continue;
        }
        let mut row = vec![t.bucket_label(i)];
        for s in &series {
            let n = s.counts.get(i).copied().unwrap_or(0);
            row.push(bar(n, max));
        }
        rows.push(row);
        i += 1;
    }
    let header: Vec<&str> = header.iter().map(String::as_str).collect();
    table(out, &header, &rows);
}

/// `███ 3`: at least one block for any use, `BAR_WIDTH` for the largest count; empty for none.
fn bar(n: u64, max: u64) -> String {
    if n == 0 {
        return String::new();
    }
    let blocks = n
        .saturating_mul(BAR_WIDTH)
        .div_ceil(max)
        .clamp(1, BAR_WIDTH);
    let width = usize::try_from(blocks).unwrap_or(1);
    format!("{} {n}", "█".repeat(width))
}

#[cfg(test)]
mod tests {
    use super::super::audit::summarize;
    use super::super::report::tests::{fixed_inputs, today};
    use super::super::timeline::StaleSeries;
    use super::super::{Inputs, analyze};
    use super::*;

    /// The cells of a table row, split on the `|`s that are not escaped.
    fn cells(row: &str) -> Vec<String> {
        let mut cells = vec![String::new()];
        let mut escaped = false;
        for c in row.trim().trim_matches('|').chars() {
            match c {
                '|' if !escaped => cells.push(String::new()),
                _ => cells.last_mut().unwrap().push(c),
            }
            escaped = c == '\\' && !escaped;
        }
        cells.iter().map(|c| c.trim().to_owned()).collect()
    }

    /// `doc` without its fenced code blocks.
    fn outside_code_blocks(doc: &str) -> String {
        let mut fenced = false;
        let mut out = String::new();
        for line in doc.lines() {
            if line.starts_with("```") {
                fenced = !fenced;
            } else if !fenced {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    /// The table that starts with the header line `header`.
    fn table_after<'a>(doc: &'a str, header: &str) -> Vec<&'a str> {
        let at = doc
            .find(header)
            .unwrap_or_else(|| panic!("no {header:?} in\n{doc}"));
        doc[at..]
            .lines()
            .take_while(|l| l.starts_with('|'))
            .collect()
    }

    fn report_of(log: &str) -> Report {
        let inputs = Inputs {
            server: "https://k/".into(),
            version: Some("v1.32.0".into()),
            audit: Some(("a.log".into(), summarize(log.as_bytes()).unwrap())),
            ..Inputs::default()
        };
        analyze(inputs, today())
    }

    #[test]
    fn pipes_and_markup_in_cells_are_escaped() {
        let log = r#"{"user":{"username":"system:serviceaccount:default:old-py"},"userAgent":"a|b <script>x</script> `c` *d*","requestReceivedTimestamp":"2026-11-23T10:05:00Z","annotations":{"authentication.k8s.io/stale-token":"subject: x"}}
"#;
        let doc = render(&report_of(log));
        let rows = table_after(&doc, "| User-Agent |");
        assert_eq!(rows.len(), 3, "{doc}");
        let header = cells(rows[0]);
        for row in &rows[1..] {
            assert_eq!(cells(row).len(), header.len(), "{row}");
        }
        assert!(
            rows[2].starts_with(r"| a\|b \<script\>x\</script\> \`c\` \*d\* | 1 | 1 |"),
            "{}",
            rows[2]
        );
        // Raw markup only inside the remedy's code block, where markdown shows it as is.
        assert!(!outside_code_blocks(&doc).contains("<script>"), "{doc}");
        assert!(
            doc.contains("```text\nclient \"a|b <script>x</script>"),
            "{doc}"
        );
    }

    #[test]
    fn every_finding_has_its_tables_and_a_fenced_remedy() {
        let doc = render(&analyze(fixed_inputs(), today()));
        let overview = table_after(&doc, "| # | Severity | Check | Finding |");
        assert_eq!(overview.len(), 2 + 8, "{doc}");
        assert_eq!(cells(overview[3])[..3], ["2", "error", "stale-token-use"]);
        assert_eq!(doc.matches("| Kind | Namespace | Name |").count(), 7);
        assert_eq!(doc.matches("Remedy:\n\n```text\n").count(), 8, "{doc}");
        assert!(doc.contains("- **Findings:** 2 error(s), 3 warning(s), 3 info\n"));
        // The fixture's stale use has no time: no histogram, and the reason.
        assert!(doc.contains("carry no requestReceivedTimestamp or stageTimestamp"));
        assert!(!doc.contains("| Time (UTC) |"));
    }

    #[test]
    fn a_remedy_with_backticks_gets_a_longer_fence() {
        let mut out = String::new();
        code_block(&mut out, "run ```this``` and `that`");
        assert_eq!(out, "````text\nrun ```this``` and `that`\n````\n\n");
    }

    #[test]
    fn histogram_of_two_service_accounts_with_a_quiet_stretch() {
        let start = 1_795_000_000 / 3600 * 3600;
        let series = |name: &str, counts: &[u64]| StaleSeries {
            namespace: "ns".into(),
            service_account: name.into(),
            counts: counts.to_vec(),
        };
        let t = StaleTimeline {
            bucket_minutes: 60,
            bucket_starts: (0..7)
                .map(|h| jiff::Timestamp::from_second(start + h * 3600).unwrap())
                .collect(),
            series: vec![
                series("a", &[4, 0, 0, 0, 0, 1, 2]),
                series("b|c", &[0, 2, 0, 0, 0, 0, 1]),
            ],
            untimed_stale_events: 3,
        };
        let mut doc = String::new();
        histogram(&mut doc, Some(&t));
        assert!(doc.contains("in buckets of 1 hour"), "{doc}");
        assert!(doc.contains("3 stale use(s) without a timestamp"), "{doc}");
        let rows = table_after(&doc, "| Time (UTC) |");
        assert_eq!(cells(rows[0]), ["Time (UTC)", "ns/a", r"ns/b\|c"], "{doc}");
        // Buckets 0, 1, the three quiet ones as one row, 5 and 6.
        let body: Vec<Vec<String>> = rows[2..].iter().map(|r| cells(r)).collect();
        assert_eq!(body.len(), 5, "{doc}");
        assert_eq!(body[0][1], format!("{} 4", "█".repeat(12)));
        assert_eq!(body[0][2], "");
        assert_eq!(body[1][2], format!("{} 2", "█".repeat(6)));
        assert_eq!(
            body[2][0],
            format!("{} … {}", t.bucket_label(2), t.bucket_label(4))
        );
        assert_eq!(body[2][1..], ["", ""]);
        assert_eq!(body[4][1..], ["██████ 2", "███ 1"]);
    }

    #[test]
    fn no_histogram_without_an_audit_log_and_a_sentence_why() {
        let doc = render(&analyze(
            Inputs {
                server: "https://k/".into(),
                ..Inputs::default()
            },
            today(),
        ));
        assert!(
            doc.contains("no audit log was given (--audit-log)"),
            "{doc}"
        );
        assert!(doc.contains("No findings."), "{doc}");
        let doc = render(&report_of(""));
        assert!(
            doc.contains("the audit log has no stale-token use"),
            "{doc}"
        );
    }
}
