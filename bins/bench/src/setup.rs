//! Shared setup: the generated databases (SQLite files, PostgreSQL databases), the
//! environment of a run, `broadcast-cli` invocations, and the secrets every scenario uses.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use broadcast_domain::{DeliveryStatus, UnsubscribeLinks};
use sea_orm::{ConnectionTrait, DatabaseBackend, DatabaseConnection, Statement};
use serde_json::Value;

use crate::{Res, err};

/// The fake Telegram server's default token.
pub(crate) const BOT_TOKEN: &str = "123456:TEST-token_abcdefghijklmnopqrstuvwxyz";
/// Signs the unsubscribe links of the e-mails (and the admin panel's cookies).
pub(crate) const SECRET: &str = "bench-secret-key-0123456789abcdef-0123456789abcdef";
pub(crate) const PUBLIC_URL: &str = "https://broadcast.example.org";
const TEMPLATE: &str = "registration-reminder";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        }
    }
}

/// A generated audience in a migrated database with the demo template, copied for each run.
#[derive(Debug)]
pub(crate) struct Base {
    backend: Backend,
    /// SQLite: the file; PostgreSQL: the database name.
    location: String,
}

/// A database of one run (a copy of a [`Base`]).
#[derive(Debug)]
pub(crate) struct RunDb {
    backend: Backend,
    pub(crate) url: String,
    location: String,
}

pub(crate) struct Env {
    pub(crate) exe_dir: PathBuf,
    pub(crate) root: PathBuf,
    pub(crate) work: tempfile::TempDir,
    pub(crate) server_url: String,
    pub(crate) postgres: bool,
    pub(crate) ticks: f64,
    pub(crate) rt: tokio::runtime::Runtime,
    pub(crate) passthrough: Vec<(String, String)>,
}

fn server_base(url: &str) -> &str {
    url.rsplit_once('/').map_or(url, |(base, _)| base)
}

impl Env {
    pub(crate) fn exe(&self, name: &str) -> PathBuf {
        self.exe_dir.join(name)
    }

    fn pg_url(&self, db: &str) -> String {
        format!("{}/{db}", server_base(&self.server_url))
    }

    async fn admin(&self) -> Res<DatabaseConnection> {
        sea_orm::Database::connect(self.server_url.as_str())
            .await
            .map_err(err)
    }

    /// A fresh database with `users` generated users (one registration each to competition 1)
    /// and the demo template. `flags`: 1 % without e-mail, some unsubscribed and blocked.
    pub(crate) fn make_base(&self, backend: Backend, users: u64, flags: bool) -> Res<Base> {
        let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
        let (location, url) = match backend {
            Backend::Sqlite => {
                let path = self.work.path().join(format!("{name}.db"));
                let url = format!("sqlite://{}?mode=rwc", path.display());
                (path.display().to_string(), url)
            }
            Backend::Postgres => {
                self.rt.block_on(async {
                    self.admin()
                        .await?
                        .execute_unprepared(&format!("CREATE DATABASE {name}"))
                        .await
                        .map_err(err)
                })?;
                (name.clone(), self.pg_url(&name))
            }
        };
        let started = Instant::now();
        self.rt.block_on(async {
            let conn = broadcast_migration::connect(&url).await.map_err(err)?;
            <broadcast_migration::Migrator as sea_orm_migration::MigratorTrait>::up(&conn, None)
                .await
                .map_err(err)?;
            generate(&conn, users, flags).await?;
            conn.close().await.map_err(err)
        })?;
        eprintln!(
            "  generated {users} users on {} in {:.1} s",
            backend.name(),
            started.elapsed().as_secs_f64()
        );
        let template = self
            .root
            .join(format!("fixtures/templates/{TEMPLATE}.json"));
        self.cli(&url, &[])
            .args(["template", "create", "--from-json"])
            .arg(template)
            .output()
            .map_err(err)
            .and_then(|o| check(&o, "template create"))?;
        if backend == Backend::Sqlite {
            // Everything into the main file, so that a copy of it is complete.
            self.rt.block_on(async {
                let conn = broadcast_migration::connect(&url).await.map_err(err)?;
                conn.execute_unprepared("PRAGMA wal_checkpoint(TRUNCATE)")
                    .await
                    .map_err(err)?;
                conn.close().await.map_err(err)
            })?;
        }
        Ok(Base { backend, location })
    }

