//! Progress of long work (a run, a launch, an import, an export): a bar or spinner on stderr when
//! stdout and stderr are terminals, otherwise a plain `progress: ...` line on stderr at most
//! every 2 seconds (and one at the end), so logs of scripts stay readable.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::term::{self, Paint};

/// How often the plain lines are printed at most.
const LINE_EVERY: Duration = Duration::from_secs(2);

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unit {
    /// Items (`1200/5000 <message>`).
    Items,
    /// Bytes of a file (`<message>: 1.2 MiB/40.0 MiB`).
    Bytes,
    /// Nothing countable: a spinner (`<message> (12s)`).
    Spinner,
}

#[derive(Debug)]
struct State {
    pos: u64,
    len: Option<u64>,
    message: String,
    /// The last plain line printed and when.
    printed: Option<(String, Instant)>,
    finished: bool,
}

#[derive(Debug)]
struct Inner {
    unit: Unit,
    started: Instant,
    bar: Option<ProgressBar>,
    state: Mutex<State>,
}

impl Drop for Inner {
    /// A display dropped on an error path does not stay on the screen above the error line.
    fn drop(&mut self) {
        if let Some(bar) = &self.bar
            && !bar.is_finished()
        {
            bar.finish_and_clear();
        }
    }
}

/// A progress display; clones update the same display.
#[derive(Debug, Clone)]
pub(crate) struct Activity {
    inner: Arc<Inner>,
}

/// Draw bars (true) or print plain lines (false)?
pub(crate) fn interactive() -> bool {
    term::stdout_is_terminal() && term::stderr_is_terminal()
}

impl Activity {
    /// Starts a display; `len` is the total when known. Must be called inside the Tokio runtime
    /// (plain mode ticks from a task).
    pub(crate) fn start(
        unit: Unit,
        pos: u64,
        len: Option<u64>,
        message: impl Into<String>,
    ) -> Self {
        let bar = interactive().then(|| new_bar(unit, len));
        let activity = Self {
            inner: Arc::new(Inner {
                unit,
                started: Instant::now(),
                bar,
                state: Mutex::new(State {
                    pos,
                    len,
                    message: message.into(),
                    printed: None,
                    finished: false,
                }),
            }),
        };
        if let Some(bar) = &activity.inner.bar {
            bar.set_position(pos);
            bar.set_message(activity.state().message.clone());
        } else {
            if unit == Unit::Items {
                activity.print_line(true);
            }
            let ticker = activity.clone();
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(LINE_EVERY).await;
                    if ticker.state().finished {
                        break;
                    }
                    ticker.print_line(false);
                }
            });
        }
        activity
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().expect("progress state poisoned")
    }

    /// Sets the position, the total and the message at once.
    pub(crate) fn update(&self, pos: u64, len: Option<u64>, message: impl Into<String>) {
        let message = message.into();
        {
            let mut s = self.state();
            s.pos = pos;
            s.len = len;
            s.message.clone_from(&message);
        }
        match &self.inner.bar {
            Some(bar) => {
                if let Some(len) = len {
                    bar.set_length(len);
                }
                bar.set_position(pos);
                bar.set_message(message);
            }
            None => self.print_line(false),
        }
    }

    /// Sets the position only (e.g. bytes read).
    pub(crate) fn set_position(&self, pos: u64) {
        self.state().pos = pos;
        match &self.inner.bar {
            Some(bar) => bar.set_position(pos),
            None => self.print_line(false),
        }
    }

    /// Ends the display: the bar is cleared; in plain mode the final state is printed (if it
    /// was not the last line printed). Then `summary`, if any, is printed on stderr.
    pub(crate) fn finish(&self, summary: Option<&str>) {
        self.state().finished = true;
        match &self.inner.bar {
            Some(bar) => bar.finish_and_clear(),
            None => self.print_final(),
        }
        if let Some(summary) = summary {
            eprintln!("{summary}");
        }
    }

    /// The plain line for the current state.
    fn line(&self, s: &State) -> String {
        match self.inner.unit {
            Unit::Items => match s.len {
                Some(len) => format!("{}/{len} {}", s.pos, s.message),
                None => format!("{} {}", s.pos, s.message),
            },
            Unit::Bytes => match s.len {
                Some(len) => format!("{}: {}/{}", s.message, bytes(s.pos), bytes(len)),
                None => format!("{}: {}", s.message, bytes(s.pos)),
            },
            Unit::Spinner => format!(
                "{} ({})",
                s.message,
                crate::output::duration(self.inner.started.elapsed().as_secs_f64())
            ),
        }
    }

    /// Prints the current line when it changed and the last one is at least 2 s old (or
    /// always, with `force`).
    fn print_line(&self, force: bool) {
        let mut s = self.state();
        if s.finished && !force {
            return;
        }
        let line = self.line(&s);
        let due = match &s.printed {
            // Short work stays quiet: the first line comes after 2 s.
            None => self.inner.started.elapsed() >= LINE_EVERY,
            Some((last, at)) => *last != line && at.elapsed() >= LINE_EVERY,
        };
        if force || due {
            eprintln!("progress: {line}");
            s.printed = Some((line, Instant::now()));
        }
    }

    fn print_final(&self) {
        let mut s = self.state();
        let line = self.line(&s);
        // A spinner's last line says nothing new; work that printed nothing stays quiet.
        if self.inner.unit == Unit::Spinner {
            return;
        }
        if s.printed.as_ref().is_some_and(|(last, _)| *last != line) {
            eprintln!("progress: {line}");
            s.printed = Some((line, Instant::now()));
        }
    }
}

fn new_bar(unit: Unit, len: Option<u64>) -> ProgressBar {
    let colour = Paint::stderr().enabled();
    let (spinner, bar) = if colour {
        ("{spinner:.green}", "{wide_bar:.cyan/blue}")
    } else {
        ("{spinner}", "{wide_bar}")
    };
    let template = match (unit, len) {
        (Unit::Spinner, _) | (_, None) => format!("{spinner} {{msg}} ({{elapsed}})"),
        (Unit::Items, Some(_)) => format!("{spinner} [{bar}] {{pos}}/{{len}} {{msg}}"),
        (Unit::Bytes, Some(_)) => {
            format!("{spinner} {{msg}} [{bar}] {{bytes}}/{{total_bytes}} ({{eta}})")
        }
    };
    let style = ProgressStyle::with_template(&template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let bar = match len {
        Some(len) if unit != Unit::Spinner => ProgressBar::new(len),
        _ => ProgressBar::new_spinner(),
    };
    bar.set_draw_target(ProgressDrawTarget::stderr());
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(120));
    bar
}

/// A byte count for people: `512 B`, `1.5 KiB`, `40.0 MiB`.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1024.0;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// A reader that reports how many bytes were read to an [`Activity`].
#[derive(Debug)]
pub(crate) struct CountingReader<R> {
    inner: R,
    read: u64,
    activity: Activity,
}

impl<R> CountingReader<R> {
    pub(crate) fn new(inner: R, activity: Activity) -> Self {
        Self {
            inner,
            read: 0,
            activity,
        }
    }
}

impl<R: std::io::Read> std::io::Read for CountingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        self.activity.set_position(self.read);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_counts_read_like_people_write_them() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(1536), "1.5 KiB");
        assert_eq!(bytes(40 * 1024 * 1024), "40.0 MiB");
    }
}
