//! Integration tests of the real channels through the `broadcast-cli` binary: Telegram through
//! the fake Bot API server and e-mail through the SMTP sink of `broadcast-testkit`, both started
//! in-process on 127.0.0.1, a fresh SQLite database per test, and the binary run as an operator
//! would run it (`audience import`, `template create`, `broadcast create|run|stats|recipients`,
//! `audience list`), with `LOG=debug`.

mod delivery;
mod errors;
mod harness;
mod migration;
mod mime;
mod pacing;
mod secrets;
