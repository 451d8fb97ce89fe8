//! Runs the SMTP sink on 127.0.0.1 until Ctrl-C or SIGTERM (for benchmarks and manual runs). Prints
//! `127.0.0.1:<port>` on the first line of stdout once it listens, and the number of accepted
//! messages when it stops.
//!
//! Usage: `fake-smtp [--port N] [--user U --password P] [--keep] [--no-pipelining]
//! [--drop-every K]` (messages are only counted unless `--keep` is given; `--no-pipelining`
//! leaves PIPELINING out of the EHLO reply, so clients send one command at a time;
//! `--drop-every K` accepts every k-th message and closes its connection without the final
//! `250`).

use std::io::Write;

use broadcast_testkit::smtp::{SmtpSink, SmtpSinkConfig};

const USAGE: &str = "usage: fake-smtp [--port N] [--user U --password P] [--keep] \
                     [--no-pipelining] [--drop-every K]";

#[tokio::main]
async fn main() {
    let mut port = 0u16;
    let mut user = None;
    let mut password = None;
    let mut keep = false;
    let mut no_pipelining = false;
    let mut drop_every = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .unwrap_or_else(|| fail(&format!("{name} needs a value")))
        };
        match arg.as_str() {
            "--port" => {
                let raw = value("--port");
                port = raw
                    .parse()
                    .unwrap_or_else(|_| fail(&format!("--port: `{raw}` is not a port")));
            }
            "--user" => user = Some(value("--user")),
            "--password" => password = Some(value("--password")),
            "--keep" => keep = true,
            "--no-pipelining" => no_pipelining = true,
            "--drop-every" => {
                let raw = value("--drop-every");
                let k: u32 =
                    raw.parse().ok().filter(|k| *k > 0).unwrap_or_else(|| {
                        fail(&format!("--drop-every: `{raw}` is not a count > 0"))
                    });
                drop_every = Some(k);
            }
            "-h" | "--help" => {
                println!("{USAGE}");
                return;
            }
            other => fail(&format!("unknown argument `{other}`")),
        }
    }
    let credentials = match (user, password) {
        (Some(u), Some(p)) => Some((u, p)),
        (None, None) => None,
        _ => fail("--user and --password go together"),
    };
    let config = SmtpSinkConfig {
        credentials,
        discard_messages: !keep,
        no_pipelining,
        drop_every,
    };
    let sink = SmtpSink::start_on(config, port)
        .await
        .unwrap_or_else(|e| fail(&format!("cannot listen on 127.0.0.1:{port}: {e}")));
    println!("{}", sink.addr());
    let _ = std::io::stdout().flush();
    stopped().await;
    eprintln!("fake-smtp: {:?}", sink.counts());
}

fn fail(message: &str) -> ! {
    eprintln!("fake-smtp: {message}\n{USAGE}");
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
