//! Output for people (aligned tables) and scripts (`--json`: one JSON document per command).

use serde::Serialize;

/// Prints a value as pretty JSON on stdout.
pub(crate) fn json<T: Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// An aligned text table.
#[derive(Debug)]
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Renders the table; cells are cut at 60 characters and newlines become spaces.
    pub(crate) fn render(&self) -> String {
        const MAX: usize = 60;
        let clean = |s: &str| {
            let s = s.replace(['\n', '\r', '\t'], " ");
            if s.chars().count() > MAX {
                let cut: String = s.chars().take(MAX - 1).collect();
                format!("{cut}…")
            } else {
                s
            }
        };
        let rows: Vec<Vec<String>> = std::iter::once(&self.header)
            .chain(&self.rows)
            .map(|r| r.iter().map(|c| clean(c)).collect())
            .collect();
        let mut widths = vec![0; self.header.len()];
        for r in &rows {
            for (i, c) in r.iter().enumerate() {
                widths[i] = widths[i].max(c.chars().count());
            }
        }
        let mut out = String::new();
        for r in &rows {
            let line: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
                .collect();
            out.push_str(line.join("  ").trim_end());
            out.push('\n');
        }
        out
    }

    pub(crate) fn print(&self) {
        print!("{}", self.render());
    }
}

/// An optional value for a table cell.
pub(crate) fn opt<T: ToString>(v: Option<T>) -> String {
    v.map(|v| v.to_string()).unwrap_or_else(|| "-".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_and_truncates() {
        let mut t = Table::new(&["id", "name"]);
        t.row(vec!["1".into(), "a".repeat(70)]);
        t.row(vec!["10".into(), "line\nbreak".into()]);
        let out = t.render();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "id  name");
        assert!(lines[1].ends_with('…') && lines[1].chars().count() == 64);
        assert_eq!(lines[2], "10  line break");
    }
}
