//! `admin`: the admin panel's broadcast page and API documents under load from four clients.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::http::{admin_login, http_get};
use crate::report::Row;
use crate::setup::{Backend, Env, SECRET, check};
use crate::{Plan, Res, err};

/// Bearer token of the admin panel's API.
const API_TOKEN: &str = "bench-api-token-0123456789abcdef";

pub(crate) fn scenario_admin(env: &Env, plan: &Plan) -> Res<Vec<Row>> {
    let name = "admin web: broadcast page + API document + statistics, p99 under load";
    let exe = env.exe("admin-web");
    if !exe.exists() {
        return Ok(vec![Row::not_measured(
            name,
            if plan.mode == "full" {
                1_000_000
            } else {
                100_000
            },
            "admin panel not built yet (no release admin-web binary)",
        )]);
    }
    let rows_n = if plan.mode == "full" {
        1_000_000
    } else {
        100_000
    };
    let base = env.make_base(Backend::Sqlite, rows_n, true)?;
    let db = env.run_db(&base)?;
    let id = env.create_broadcast(&db, "email")?;
    env.launch(&db, id)?;
    let mut create = env.cli(&db.url, &[]);
    create
        .args(["admin", "create-user", "bench", "--password-stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = create.spawn().map_err(err)?;
    child
        .stdin
        .take()
        .ok_or("no stdin")?
        .write_all(b"bench-password-0123456789\n")
        .map_err(err)?;
    let out = child.wait_with_output().map_err(err)?;
    check(&out, "admin create-user")?;
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(err)?;
        l.local_addr().map_err(err)?.port()
    };
    let addr = format!("127.0.0.1:{port}");
    let mut server = Command::new(&exe);
    server
        .current_dir(env.work.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", &db.url)
        .env("ADMIN_BIND", &addr)
        .env("ADMIN_SECRET_KEY", SECRET)
        .env("ADMIN_API_TOKENS", API_TOKEN)
        .env("ADMIN_RUN_WORKER", "false")
        .env("OUTBOX_DIR", env.work.path().join("outbox"))
        .env("LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    let mut server = server.spawn().map_err(err)?;
    let auth = format!("Bearer {API_TOKEN}");
    let password = "bench-password-0123456789";
    let ready = Instant::now();
    while http_get(&addr, "/healthz", &[]).is_err() {
        if ready.elapsed() > Duration::from_secs(20) {
            let _ = server.kill();
            let _ = server.wait();
            return Ok(vec![Row::not_measured(
                name,
                rows_n,
                "admin-web did not answer /healthz",
            )]);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let cookie = admin_login(&addr, "bench", password)?;
    // The page an organiser opens, and the two documents of the API behind it.
    let paths = [
        (format!("/broadcasts/{id}"), ("Cookie", cookie.as_str())),
        (
            format!("/api/v1/broadcasts/{id}"),
            ("Authorization", auth.as_str()),
        ),
        (
            format!("/api/v1/broadcasts/{id}/stats"),
            ("Authorization", auth.as_str()),
        ),
    ];
    // Load from this process (a second process to the server): 4 clients in a loop.
    let deadline = Instant::now() + Duration::from_secs(plan.admin_seconds);
    let samples: Vec<Res<Vec<f64>>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|c| {
                let (addr, paths) = (&addr, &paths);
                s.spawn(move || {
                    let mut v = Vec::new();
                    let mut i = c;
                    while Instant::now() < deadline {
                        let (path, header) = &paths[i % paths.len()];
                        i += 1;
                        let t = Instant::now();
                        let (status, _) = http_get(addr, path, &[*header])?;
                        if status != 200 {
                            return Err(format!("{path}: HTTP {status}"));
                        }
                        v.push(t.elapsed().as_secs_f64() * 1000.0);
                    }
                    Ok(v)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|_| Err("client panicked".into())))
            .collect()
    });
    let _ = server.kill();
    let _ = server.wait();
    env.drop_db(&db);
    env.drop_base(&base);
    let mut all = Vec::new();
    for s in samples {
        match s {
            Ok(v) => all.extend(v),
            Err(e) => {
                return Ok(vec![Row::not_measured(
                    name,
                    rows_n,
                    format!("requests failed: {e}"),
                )]);
            }
        }
    }
    all.sort_by(f64::total_cmp);
    let p = |q: f64| all[((all.len() as f64 * q).ceil() as usize).clamp(1, all.len()) - 1];
    let p99 = p(0.99);
    let mut row = Row::new(name, rows_n);
    row.rate = Some(all.len() as f64 / plan.admin_seconds as f64);
    row.unit = "req/s";
    row.target = "p99 < 50 ms".into();
    row.met = Some(p99 < 50.0);
    row.note = format!(
        "p50 {:.1} ms, p99 {p99:.1} ms over {} requests, 4 clients; N = ledger rows",
        p(0.5),
        all.len()
    );
    Ok(vec![row])
}
