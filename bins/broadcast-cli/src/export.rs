//! `broadcast export`: every recipient row of a broadcast as CSV or JSON lines, read from the
//! ledger page by page so that memory does not grow with the broadcast.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::Serialize;

use broadcast_domain::{
    BroadcastId, BroadcastStore as _, ChannelKind, DeliveryStatus, DeliveryStore as _, Recipient,
    RecipientQuery,
};

use crate::activity::{Activity, Unit};
use crate::app::{App, CliError, CliResult, invalid};
use crate::cli::ExportFormat;
use crate::output::json;

/// Rows read per query.
const PAGE: u64 = 10_000;

/// One JSON lines row: the ledger row without the lease bookkeeping, with the fields of
/// [`broadcast_app::export::COLUMNS`] in their order.
#[derive(Debug, Serialize)]
struct Row<'a> {
    id: i64,
    broadcast_id: i64,
    user_id: i64,
    name: &'a str,
    registration_id: Option<i64>,
    channel: ChannelKind,
    address: &'a str,
    status: DeliveryStatus,
    skip_reason: Option<String>,
    attempts: i32,
    error_kind: Option<String>,
    last_error: Option<&'a str>,
    provider_message_id: Option<&'a str>,
    sent_at: Option<String>,
    next_attempt_at: String,
    uncertain_sends: i32,
    updated_at: String,
}

impl<'a> Row<'a> {
    fn new(r: &'a Recipient, name: &'a str) -> Self {
        let time = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339();
        Self {
            id: r.id,
            broadcast_id: r.broadcast_id,
            user_id: r.user_id,
            name,
            registration_id: r.registration_id,
            channel: r.channel,
            address: &r.address,
            status: r.status,
            skip_reason: r.skip_reason.map(|s| s.to_string()),
            attempts: r.attempts,
            error_kind: r.error_kind.map(|k| k.to_string()),
            last_error: r.last_error.as_deref(),
            provider_message_id: r.provider_message_id.as_deref(),
            sent_at: r.sent_at.map(time),
            next_attempt_at: time(r.next_attempt_at),
            uncertain_sends: r.uncertain_sends,
            updated_at: time(r.updated_at),
        }
    }
}

/// Where the rows go.
enum Sink {
    Csv(Box<csv::Writer<Box<dyn Write>>>),
    Jsonl(Box<dyn Write>),
}

impl Sink {
    fn new(format: ExportFormat, out: Box<dyn Write>) -> std::io::Result<Self> {
        Ok(match format {
            ExportFormat::Csv => {
                let mut w = csv::WriterBuilder::new()
                    .has_headers(false)
                    .from_writer(out);
                w.write_record(broadcast_app::export::COLUMNS)?;
                Sink::Csv(Box::new(w))
            }
            ExportFormat::Jsonl => Sink::Jsonl(out),
        })
    }

    fn write(&mut self, r: &Recipient, name: &str) -> std::io::Result<()> {
        match self {
            Sink::Csv(w) => w
                .write_record(broadcast_app::export::record(r, name))
                .map_err(std::io::Error::other),
            Sink::Jsonl(w) => {
                serde_json::to_writer(&mut *w, &Row::new(r, name))?;
                w.write_all(b"\n")
            }
        }
    }

    fn finish(self) -> std::io::Result<()> {
        match self {
            Sink::Csv(mut w) => w.flush(),
            Sink::Jsonl(mut w) => w.flush(),
        }
    }
}

/// The export options.
#[derive(Debug)]
pub(crate) struct Export {
    pub(crate) id: BroadcastId,
    pub(crate) format: ExportFormat,
    pub(crate) output: Option<PathBuf>,
    pub(crate) status: Option<String>,
    pub(crate) channel: Option<String>,
}

