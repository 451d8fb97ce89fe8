//! What the terminal allows: whether a stream is a terminal, its width, and colours (only on a
//! terminal, never with `NO_COLOR` set or `TERM=dumb`).

use std::io::IsTerminal;

/// Standard output is a terminal.
pub(crate) fn stdout_is_terminal() -> bool {
    std::io::stdout().is_terminal()
}

/// Standard error is a terminal.
pub(crate) fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

/// Standard input is a terminal (someone can answer a question).
pub(crate) fn stdin_is_terminal() -> bool {
    std::io::stdin().is_terminal()
}

/// True when `NO_COLOR` is set to anything non-empty (<https://no-color.org>) or `TERM=dumb`.
fn colour_forbidden() -> bool {
    std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty())
        || std::env::var("TERM").is_ok_and(|t| t == "dumb")
}

/// The width tables on stdout must fit: the terminal's (`COLUMNS` wins when set), or `None` when
/// stdout is not a terminal (scripts get whole lines).
pub(crate) fn stdout_width() -> Option<usize> {
    if !stdout_is_terminal() {
        return None;
    }
    let columns = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.trim().parse::<usize>().ok())
        .filter(|c| *c > 0);
    Some(columns.unwrap_or_else(|| {
        terminal_size::terminal_size_of(std::io::stdout()).map_or(80, |(w, _)| usize::from(w.0))
    }))
}

/// ANSI colours for one stream, or none at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Paint {
    on: bool,
}

impl Paint {
    /// Colours for stdout.
    pub(crate) fn stdout() -> Self {
        Self {
            on: stdout_is_terminal() && !colour_forbidden(),
        }
    }

    /// Colours for stderr.
    pub(crate) fn stderr() -> Self {
        Self {
            on: stderr_is_terminal() && !colour_forbidden(),
        }
    }

    /// No colours.
    #[cfg(test)]
    pub(crate) fn off() -> Self {
        Self { on: false }
    }

    /// Colours, whatever the stream (for tests).
    #[cfg(test)]
    pub(crate) fn on() -> Self {
        Self { on: true }
    }

    /// Whether this paints at all.
    pub(crate) fn enabled(self) -> bool {
        self.on
    }

    fn wrap(self, code: &str, s: &str) -> String {
        if self.on && !s.is_empty() {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_owned()
        }
    }

    /// Bold.
    pub(crate) fn bold(self, s: &str) -> String {
        self.wrap("1", s)
    }

    /// Bold red, for errors.
    pub(crate) fn error(self, s: &str) -> String {
        self.wrap("1;31", s)
    }

    /// Yellow, for warnings.
    pub(crate) fn warn(self, s: &str) -> String {
        self.wrap("33", s)
    }

    /// A status word coloured by what it means: green for done well, red for failures,
    /// yellow for work in progress, dim for nothing happening.
    pub(crate) fn status(self, s: &str) -> String {
        let code = match s.trim() {
            "sent" | "completed" | "running" | "confirmed" => "32",
            "failed" | "cancelled" => "31",
            "pending" | "sending" | "scheduled" | "paused" | "waitlisted" => "33",
            "skipped" | "draft" => "2",
            _ => return s.to_owned(),
        };
        self.wrap(code, s)
    }
}