    /// A copy of a base for one run.
    pub(crate) fn run_db(&self, base: &Base) -> Res<RunDb> {
        let name = format!("bench_{}", uuid::Uuid::new_v4().simple());
        match base.backend {
            Backend::Sqlite => {
                let path = self.work.path().join(format!("{name}.db"));
                std::fs::copy(&base.location, &path).map_err(err)?;
                Ok(RunDb {
                    backend: base.backend,
                    url: format!("sqlite://{}?mode=rwc", path.display()),
                    location: path.display().to_string(),
                })
            }
            Backend::Postgres => {
                self.rt.block_on(async {
                    self.admin()
                        .await?
                        .execute_unprepared(&format!(
                            "CREATE DATABASE {name} TEMPLATE {}",
                            base.location
                        ))
                        .await
                        .map_err(err)
                })?;
                Ok(RunDb {
                    backend: base.backend,
                    url: self.pg_url(&name),
                    location: name,
                })
            }
        }
    }

    pub(crate) fn drop_db(&self, db: &RunDb) {
        self.drop_location(db.backend, &db.location);
    }

    pub(crate) fn drop_base(&self, base: &Base) {
        self.drop_location(base.backend, &base.location);
    }

    fn drop_location(&self, backend: Backend, location: &str) {
        match backend {
            Backend::Sqlite => {
                for suffix in ["", "-wal", "-shm"] {
                    let _ = std::fs::remove_file(format!("{location}{suffix}"));
                }
            }
            Backend::Postgres => {
                let _ = self.rt.block_on(async {
                    self.admin()
                        .await?
                        .execute_unprepared(&format!(
                            "DROP DATABASE IF EXISTS {location} WITH (FORCE)"
                        ))
                        .await
                        .map_err(err)
                });
            }
        }
    }

    /// `broadcast-cli` with a clean environment: the database, the outbox under the work
    /// directory, quiet logs, no colours, plus `extra`.
    pub(crate) fn cli(&self, url: &str, extra: &[(&str, String)]) -> Command {
        let mut cmd = Command::new(self.exe("broadcast-cli"));
        cmd.current_dir(self.work.path())
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.work.path())
            .env("DATABASE_URL", url)
            .env("OUTBOX_DIR", self.work.path().join("outbox"))
            .env("LOG", "warn")
            .env("NO_COLOR", "1");
        for (k, v) in &self.passthrough {
            cmd.env(k, v);
        }
        for (k, v) in extra {
            cmd.env(k, v);
        }
        cmd
    }

    /// Creates a draft broadcast of the demo template to everyone registered for competition 1.
    pub(crate) fn create_broadcast(&self, db: &RunDb, channels: &str) -> Res<i64> {
        let out = self
            .cli(&db.url, &[])
            .args(["--json", "broadcast", "create", "--name", "Bench"])
            .args(["--template", TEMPLATE, "--channels", channels])
            .args(["--competition", "1"])
            .output()
            .map_err(err)?;
        let text = check(&out, "broadcast create")?;
        let v: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        v["id"]
            .as_i64()
            .ok_or_else(|| format!("no id in `broadcast create` output: {text}"))
    }

    pub(crate) fn launch_cmd(&self, db: &RunDb, id: i64) -> Command {
        let mut cmd = self.cli(&db.url, &[]);
        cmd.args(["--json", "broadcast", "launch", &id.to_string(), "--yes"]);
        cmd
    }

    pub(crate) fn launch(&self, db: &RunDb, id: i64) -> Res<()> {
        let out = self.launch_cmd(db, id).output().map_err(err)?;
        check(&out, "broadcast launch").map(drop)
    }

    pub(crate) fn count_status(&self, db: &RunDb, id: i64, status: DeliveryStatus) -> Res<u64> {
        self.rt.block_on(async {
            let conn = sea_orm::Database::connect(db.url.as_str())
                .await
                .map_err(err)?;
            let backend = conn.get_database_backend();
            let sql = match backend {
                DatabaseBackend::Postgres => "SELECT COUNT(*) AS n FROM broadcast_recipients WHERE broadcast_id = $1 AND status = $2",
                _ => "SELECT COUNT(*) AS n FROM broadcast_recipients WHERE broadcast_id = ? AND status = ?",
            };
            let row = conn
                .query_one_raw(Statement::from_sql_and_values(
                    backend,
                    sql,
                    [id.into(), status.as_str().into()],
                ))
                .await
                .map_err(err)?
                .ok_or("no count")?;
            let n: i64 = row.try_get("", "n").map_err(err)?;
            conn.close().await.map_err(err)?;
            Ok(u64::try_from(n).unwrap_or(0))
        })
    }
}