pub(crate) async fn export(app: &App, e: Export, j: bool) -> CliResult<()> {
    app.store.get_broadcast(e.id).await?;
    let query = RecipientQuery {
        status: e
            .status
            .as_deref()
            .map(|s| s.parse::<DeliveryStatus>().map_err(|e| invalid(e.0)))
            .transpose()?,
        channel: e
            .channel
            .as_deref()
            .map(|s| s.parse::<ChannelKind>().map_err(|e| invalid(e.0)))
            .transpose()?,
        error_kind: None,
        offset: 0,
        limit: PAGE,
    };
    app.orchestrator.export(&app.actor, e.id, &query).await?;
    if let Some(path) = &e.output
        && path.is_dir()
    {
        return Err(invalid(format!(
            "--output {} is a directory; give a file name",
            path.display()
        )));
    }
    let partial = e.output.as_deref().map(partial_path);
    let out: Box<dyn Write> = match &partial {
        Some(p) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(p)
                .map_err(|err| invalid(format!("cannot write {}: {err}", p.display())))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    };
    let written = write_rows(app, e.id, e.format, out, &query).await;
    let rows = match (written, &partial) {
        (Ok(rows), _) => rows,
        // `| head`: the reader has what it wanted.
        (Err(Failure::Io(err)), None) if err.kind() == std::io::ErrorKind::BrokenPipe => {
            return Ok(());
        }
        (Err(failure), partial) => {
            if let Some(p) = partial {
                let _ = std::fs::remove_file(p);
            }
            return Err(match failure {
                Failure::Cli(c) => c,
                Failure::Io(err) => {
                    CliError::Failed(anyhow::anyhow!("cannot write the export: {err}"))
                }
            });
        }
    };
    if let (Some(partial), Some(path)) = (&partial, &e.output) {
        std::fs::rename(partial, path).map_err(|err| {
            CliError::Failed(anyhow::anyhow!(
                "cannot rename {}: {err}",
                partial.display()
            ))
        })?;
        if j {
            json(&serde_json::json!({
                "broadcast_id": e.id,
                "format": match e.format { ExportFormat::Csv => "csv", ExportFormat::Jsonl => "jsonl" },
                "rows": rows,
                "output": path,
            }))?;
        } else {
            println!(
                "exported {rows} rows of broadcast {} to {}",
                e.id,
                path.display()
            );
        }
    }
    Ok(())
}

/// `FILE.partial` beside `FILE`: the export is written there and renamed when complete, so a
/// file with the asked name is always whole.
fn partial_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    path.with_file_name(name)
}

enum Failure {
    Cli(CliError),
    Io(std::io::Error),
}

impl From<std::io::Error> for Failure {
    fn from(e: std::io::Error) -> Self {
        Self::Io(e)
    }
}

impl From<broadcast_domain::Error> for Failure {
    fn from(e: broadcast_domain::Error) -> Self {
        Self::Cli(e.into())
    }
}

/// Writes every page; returns the number of rows. Pages after the first are read by id
/// (`list_recipients_after`), so each costs the same however deep into the ledger it is.
async fn write_rows(
    app: &App,
    id: BroadcastId,
    format: ExportFormat,
    out: Box<dyn Write>,
    query: &RecipientQuery,
) -> Result<u64, Failure> {
    let mut sink = Sink::new(format, out)?;
    let first = app.store.list_recipients(id, query).await?;
    let total = first.total;
    let activity =
        (total > PAGE).then(|| Activity::start(Unit::Items, 0, Some(total), "rows exported"));
    let mut page = first.items;
    let mut rows = 0;
    let audience = &*app.orchestrator.ports().audience;
    loop {
        let names = broadcast_app::names::user_names(audience, &page).await?;
        for r in &page {
            sink.write(r, names.get(&r.user_id).map_or("", String::as_str))?;
        }
        rows += page.len() as u64;
        if let Some(a) = &activity {
            a.update(rows, Some(total.max(rows)), "rows exported");
        }
        let Some(last) = page.last().filter(|_| page.len() as u64 >= query.limit) else {
            break;
        };
        page = app.store.list_recipients_after(id, query, last.id).await?;
    }
    sink.finish()?;
    if let Some(a) = activity {
        a.finish(None);
    }
    Ok(rows)
}
