//! `migrate`: applies, rolls back and reports the migrations of the broadcast database.

use std::process::ExitCode;

use anyhow::Context as _;
use broadcast_migration::{Migrator, connect, redact_url};
use clap::{Parser, Subcommand};
use sea_orm_migration::{MigrationStatus, MigratorTrait};

/// Applies, rolls back and reports the migrations of the broadcast database.
#[derive(Debug, Parser)]
#[command(name = "migrate", version)]
struct Args {
    /// Database URL: sqlite://<path> (file and directory are created) or postgres://...
    #[arg(
        long,
        env = "DATABASE_URL",
        default_value = "sqlite://data/broadcast.db",
        hide_env_values = true,
        global = true
    )]
    database_url: String,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Apply every pending migration.
    Up,
    /// Roll back the last applied migrations.
    Down {
        /// How many migrations to roll back.
        #[arg(short = 'n', long = "steps", default_value_t = 1,
              value_parser = clap::value_parser!(u32).range(1..))]
        steps: u32,
    },
    /// List every migration as applied or pending.
    Status,
    /// Drop every table of the database, then apply every migration.
    Fresh,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
        .and_then(|runtime| runtime.block_on(run(args)));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, skipping causes whose text a wrapper already repeats.
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line.replace(['\n', '\r'], " ")
}

async fn run(args: Args) -> anyhow::Result<()> {
    let shown_url = redact_url(&args.database_url);
    let db = connect(&args.database_url)
        .await
        .with_context(|| format!("cannot connect to {shown_url}"))?;
    println!("database: {shown_url}");
    match args.command {
        Command::Up => {
            let pending = Migrator::get_pending_migrations_read_only(&db).await?.len();
            Migrator::up(&db, None).await.context("migrate up failed")?;
            println!("applied {pending} migration(s)");
        }
        Command::Down { steps } => {
            let applied = Migrator::get_applied_migrations_read_only(&db).await?.len();
            Migrator::down(&db, Some(steps))
                .await
                .context("migrate down failed")?;
            let rolled_back = applied.min(steps as usize);
            println!("rolled back {rolled_back} migration(s)");
        }
        Command::Status => {
            for migration in Migrator::get_migration_with_status_read_only(&db).await? {
                let status = match migration.status() {
                    MigrationStatus::Applied => "applied",
                    MigrationStatus::Pending => "pending",
                };
                println!("{status:<8} {}", migration.name());
            }
        }
        Command::Fresh => {
            Migrator::fresh(&db).await.context("migrate fresh failed")?;
            let applied = Migrator::get_applied_migrations_read_only(&db).await?.len();
            println!("dropped every table and applied {applied} migration(s)");
        }
    }
    db.close().await.context("cannot close the database")?;
    Ok(())
}
