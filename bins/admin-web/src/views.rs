//! Server-rendered pages: the panel's tera templates (embedded in the binary, autoescaped
//! because their names end in `.html`), the common page context, and small formatting helpers.

use axum::response::Html;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tera::{Context, Tera};

use crate::auth::Session;
use crate::error::PageError;

/// The panel's templates, compiled once at start.
pub(crate) struct Views {
    tera: Tera,
}

impl std::fmt::Debug for Views {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Views").finish_non_exhaustive()
    }
}

macro_rules! templates {
    ($($name:literal),+ $(,)?) => {
        [$(($name, include_str!(concat!("../templates/", $name)))),+]
    };
}

/// Every template, by name.
const TEMPLATES: [(&str, &str); 21] = templates![
    "base.html",
    "public.html",
    "login.html",
    "dashboard.html",
    "templates_list.html",
    "template_form.html",
    "template_preview.html",
    "broadcasts_list.html",
    "broadcast_form.html",
    "broadcast.html",
    "broadcast_launch.html",
    "broadcast_test.html",
    "recipients.html",
    "audience.html",
    "user.html",
    "import.html",
    "media.html",
    "audit.html",
    "unsubscribe.html",
    "pager.html",
    "account.html",
];

impl Views {
    /// Compiles the templates; a syntax error in one is a bug caught by every test.
    pub(crate) fn new() -> Result<Self, tera::Error> {
        let mut tera = Tera::new();
        tera.add_raw_templates(TEMPLATES)?;
        Ok(Self { tera })
    }

    /// Renders a page.
    pub(crate) fn render(&self, name: &str, context: &Context) -> Result<Html<String>, PageError> {
        Ok(Html(self.tera.render(name, context)?))
    }
}

/// The context every page of a logged-in session starts from.
pub(crate) fn page(session: &Session, nav: &str, title: &str) -> Context {
    let mut ctx = Context::new();
    ctx.insert("user", &session.username);
    ctx.insert("csrf", &session.csrf);
    ctx.insert("nav", nav);
    ctx.insert("title", title);
    ctx.insert("notice", &None::<String>);
    ctx
}

/// `2026-11-28 14:03 UTC`.
pub(crate) fn fmt_time(at: DateTime<Utc>) -> String {
    at.format("%Y-%m-%d %H:%M UTC").to_string()
}

/// Optional time, empty when absent.
pub(crate) fn fmt_opt(at: Option<DateTime<Utc>>) -> String {
    at.map(fmt_time).unwrap_or_default()
}

/// `1 h 05 min`, `4 min 10 s`, `12 s`, `under a second`.
pub(crate) fn fmt_duration(seconds: f64) -> String {
    if !seconds.is_finite() || seconds < 1.0 {
        return "under a second".to_owned();
    }
    let s = seconds.round() as u64;
    match (s / 3600, (s % 3600) / 60, s % 60) {
        (0, 0, s) => format!("{s} s"),
        (0, m, s) => format!("{m} min {s:02} s"),
        (h, m, _) => format!("{h} h {m:02} min"),
    }
}

/// A link of a pager.
#[derive(Debug, Serialize)]
pub(crate) struct Pager {
    pub(crate) page: u64,
    pub(crate) pages: u64,
    pub(crate) total: u64,
    pub(crate) prev: Option<String>,
    pub(crate) next: Option<String>,
}

impl Pager {
    /// A pager for `total` items, `per_page` a page, on 1-based `page`, with `link(page)`
    /// making the URL of another page.
    pub(crate) fn new(total: u64, per_page: u64, page: u64, link: impl Fn(u64) -> String) -> Self {
        let pages = total.div_ceil(per_page).max(1);
        Self {
            page,
            pages,
            total,
            prev: (page > 1).then(|| link(page - 1)),
            next: (page < pages).then(|| link(page + 1)),
        }
    }
}

/// The message shown after a redirect with `?done=<key>`; unknown keys show nothing (the text
/// never comes from the request).
pub(crate) fn notice(done: Option<&str>) -> Option<&'static str> {
    Some(match done? {
        "template_created" => "Template created.",
        "template_saved" => "Template saved.",
        "template_deleted" => "Template deleted.",
        "broadcast_created" => "Broadcast created as a draft.",
        "broadcast_scheduled" => "Broadcast scheduled.",
        "schedule_cleared" => "Schedule cleared: the broadcast is a draft again.",
        "launched" => "Broadcast launched.",
        "paused" => "Broadcast paused.",
        "resumed" => "Broadcast resumed.",
        "cancelled" => "Broadcast cancelled.",
        "imported" => "Import finished.",
        "medium_saved" => "File saved.",
        "medium_removed" => "File removed.",
        "logged_out" => "You are logged out.",
        "logged_out_everywhere" => "You are logged out on every device.",
        "password_changed" => "Password changed. Every other session of yours has ended.",
        "unsubscribed" => "Unsubscribed.",
        _ => return None,
    })
}

/// Lines of a template part around a problem, for showing it at its line.
#[derive(Debug, Serialize)]
pub(crate) struct SourceLine {
    pub(crate) number: usize,
    pub(crate) text: String,
    pub(crate) marked: bool,
    /// Spaces up to the column, then a caret, under the marked line.
    pub(crate) caret: Option<String>,
}

/// The lines around `line` (1-based), with the line marked and a caret under `column`.
pub(crate) fn source_excerpt(source: &str, line: usize, column: Option<usize>) -> Vec<SourceLine> {
    let lines: Vec<&str> = source.lines().collect();
    let first = line.saturating_sub(3).max(1);
    let last = (line + 2).min(lines.len().max(1));
    (first..=last)
        .map(|n| {
            let text = lines.get(n - 1).copied().unwrap_or_default();
            let marked = n == line;
            SourceLine {
                number: n,
                text: text.to_owned(),
                marked,
                caret: (marked && column.is_some()).then(|| {
                    let col = column.unwrap_or(1).max(1);
                    let prefix: String = text
                        .chars()
                        .take(col - 1)
                        .map(|c| if c == '\t' { '\t' } else { ' ' })
                        .collect();
                    format!("{prefix}^")
                }),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_compiles() {
        Views::new().unwrap();
    }

    #[test]
    fn formats_durations_and_excerpts() {
        assert_eq!(fmt_duration(0.2), "under a second");
        assert_eq!(fmt_duration(12.4), "12 s");
        assert_eq!(fmt_duration(250.0), "4 min 10 s");
        assert_eq!(fmt_duration(3900.0), "1 h 05 min");
        let src = "a\nb\nc {{ x\nd\ne\nf";
        let ex = source_excerpt(src, 3, Some(3));
        assert_eq!(
            ex.iter().map(|l| l.number).collect::<Vec<_>>(),
            vec![1, 2, 3, 4, 5]
        );
        assert!(ex[2].marked && ex[2].caret.as_deref() == Some("  ^"));
        assert_eq!(notice(Some("launched")), Some("Broadcast launched."));
        assert_eq!(notice(Some("<script>")), None);
        let p = Pager::new(101, 50, 2, |p| format!("?page={p}"));
        assert_eq!(
            (p.pages, p.prev.as_deref(), p.next.as_deref()),
            (3, Some("?page=1"), Some("?page=3"))
        );
    }
}
