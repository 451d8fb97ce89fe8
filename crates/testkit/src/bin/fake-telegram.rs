//! Runs the fake Telegram Bot API server on 127.0.0.1 until Ctrl-C or SIGTERM (for benchmarks and manual
//! runs). Prints `127.0.0.1:<port>` on the first line of stdout once it listens.
//!
//! Usage: `fake-telegram [--port N] [--token T] [--rate N] [--paid-rate N] [--no-limits]
//! [--drop-every K] [--delay MS]` (`--rate` and `--paid-rate` are messages in any second;
//! `--drop-every K` accepts every k-th message and closes its connection without an answer;
//! `--delay MS` counts each message about MS ms after it reached the fake and answers it about
//! MS ms later, as a server that far away would).
//! Statistics: `GET http://127.0.0.1:<port>/_fake/stats`.

use std::io::Write;

use broadcast_testkit::telegram::{FakeTelegram, FakeTelegramConfig};

const USAGE: &str = "usage: fake-telegram [--port N] [--token T] [--rate N] [--paid-rate N] \
                     [--no-limits] [--drop-every K] [--delay MS]";

#[tokio::main]
async fn main() {
    let mut config = FakeTelegramConfig::default();
    let mut port = 0u16;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| fail(&format!("{name} needs a value")))
        };
        match arg.as_str() {
            "--port" => port = parse(&value("--port"), "--port"),
            "--token" => config.token = value("--token"),
            "--rate" => config.per_second = parse(&value("--rate"), "--rate"),
            "--paid-rate" => config.paid_per_second = parse(&value("--paid-rate"), "--paid-rate"),
            "--no-limits" => config.enforce_limits = false,
            "--drop-every" => {
                let k: u32 = parse(&value("--drop-every"), "--drop-every");
                if k == 0 {
                    fail("--drop-every: K must be at least 1");
                }
                config.drop_every = Some(k);
            }
            "--delay" => {
                let ms: u64 = parse(&value("--delay"), "--delay");
                config.one_way_delay = std::time::Duration::from_millis(ms);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            other => fail(&format!("unknown argument `{other}`")),
        }
    }
    let fake = FakeTelegram::start_on(config, port)
        .await
        .unwrap_or_else(|e| fail(&format!("cannot listen on 127.0.0.1:{port}: {e}")));
    println!("{}", fake.addr());
    let _ = std::io::stdout().flush();
    stopped().await;
}

fn parse<T: std::str::FromStr>(raw: &str, name: &str) -> T {
    raw.parse()
        .unwrap_or_else(|_| fail(&format!("{name}: `{raw}` is not a valid number")))
}

fn fail(message: &str) -> ! {
    eprintln!("fake-telegram: {message}\n{USAGE}");
    std::process::exit(2);
}

/// Waits for Ctrl-C or SIGTERM.
async fn stopped() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
