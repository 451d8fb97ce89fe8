//! Output for people (aligned tables that fit the terminal) and scripts (`--json`: one JSON
//! document per command, described in `docs/cli.md`).

use serde::Serialize;

use crate::term::{self, Paint};

/// Prints a value as pretty JSON on stdout.
pub(crate) fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// Longest cell, in characters, whatever the width available.
const MAX_CELL: usize = 60;
/// Columns are not squeezed below this many characters to fit the terminal.
const MIN_COLUMN: usize = 5;
/// Spaces between columns.
const GAP: usize = 2;

/// An aligned text table.
#[derive(Debug)]
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
    /// A column of status words, coloured by meaning on a terminal.
    status_column: Option<usize>,
}

impl Table {
    pub(crate) fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
            status_column: None,
        }
    }

    /// Colours the cells of the column with this header as status words.
    pub(crate) fn status_column(mut self, header: &str) -> Self {
        self.status_column = self.header.iter().position(|h| h == header);
        self
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Renders the table: newlines in cells become spaces, cells are cut at 60 characters, and
    /// when `width` is given the widest columns are narrowed (cut with `…`) until each line fits.
    pub(crate) fn render(&self, width: Option<usize>, paint: Paint) -> String {
        let clean = |s: &str| s.replace(['\n', '\r', '\t'], " ");
        let rows: Vec<Vec<String>> = std::iter::once(&self.header)
            .chain(&self.rows)
            .map(|r| r.iter().map(|c| clean(c)).collect())
            .collect();
        let columns = self.header.len();
        let mut widths = vec![0; columns];
        for r in &rows {
            for (i, c) in r.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(c.chars().count().min(MAX_CELL));
            }
        }
        if let Some(max) = width {
            let mut total = widths.iter().sum::<usize>() + GAP * columns.saturating_sub(1);
            while total > max {
                // Narrow the widest column that can still give way.
                let Some((i, _)) = widths
                    .iter()
                    .enumerate()
                    .filter(|(_, w)| **w > MIN_COLUMN)
                    .max_by_key(|(i, w)| (**w, std::cmp::Reverse(*i)))
                else {
                    break;
                };
                widths[i] -= 1;
                total -= 1;
            }
        }
        let mut out = String::new();
        for (n, r) in rows.iter().enumerate() {
            let mut line = String::new();
            for (i, cell) in r.iter().enumerate().take(columns) {
                let cut = cut(cell, widths[i]);
                let pad = widths[i].saturating_sub(cut.chars().count());
                let shown = match (n, self.status_column) {
                    (0, _) => paint.bold(&cut),
                    (_, Some(c)) if c == i => paint.status(&cut),
                    _ => cut,
                };
                if i > 0 {
                    line.push_str(&" ".repeat(GAP));
                }
                line.push_str(&shown);
                if i + 1 < r.len().min(columns) {
                    line.push_str(&" ".repeat(pad));
                }
            }
            out.push_str(line.trim_end());
            out.push('\n');
        }
        out
    }

    /// Prints the table on stdout, fitted to the terminal when stdout is one.
    pub(crate) fn print(&self) {
        print!("{}", self.render(term::stdout_width(), Paint::stdout()));
    }
}

/// `s` cut to `width` characters, the last one replaced by `…` when something was cut.
fn cut(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_owned();
    }
    let mut cut: String = s.chars().take(width.saturating_sub(1)).collect();
    cut.push('…');
    cut
}

/// An optional value for a table cell.
pub(crate) fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".to_owned())
}

/// A duration for people: `45s`, `2m 5s`, `1h 4m`.
pub(crate) fn duration(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 if s.is_multiple_of(60) => format!("{}m", s / 60),
        60..=3599 => format!("{}m {}s", s / 60, s % 60),
        _ => format!("{}h {}m", s / 3600, (s % 3600) / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_and_truncates_long_cells() {
        let mut t = Table::new(&["id", "name"]);
        t.row(vec!["1".into(), "a".repeat(70)]);
        t.row(vec!["10".into(), "line\nbreak".into()]);
        let out = t.render(None, Paint::off());
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "id  name");
        assert!(lines[1].ends_with('…') && lines[1].chars().count() == 64);
        assert_eq!(lines[2], "10  line break");
    }

    #[test]
    fn fits_the_terminal_width_by_narrowing_the_widest_columns() {
        let mut t = Table::new(&["id", "name", "email", "status"]);
        t.row(vec![
            "1".into(),
            "Annabelle Mustermann-Schmidt".into(),
            "annabelle.mustermann@example.org".into(),
            "sent".into(),
        ]);
        t.row(vec![
            "22".into(),
            "Bo".into(),
            "bo@x.org".into(),
            "failed".into(),
        ]);
        let out = t.render(Some(40), Paint::off());
        for line in out.lines() {
            assert!(line.chars().count() <= 40, "{line:?} is wider than 40");
        }
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[1].contains('…'), "{out}");
        assert!(
            lines[1].ends_with("sent"),
            "short columns keep their text: {out}"
        );
        assert!(lines[2].starts_with("22  Bo"), "{out}");
        // Columns stay aligned: the status column starts at the same place on every line.
        let at = |l: &str| l.chars().count() - l.split_whitespace().last().unwrap().len();
        assert_eq!(at(lines[1]), at(lines[2]));
        // Wide enough: nothing is cut.
        assert!(!t.render(Some(200), Paint::off()).contains('…'));
    }

    #[test]
    fn colours_only_when_painting_and_keeps_alignment() {
        let mut t = Table::new(&["id", "status", "note"]);
        t.row(vec!["1".into(), "sent".into(), "x".into()]);
        t.row(vec!["2".into(), "failed".into(), "y".into()]);
        let t = t.status_column("status");
        let plain = t.render(None, Paint::off());
        assert!(!plain.contains('\x1b'));
        let coloured = t.render(None, Paint::on());
        assert!(coloured.contains("\x1b[32msent\x1b[0m"), "{coloured:?}");
        assert!(coloured.contains("\x1b[31mfailed\x1b[0m"), "{coloured:?}");
        let strip = |s: &str| {
            let mut out = String::new();
            let mut esc = false;
            for c in s.chars() {
                match (esc, c) {
                    (false, '\x1b') => esc = true,
                    (true, 'm') => esc = false,
                    (true, _) => {}
                    (false, c) => out.push(c),
                }
            }
            out
        };
        assert_eq!(strip(&coloured), plain);
    }

    #[test]
    fn durations_read_like_people_write_them() {
        assert_eq!(duration(0.2), "0s");
        assert_eq!(duration(45.0), "45s");
        assert_eq!(duration(120.0), "2m");
        assert_eq!(duration(125.0), "2m 5s");
        assert_eq!(duration(3_900.0), "1h 5m");
    }
}