pub(crate) fn check(out: &std::process::Output, what: &str) -> Res<String> {
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(format!(
            "`{what}` failed: {}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        ))
    }
}

/// Fills `competitions`, `users` and `registrations` with set-based statements.
async fn generate(conn: &DatabaseConnection, users: u64, flags: bool) -> Res<()> {
    let backend = conn.get_database_backend();
    let now = chrono::Utc::now();
    let (p, series) = match backend {
        DatabaseBackend::Postgres => ("$1", format!("generate_series(1, {users}) AS n(i)")),
        _ => ("?1", "n".to_owned()),
    };
    let with = match backend {
        DatabaseBackend::Postgres => String::new(),
        _ => format!(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {users}) "
        ),
    };
    let flag = if flags { "TRUE" } else { "FALSE" };
    let statements = [
        format!(
            "INSERT INTO competitions (slug, name, starts_on, city, country, created_at) \
             VALUES ('bench-cup-2027', 'Bench Cup 2027', '2027-05-22', 'Kraków', 'Poland', {p})"
        ),
        format!(
            "{with}INSERT INTO users (external_id, telegram_chat_id, email, first_name, last_name, \
             username, language, country, city, attributes, telegram_blocked_at, \
             email_unsubscribed_at, created_at, updated_at) \
             SELECT 'bench-' || i, 1000000000 + i, \
             CASE WHEN {flag} AND i % 100 = 0 THEN NULL ELSE 'user' || i || '@example.org' END, \
             'Anna' || i, 'Schmidt', 'user' || i, 'de', 'Poland', 'Kraków', '{{}}', \
             CASE WHEN {flag} AND i % 500 = 7 THEN {p} END, \
             CASE WHEN {flag} AND i % 250 = 3 THEN {p} END, {p}, {p} FROM {series}"
        ),
        "INSERT INTO registrations (user_id, competition_id, role, status, created_at, \
         updated_at) SELECT id, 1, CASE id % 5 WHEN 0 THEN 'judge' WHEN 1 THEN 'mentor' \
         ELSE 'participant' END, 'confirmed', created_at, created_at FROM users"
            .to_owned(),
    ];
    for sql in statements {
        conn.execute_raw(Statement::from_sql_and_values(backend, sql, [now.into()]))
            .await
            .map_err(err)?;
    }
    if backend == DatabaseBackend::Postgres {
        // Statistics as autovacuum would have them after a large import.
        conn.execute_unprepared("ANALYZE").await.map_err(err)?;
    }
    Ok(())
}

pub(crate) fn backends(env: &Env) -> Vec<Backend> {
    if env.postgres {
        vec![Backend::Sqlite, Backend::Postgres]
    } else {
        vec![Backend::Sqlite]
    }
}

pub(crate) fn links() -> Res<Arc<dyn UnsubscribeLinks>> {
    let url = url::Url::parse(PUBLIC_URL).map_err(err)?;
    let links = broadcast_channels::SignedUnsubscribeLinks::new(
        Some(url),
        secrecy::SecretString::from(SECRET.to_owned()),
    )
    .map_err(err)?;
    Ok(Arc::new(links))
}
