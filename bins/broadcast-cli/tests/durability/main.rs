//! Process-level tests of the durable delivery engine (issue 5): the real `broadcast-cli`
//! binary, with workers as child processes that are killed with SIGKILL, stopped with SIGTERM
//! and run three at a time on PostgreSQL, against the fake Telegram server and the SMTP sink of
//! `broadcast-testkit` started in-process on 127.0.0.1.
//!
//! The tests measure rates and delays, so they run one at a time (see [`SERIAL`]) to keep the
//! two cores for the processes under test.

mod breaker;
mod crash;
mod faults;
mod graceful;
mod harness;
mod lanes;
mod media;
mod retry;
mod schedule;
mod stopping;
mod strict_pacing;
mod workers;

/// Held by every test for its whole run: timing results on a busy 2-core machine mean nothing
/// when another test's workers compete for the CPU.
pub(crate) static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
