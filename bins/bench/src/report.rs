//! The results: one row per scenario, medians, and the table the driver prints.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::measure::Usage;

#[derive(Debug, Clone, Default)]
pub(crate) struct Row {
    pub(crate) scenario: String,
    pub(crate) n: u64,
    pub(crate) wall: Option<f64>,
    pub(crate) rate: Option<f64>,
    pub(crate) unit: &'static str,
    pub(crate) cpu: Option<f64>,
    pub(crate) rss_mb: Option<f64>,
    pub(crate) target: String,
    /// `Some(true)` met, `Some(false)` missed, `None` no target or not measured.
    pub(crate) met: Option<bool>,
    pub(crate) ratio: Option<String>,
    pub(crate) note: String,
}

impl Row {
    pub(crate) fn new(scenario: impl Into<String>, n: u64) -> Self {
        Row {
            scenario: scenario.into(),
            n,
            unit: "/s",
            ..Row::default()
        }
    }

    pub(crate) fn not_measured(
        scenario: impl Into<String>,
        n: u64,
        why: impl Into<String>,
    ) -> Self {
        Row {
            note: format!("not measured: {}", why.into()),
            ..Row::new(scenario, n)
        }
    }

    pub(crate) fn usage(mut self, u: &Usage) -> Self {
        self.wall = Some(u.wall.as_secs_f64());
        self.cpu = Some(u.cpu);
        self.rss_mb = Some(u.rss_kb as f64 / 1024.0);
        self
    }

    pub(crate) fn json(&self) -> Value {
        json!({
            "scenario": self.scenario, "n": self.n, "wall_s": self.wall, "rate": self.rate,
            "unit": self.unit, "cpu_s": self.cpu, "rss_mb": self.rss_mb, "target": self.target,
            "met": self.met, "vs_naive": self.ratio, "note": self.note,
        })
    }
}

pub(crate) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// The median run by wall time (CPU and RSS of that run; RSS the largest of all).
pub(crate) fn median_usage(runs: &[Usage]) -> Usage {
    let mut sorted: Vec<&Usage> = runs.iter().collect();
    sorted.sort_by_key(|u| u.wall);
    let mut u = sorted[sorted.len() / 2].clone();
    u.rss_kb = runs.iter().map(|r| r.rss_kb).max().unwrap_or(0);
    u
}

pub(crate) fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    v.filter(|v| v.is_finite())
        .map_or_else(|| "-".to_owned(), |v| format!("{v:.digits$}"))
}

fn fmt_rate(v: Option<f64>, unit: &str) -> String {
    match v.filter(|v| v.is_finite()) {
        None => "-".to_owned(),
        Some(v) if v >= 100.0 => format!("{} {unit}", group(v.round() as u64)),
        Some(v) => format!("{v:.1} {unit}"),
    }
}

pub(crate) fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

pub(crate) fn table(rows: &[Row]) -> String {
    let header = [
        "scenario",
        "N",
        "wall s",
        "rate",
        "CPU s",
        "peak RSS MB",
        "target",
        "met",
        "vs naive",
        "note",
    ];
    let cells: Vec<[String; 10]> = rows
        .iter()
        .map(|r| {
            [
                r.scenario.clone(),
                group(r.n),
                fmt_opt(r.wall, 2),
                fmt_rate(r.rate, r.unit),
                fmt_opt(r.cpu, 2),
                fmt_opt(r.rss_mb, 1),
                r.target.clone(),
                match r.met {
                    Some(true) => "yes".to_owned(),
                    Some(false) => "NO".to_owned(),
                    None => "-".to_owned(),
                },
                r.ratio.clone().unwrap_or_else(|| "-".to_owned()),
                r.note.clone(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cols: &[String]| {
        let mut s = String::from("|");
        for (c, w) in cols.iter().zip(widths) {
            let pad = w - c.chars().count();
            let _ = write!(s, " {c}{} |", " ".repeat(pad));
        }
        s.push('\n');
        s
    };
    let mut out = line(&header.map(str::to_owned));
    out.push('|');
    for w in widths {
        out.push_str(&format!("{}|", "-".repeat(w + 2)));
    }
    out.push('\n');
    for row in &cells {
        out.push_str(&line(row));
    }
    out
}

pub(crate) fn ratio(engine: f64, naive: f64) -> Option<String> {
    (engine.is_finite() && naive.is_finite() && naive > 0.0)
        .then(|| format!("{:.0}x", engine / naive))
}
