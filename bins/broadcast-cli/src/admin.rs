//! `admin create-user|set-password|list`: administrators of the admin panel. Passwords are read
//! without echo (or from stdin with `--password-stdin`), hashed with argon2id by
//! `broadcast_app::password` and never printed.

use std::io::BufRead as _;

use secrecy::{ExposeSecret as _, SecretString};
use serde_json::json;

use broadcast_app::password::hash_password;
use broadcast_domain::AdminStore as _;

use crate::app::{App, CliError, CliResult, invalid};
use crate::cli::AdminCmd;
use crate::documents::{self, AdminDoc};
use crate::output::{Table, json, opt};
use crate::term;

pub(crate) async fn admin(app: &App, cmd: AdminCmd, j: bool) -> CliResult<()> {
    match cmd {
        AdminCmd::CreateUser {
            username,
            password_stdin,
        } => {
            let password = read_password(password_stdin)?;
            let hash = hash_password(password.expose_secret())?;
            let admin = app
                .orchestrator
                .create_admin(&app.actor, &username, &hash)
                .await?;
            if j {
                json(&AdminDoc::from(&admin))?;
            } else {
                println!("created administrator {} ({})", admin.username, admin.id);
            }
        }
        AdminCmd::SetPassword {
            username,
            password_stdin,
        } => {
            let password = read_password(password_stdin)?;
            let hash = hash_password(password.expose_secret())?;
            let admin = app
                .orchestrator
                .set_admin_password(&app.actor, &username, &hash, "cli")
                .await?;
            if j {
                json(
                    &json!({ "id": admin.id, "username": admin.username, "password_changed": true }),
                )?;
            } else {
                println!(
                    "changed the password of administrator {}; every session of theirs in the \
                     panel has ended",
                    admin.username
                );
            }
        }
        AdminCmd::List => {
            let admins = app.store.list_admins().await?;
            if j {
                json(&documents::all::<_, AdminDoc>(&admins))?;
            } else {
                let mut t = Table::new(&["id", "username", "created", "last login"]);
                for a in &admins {
                    t.row(vec![
                        a.id.to_string(),
                        a.username.clone(),
                        a.created_at.format("%Y-%m-%d %H:%M").to_string(),
                        opt(a.last_login_at.map(|t| t.format("%Y-%m-%d %H:%M"))),
                    ]);
                }
                t.print();
                if admins.is_empty() {
                    println!("no administrators yet: `admin create-user <name>` adds one");
                }
            }
        }
    }
    Ok(())
}

/// The new password: the first line of stdin with `--password-stdin`, otherwise asked twice on
/// the terminal without echo.
fn read_password(from_stdin: bool) -> CliResult<SecretString> {
    if from_stdin {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .map_err(|e| CliError::Failed(anyhow::anyhow!("cannot read stdin: {e}")))?;
        let password = line.trim_end_matches(['\n', '\r']);
        if password.is_empty() {
            return Err(invalid(
                "--password-stdin: stdin has no password; give it on the first line",
            ));
        }
        return Ok(SecretString::from(password.to_owned()));
    }
    if !term::stdin_is_terminal() {
        return Err(invalid(
            "stdin is not a terminal: pass --password-stdin to read the password from it",
        ));
    }
    let ask = |prompt: &str| {
        rpassword::prompt_password(prompt)
            .map(SecretString::from)
            .map_err(|e| CliError::Failed(anyhow::anyhow!("cannot read the password: {e}")))
    };
    let first = ask("Password: ")?;
    let again = ask("Password (again): ")?;
    if first.expose_secret() != again.expose_secret() {
        return Err(invalid(
            "the two passwords differ; nothing was changed, try again",
        ));
    }
    Ok(first)
}
