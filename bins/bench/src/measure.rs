//! Measuring a child process from `/proc`: wall time, exact CPU of reaped children, peak RSS;
//! and the fakes run as long-lived helper processes.

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Res, err};

/// Clock ticks per second of `/proc/*/stat` times.
pub(crate) fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// Fields of `/proc/<pid>/stat` after the command name (field 3 is index 0).
fn stat_fields(pid: &str) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    Some(
        rest.split_whitespace()
            .map(|f| f.parse().unwrap_or(0))
            .collect(),
    )
}

/// CPU ticks of this process's reaped children (cutime + cstime).
fn children_ticks() -> u64 {
    stat_fields("self").map_or(0, |f| f[13] + f[14])
}

/// CPU ticks of this process (utime + stime).
pub(crate) fn own_ticks() -> u64 {
    stat_fields("self").map_or(0, |f| f[11] + f[12])
}

/// `VmHWM` of a process, kB.
pub(crate) fn peak_rss_kb(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// What a measured child did.
#[derive(Debug, Clone, Default)]
pub(crate) struct Usage {
    pub(crate) wall: Duration,
    pub(crate) cpu: f64,
    pub(crate) rss_kb: u64,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) ok: bool,
}

struct Running {
    child: Child,
    pid: String,
    started: Instant,
    rss_kb: u64,
    out: Option<std::thread::JoinHandle<String>>,
    err: Option<std::thread::JoinHandle<String>>,
}

fn reader(stream: Option<impl Read + Send + 'static>) -> Option<std::thread::JoinHandle<String>> {
    stream.map(|mut s| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = s.read_to_string(&mut text);
            text
        })
    })
}

fn start(mut cmd: Command) -> Res<Running> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    let pid = child.id().to_string();
    let out = reader(child.stdout.take());
    let err = reader(child.stderr.take());
    Ok(Running {
        child,
        pid,
        started: Instant::now(),
        rss_kb: 0,
        out,
        err,
    })
}

/// Runs commands side by side; returns each one's usage when all have exited.
pub(crate) fn measure_all(cmds: Vec<Command>, ticks_per_s: f64) -> Res<Vec<Usage>> {
    let mut running = Vec::new();
    for cmd in cmds {
        running.push(Some(start(cmd)?));
    }
    let mut done: Vec<Option<Usage>> = vec![None; running.len()];
    let mut ticks = children_ticks();
    while done.iter().any(Option::is_none) {
        for (i, slot) in running.iter_mut().enumerate() {
            let Some(r) = slot else { continue };
            if let Some(kb) = peak_rss_kb(&r.pid) {
                r.rss_kb = r.rss_kb.max(kb);
            }
            if let Some(status) = r.child.try_wait().map_err(err)? {
                let wall = r.started.elapsed();
                let now = children_ticks();
                let cpu = (now - ticks) as f64 / ticks_per_s;
                ticks = now;
                let r = slot.take().expect("running");
                done[i] = Some(Usage {
                    wall,
                    cpu,
                    rss_kb: r.rss_kb,
                    stdout: r
                        .out
                        .map(|h| h.join().unwrap_or_default())
                        .unwrap_or_default(),
                    stderr: r
                        .err
                        .map(|h| h.join().unwrap_or_default())
                        .unwrap_or_default(),
                    ok: status.success(),
                });
            }
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(done.into_iter().flatten().collect())
}

pub(crate) fn measure(cmd: Command, ticks_per_s: f64) -> Res<Usage> {
    Ok(measure_all(vec![cmd], ticks_per_s)?.remove(0))
}

/// A long-running helper process (a fake server), killed when dropped.
pub(crate) struct Service {
    child: Child,
}

impl Service {
    /// Starts `cmd` and waits for its first stdout line (the fakes print their address).
    pub(crate) fn start(mut cmd: Command, name: &'static str) -> Res<(Service, String)> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start {name}: {e}"))?;
        let mut out = BufReader::new(child.stdout.take().ok_or("no stdout")?);
        let mut line = String::new();
        out.read_line(&mut line).map_err(err)?;
        // Keep draining stdout so that the child never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = String::new();
            let _ = out.read_to_string(&mut sink);
        });
        if line.trim().is_empty() {
            let _ = child.kill();
            return Err(format!("{name} did not start"));
        }
        Ok((Service { child }, line.trim().to_owned()))
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
