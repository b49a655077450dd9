//! The figures of issue 13 as one list: each measured value with its target and a
//! PASS/BELOW verdict, for the summary at the end of the text report and for `--output json`.
//! It only judges and prints; it must not measure anything, and a BELOW never fails the run.

use std::fmt::Write as _;

use serde::Serialize;

use crate::Verdict;

/// A bound a value must meet.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "op", content = "value")]
pub(crate) enum Bound {
    /// value ≥ bound.
    #[serde(rename = ">=")]
    AtLeast(f64),
    /// value ≤ bound.
    #[serde(rename = "<=")]
    AtMost(f64),
    /// value < bound.
    #[serde(rename = "<")]
    Under(f64),
}

impl Bound {
    pub(crate) fn holds(self, value: f64) -> bool {
        match self {
            Bound::AtLeast(b) => value >= b,
            Bound::AtMost(b) => value <= b,
            Bound::Under(b) => value < b,
        }
    }

    fn text(self, unit: &str) -> String {
        let (op, b) = match self {
            Bound::AtLeast(b) => ("≥", b),
            Bound::AtMost(b) => ("≤", b),
            Bound::Under(b) => ("<", b),
        };
        format!("{op} {}{}", number(b), spaced(unit))
    }
}

/// One figure: what was measured, its value, the target (None: reported for information,
/// the issue sets none) and the verdict (None when there is no value or no target).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct Figure {
    pub(crate) name: String,
    pub(crate) value: Option<f64>,
    pub(crate) unit: &'static str,
    pub(crate) target: Option<Bound>,
    pub(crate) verdict: Option<Verdict>,
    /// What the value is measured against, or how, in a few words.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub(crate) note: String,
}

impl Figure {
    pub(crate) fn new(
        name: impl Into<String>,
        value: Option<f64>,
        unit: &'static str,
        target: Option<Bound>,
    ) -> Figure {
        let verdict = match (value, target) {
            (Some(v), Some(t)) if v.is_finite() => Some(if t.holds(v) {
                Verdict::Pass
            } else {
                Verdict::Below
            }),
            _ => None,
        };
        Figure {
            name: name.into(),
            value,
            unit,
            target,
            verdict,
            note: String::new(),
        }
    }

    pub(crate) fn note(mut self, note: impl Into<String>) -> Figure {
        self.note = note.into();
        self
    }
}

/// The figures as an aligned table: name, value, target, verdict, note.
pub(crate) fn table(figures: &[Figure]) -> String {
    let mut out = String::new();
    let width = figures
        .iter()
        .map(|f| f.name.chars().count())
        .max()
        .unwrap_or(0);
    for f in figures {
        let value = f.value.map_or_else(
            || "-".to_string(),
            |v| format!("{}{}", number(v), spaced(f.unit)),
        );
        let target = f.target.map_or_else(|| "—".to_string(), |t| t.text(f.unit));
        let verdict = f.verdict.map_or("", Verdict::as_str);
        // Writing to a String cannot fail.
        let _ = writeln!(
            out,
            "  {:<width$}  {:>14}  {:<14} {:<6} {}",
            f.name, value, target, verdict, f.note
        );
    }
    out
}

/// Three significant digits or more, no exponent: 0.0123, 1.23, 12.3, 123, 12345.
fn number(v: f64) -> String {
    let a = v.abs();
    // Whole numbers (most targets) print without decimals: "< 5 ms", "≤ 40 MB".
    if a >= 100.0 || v.fract() == 0.0 {
        format!("{v:.0}")
    } else if a >= 10.0 {
        format!("{v:.1}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// The unit after a number: "12 ms", but "12/s" and "1.2×".
fn spaced(unit: &str) -> String {
    if unit.is_empty() || unit.starts_with('/') || unit == "×" {
        unit.to_string()
    } else {
        format!(" {unit}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_judge_their_edges() {
        assert!(Bound::AtLeast(2000.0).holds(2000.0));
        assert!(!Bound::AtLeast(2000.0).holds(1999.9));
        assert!(Bound::AtMost(40.0).holds(40.0));
        assert!(!Bound::AtMost(40.0).holds(40.01));
        // "p99 < 5 ms" and "ready < 100 ms" are strict.
        assert!(!Bound::Under(5.0).holds(5.0));
        assert!(Bound::Under(5.0).holds(4.99));
    }

    #[test]
    fn a_figure_without_value_or_target_has_no_verdict() {
        let f = Figure::new("p99", Some(3.0), "ms", Some(Bound::Under(5.0)));
        assert_eq!(f.verdict, Some(Verdict::Pass));
        let f = Figure::new("p99", Some(7.0), "ms", Some(Bound::Under(5.0)));
        assert_eq!(f.verdict, Some(Verdict::Below));
        assert_eq!(
            Figure::new("x", None, "", Some(Bound::AtLeast(1.0))).verdict,
            None
        );
        assert_eq!(Figure::new("x", Some(1.0), "", None).verdict, None);
        assert_eq!(
            Figure::new("x", Some(f64::NAN), "", Some(Bound::AtLeast(1.0))).verdict,
            None
        );
    }

    #[test]
    fn the_table_shows_value_target_and_verdict() {
        let text = table(&[
            Figure::new(
                "ready, empty store",
                Some(42.3),
                "ms",
                Some(Bound::Under(100.0)),
            ),
            Figure::new("bytes per object", Some(812.0), "B", None),
        ]);
        assert!(text.contains("42.3 ms"), "{text}");
        assert!(text.contains("< 100 ms"), "{text}");
        assert!(text.contains("PASS"), "{text}");
        assert!(text.contains("812 B"), "{text}");
        assert!(text.lines().nth(1).unwrap().contains('—'), "{text}");
        let json = serde_json::to_value(Figure::new("w", Some(2.0), "", Some(Bound::AtMost(2.0))))
            .unwrap();
        assert_eq!(
            json["target"],
            serde_json::json!({"op": "<=", "value": 2.0})
        );
        assert_eq!(json["verdict"], "PASS");
    }
}
