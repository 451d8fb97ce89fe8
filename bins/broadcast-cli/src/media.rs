//! `media add|list|show|rm`: the media library, files a template can send. An upload's type
//! comes from its bytes, and one that is not what its name says, empty or too large for
//! Telegram is refused with what is wrong (`broadcast_domain::NewMedium::check`).

use std::path::Path;

use broadcast_app::documents::MediumDoc;
use broadcast_domain::human_size;

use crate::app::{App, CliError, CliResult, invalid};
use crate::cli::MediaCmd;
use crate::documents;
use crate::output::{Table, json};

pub(crate) async fn media(app: &App, cmd: MediaCmd, j: bool) -> CliResult<()> {
    match cmd {
        MediaCmd::Add {
            file,
            name,
            replace,
        } => {
            let bytes = read(&file)?;
            let name = match name {
                Some(name) => name,
                None => file
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .ok_or_else(|| invalid(format!("{}: not a file name", file.display())))?,
            };
            let medium = app
                .orchestrator
                .add_medium(&app.actor, &name, bytes, replace)
                .await?;
            if j {
                json(&MediumDoc::from(&medium))?;
            } else {
                println!(
                    "{} medium {} `{}`: {} ({}, {}), sha256 {}",
                    if replace { "saved" } else { "added" },
                    medium.id,
                    medium.name,
                    medium.kind,
                    medium.content_type,
                    human_size(medium.size),
                    medium.sha256
                );
            }
        }
        MediaCmd::List => {
            let media = app.orchestrator.list_media().await?;
            if j {
                json(&documents::all::<_, MediumDoc>(&media))?;
            } else {
                let mut t = Table::new(&["id", "name", "kind", "type", "size", "updated"]);
                for m in &media {
                    t.row(vec![
                        m.id.to_string(),
                        m.name.clone(),
                        m.kind.to_string(),
                        m.content_type.clone(),
                        human_size(m.size),
                        m.updated_at.format("%Y-%m-%d %H:%M").to_string(),
                    ]);
                }
                t.print();
                if media.is_empty() {
                    println!("the media library is empty: `media add FILE` adds a file");
                }
            }
        }
        MediaCmd::Show { medium, out } => {
            let medium = app.orchestrator.medium(&medium).await?;
            if let Some(out) = &out {
                let bytes = app.orchestrator.medium_bytes(&medium).await?;
                std::fs::write(out, &bytes).map_err(|e| {
                    CliError::Failed(anyhow::anyhow!("cannot write {}: {e}", out.display()))
                })?;
            }
            if j {
                json(&MediumDoc::from(&medium))?;
            } else {
                println!("medium {} `{}`", medium.id, medium.name);
                println!("  kind:     {} ({})", medium.kind, medium.content_type);
                println!(
                    "  size:     {} ({} bytes)",
                    human_size(medium.size),
                    medium.size
                );
                println!("  sha256:   {}", medium.sha256);
                println!(
                    "  added:    {} by {}",
                    medium.created_at.format("%Y-%m-%d %H:%M:%S UTC"),
                    medium.created_by
                );
                println!(
                    "  updated:  {}",
                    medium.updated_at.format("%Y-%m-%d %H:%M:%S UTC")
                );
                if let Some(out) = &out {
                    println!("  written to {}", out.display());
                }
            }
        }
        MediaCmd::Rm { medium } => {
            let found = app.orchestrator.medium(&medium).await?;
            let removed = app.orchestrator.remove_medium(&app.actor, found.id).await?;
            if j {
                json(&MediumDoc::from(&removed))?;
            } else {
                println!("removed medium {} `{}`", removed.id, removed.name);
            }
        }
    }
    Ok(())
}

/// The bytes of `file`, or an error naming it.
fn read(file: &Path) -> CliResult<Vec<u8>> {
    std::fs::read(file).map_err(|e| invalid(format!("cannot read {}: {e}", file.display())))
}
