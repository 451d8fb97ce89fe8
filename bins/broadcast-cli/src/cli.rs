//! Command-line interface: every command, flag and help text.

use std::path::PathBuf;

use broadcast_domain::ChannelPolicy;
use clap::{Args, Parser, Subcommand, ValueEnum};

/// Send announcements over Telegram and e-mail to chosen parts of an audience.
#[derive(Debug, Parser)]
#[command(
    name = "broadcast-cli",
    version,
    about,
    long_about = None,
    after_help = "Exit codes: 0 success, 2 invalid input (fix the command), 1 any other failure.\n\
                  Settings come from the environment and .env (see .env.example); \
                  the JSON documents of --json are described in docs/cli.md.\n\
                  Colours only on a terminal, never with NO_COLOR set."
)]
pub(crate) struct Cli {
    /// Database URL (SQLite or PostgreSQL).
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        default_value = "sqlite://data/broadcast.db",
        hide_env_values = true
    )]
    pub(crate) database_url: String,

    /// Print one JSON document instead of tables.
    #[arg(long, global = true)]
    pub(crate) json: bool,

    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Run a demo broadcast end to end: migrate, load the demo audience, send, show statistics.
    ///
    /// Example: broadcast-cli demo --reset
    Demo {
        /// Start over: empty the database and the outbox first.
        #[arg(long)]
        reset: bool,
    },
    /// Manage message templates.
    #[command(subcommand)]
    Template(TemplateCmd),
    /// Create, launch and follow broadcasts.
    #[command(subcommand)]
    Broadcast(BroadcastCmd),
    /// Import and inspect the audience.
    #[command(subcommand)]
    Audience(AudienceCmd),
    /// Manage the administrators of the admin panel.
    #[command(subcommand)]
    Admin(AdminCmd),
    /// Manage the media library: files templates can send (posters, PDFs).
    #[command(subcommand)]
    Media(MediaCmd),
    /// Print a shell completion script.
    ///
    /// Example: broadcast-cli completions bash > ~/.local/share/bash-completion/completions/broadcast-cli
    ///
    /// zsh: broadcast-cli completions zsh > "${fpath[1]}/_broadcast-cli";
    /// fish: broadcast-cli completions fish > ~/.config/fish/completions/broadcast-cli.fish
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Run a worker: deliver every running broadcast and launch scheduled ones when due.
    ///
    /// Any number of workers may share one PostgreSQL database. SIGINT/SIGTERM stop it
    /// gracefully: no new claims, in-flight sends finish and are recorded.
    ///
    /// Example: broadcast-cli worker --concurrency 32
    Worker {
        /// Messages in flight at once per channel (default WORKER_CONCURRENCY; unset, 16 or a
        /// tenth of a rate-limited channel's rate if more).
        #[arg(long)]
        concurrency: Option<usize>,
        /// Process what is due now, then exit.
        #[arg(long)]
        once: bool,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum TemplateCmd {
    /// Create a template (validated before it is saved).
    ///
    /// Example: broadcast-cli template create --name reminder --telegram-text 'Hi {{ first_name }}' --subject 'Reminder' --text 'Hi {{ first_name }}'
    Create(TemplateArgs),
    /// Change parts of a template; parts not given stay as they are.
    ///
    /// Example: broadcast-cli template update reminder --subject 'New subject'
    Update {
        /// Template id or name.
        template: String,
        #[command(flatten)]
        args: TemplateArgs,
    },
    /// List templates.
    ///
    /// Example: broadcast-cli template list --json
    List,
    /// Show one template.
    ///
    /// Example: broadcast-cli template show reminder
    Show {
        /// Template id or name.
        template: String,
    },
    /// Check a stored template, or a JSON template file, for errors.
    ///
    /// Example: broadcast-cli template validate --file fixtures/templates/reminder.json
    Validate {
        /// Template id or name.
        template: Option<String>,
        /// A template JSON file instead of a stored template.
        #[arg(long, conflicts_with = "template")]
        file: Option<PathBuf>,
    },
    /// Render a template for a few users of an audience, without sending.
    ///
    /// Example: broadcast-cli template preview reminder --role judge --limit 2
    Preview {
        /// Template id or name.
        template: String,
        #[command(flatten)]
        filter: FilterArgs,
        /// How many recipients to render for.
        #[arg(long, default_value_t = 3)]
        limit: u64,
    },
    /// Delete a template (launched broadcasts keep their frozen copy).
    ///
    /// Example: broadcast-cli template delete reminder
    Delete {
        /// Template id or name.
        template: String,
    },
}

/// The parts of a template, given inline or from files.
#[derive(Debug, Args, Default)]
pub(crate) struct TemplateArgs {
    /// Read every field from a template JSON file (see fixtures/README.md); flags override it.
    #[arg(long)]
    pub(crate) from_json: Option<PathBuf>,
    /// Unique name.
    #[arg(long)]
    pub(crate) name: Option<String>,
    /// What the template is for.
    #[arg(long)]
    pub(crate) description: Option<String>,
    /// Telegram text.
    #[arg(long)]
    pub(crate) telegram_text: Option<String>,
    /// Telegram text from a file.
    #[arg(long, conflicts_with = "telegram_text")]
    pub(crate) telegram_file: Option<PathBuf>,
    /// Telegram parse mode: html, markdownv2 or plain.
    #[arg(long)]
    pub(crate) parse_mode: Option<String>,
    /// Show a preview of the first link in Telegram messages.
    #[arg(long)]
    pub(crate) link_preview: Option<bool>,
    /// A medium of the library (`media list`) the Telegram message shows, with its text as
    /// the caption (at most 1024 characters); an empty name takes it away.
    #[arg(long, value_name = "NAME")]
    pub(crate) medium: Option<String>,
    /// E-mail subject.
    #[arg(long)]
    pub(crate) subject: Option<String>,
    /// E-mail HTML body.
    #[arg(long)]
    pub(crate) html: Option<String>,
    /// E-mail HTML body from a file.
    #[arg(long, conflicts_with = "html")]
    pub(crate) html_file: Option<PathBuf>,
    /// E-mail plain-text body.
    #[arg(long)]
    pub(crate) text: Option<String>,
    /// E-mail plain-text body from a file.
    #[arg(long, conflicts_with = "text")]
    pub(crate) text_file: Option<PathBuf>,
}

/// An audience filter, as JSON or as flags (flags are combined with AND, repeated values with OR).
#[derive(Debug, Args, Default, Clone)]
pub(crate) struct FilterArgs {
    /// The whole filter as JSON, e.g. '{"roles":["judge"],"countries":["Germany"]}'.
    #[arg(long)]
    pub(crate) filter: Option<String>,
    /// Registered for this competition (id or slug); repeatable.
    #[arg(long = "competition")]
    pub(crate) competitions: Vec<String>,
    /// Registered with this role; repeatable.
    #[arg(long = "role")]
    pub(crate) roles: Vec<String>,
    /// Registration status; repeatable.
    #[arg(long = "status")]
    pub(crate) statuses: Vec<String>,
    /// Country (case-insensitive); repeatable.
    #[arg(long = "country")]
    pub(crate) countries: Vec<String>,
    /// City (case-insensitive); repeatable.
    #[arg(long = "city")]
    pub(crate) cities: Vec<String>,
    /// Only users with (true) or without (false) an e-mail address.
    #[arg(long)]
    pub(crate) has_email: Option<bool>,
    /// Only users with (true) or without (false) a Telegram chat.
    #[arg(long)]
    pub(crate) has_telegram: Option<bool>,
}

// Parsed once per run: the size of `Create` (a `ChannelPolicy` holds up to 8 kinds inline) costs
// nothing worth a box.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Subcommand)]
pub(crate) enum BroadcastCmd {
    /// Create a draft broadcast (or a scheduled one with --schedule-at).
    ///
    /// Example: broadcast-cli broadcast create --name 'Judges briefing' --template reminder --channels both --role judge
    Create {
        /// Name shown to operators and to templates as `broadcast_name`.
        #[arg(long)]
        name: String,
        /// Template id or name.
        #[arg(long)]
        template: String,
        /// Which channels to send on: telegram, email, both, telegram_then_email, or
        /// `all:` / `first_reachable:` followed by channels separated by commas
        /// (first_reachable:email,telegram).
        #[arg(long, default_value = "both")]
        channels: ChannelPolicy,
        #[command(flatten)]
        filter: FilterArgs,
        /// Start time (RFC 3339, e.g. 2027-03-01T09:00:00Z); a worker launches it then.
        #[arg(long)]
        schedule_at: Option<String>,
    },
    /// List broadcasts, newest first.
    ///
    /// Example: broadcast-cli broadcast list --status running
    List {
        /// Only broadcasts with this status.
        #[arg(long)]
        status: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
    /// Show one broadcast.
    ///
    /// Example: broadcast-cli broadcast show 3
    Show {
        /// Broadcast id.
        id: i64,
    },
    /// Count a broadcast's audience per channel, without launching it.
    ///
    /// Example: broadcast-cli broadcast count 3
    Count {
        /// Broadcast id.
        id: i64,
    },
    /// Render a broadcast's message for a few of its recipients, without sending.
    ///
    /// Example: broadcast-cli broadcast preview 3 --limit 5
    Preview {
        /// Broadcast id.
        id: i64,
        /// How many recipients.
        #[arg(long, default_value_t = 3)]
        limit: u64,
    },
    /// Launch a broadcast: freeze its template and queue its recipients (workers send them).
    ///
    /// Shows the audience per channel and the estimated duration and asks for confirmation;
    /// `--yes` skips the question and the count (required when stdin is not a terminal; the
    /// report then says how many were queued).
    ///
    /// Example: broadcast-cli broadcast launch 3 --yes
    Launch {
        /// Broadcast id.
        id: i64,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Launch a broadcast if needed and deliver it to the end in this process.
    ///
    /// Shows the messages to send per channel and the estimated duration and asks for
    /// confirmation; `--yes` skips the question (required when stdin is not a terminal).
    /// Progress is a bar on a terminal and a `progress:` line every 2 s on stderr otherwise.
    ///
    /// Example: broadcast-cli broadcast run 3 --yes
    Run {
        /// Broadcast id.
        id: i64,
        /// Do not ask for confirmation.
        #[arg(long, short = 'y')]
        yes: bool,
    },
    /// Schedule a draft broadcast (a worker launches it then), or clear its schedule.
    ///
    /// Example: broadcast-cli broadcast schedule 3 --at 2027-03-01T09:00:00Z
    Schedule {
        /// Broadcast id.
        id: i64,
        /// Start time (RFC 3339).
        #[arg(long, required_unless_present = "clear")]
        at: Option<String>,
        /// Remove the schedule: the broadcast becomes a draft again.
        #[arg(long, conflicts_with = "at")]
        clear: bool,
    },
    /// Pause a running broadcast: workers stop claiming and starting its rows; sends already
    /// started finish (at most WORKER_CONCURRENCY per channel per worker).
    ///
    /// Example: broadcast-cli broadcast pause 3
    Pause {
        /// Broadcast id.
        id: i64,
    },
    /// Resume a paused broadcast.
    ///
    /// Example: broadcast-cli broadcast resume 3
    Resume {
        /// Broadcast id.
        id: i64,
    },
    /// Cancel a broadcast: pending rows become cancelled and nothing more is started; sends
    /// already started finish and are recorded.
    ///
    /// Example: broadcast-cli broadcast cancel 3
    Cancel {
        /// Broadcast id.
        id: i64,
    },
    /// Put failed rows of a finished or paused broadcast back in the queue.
    ///
    /// Rows of users who blocked the bot, unsubscribed or bounced are never retried.
    ///
    /// Example: broadcast-cli broadcast retry 3 --error-kind transient
    Retry {
        /// Broadcast id.
        id: i64,
        /// Only rows that failed with this error kind; repeatable (default: every kind).
        #[arg(long = "error-kind")]
        error_kinds: Vec<String>,
    },
    /// Send the broadcast's message once, now, to one user, chat or address, without touching
    /// its statistics.
    ///
    /// Example: broadcast-cli broadcast test 3 --email me@example.org
    #[command(group(clap::ArgGroup::new("target").required(true).multiple(false)))]
    Test {
        /// Broadcast id.
        id: i64,
        /// A user of the audience (their data and addresses).
        #[arg(long, group = "target")]
        user: Option<i64>,
        /// A Telegram chat id (with a sample recipient's data).
        #[arg(long, group = "target", allow_negative_numbers = true)]
        chat_id: Option<String>,
        /// An e-mail address (with a sample recipient's data).
        #[arg(long, group = "target")]
        email: Option<String>,
    },
    /// Delivery statistics: counts per status, channel, error kind and skip reason, the send
    /// rate and the duration.
    ///
    /// Example: broadcast-cli broadcast stats 3 --json
    Stats {
        /// Broadcast id.
        id: i64,
    },
    /// Rebuild a broadcast's statistics from its ledger rows, then print them. Statistics are
    /// counters kept with every change of the ledger; only rows changed with manual SQL make
    /// them wrong. Refused while the broadcast is running: pause it first.
    ///
    /// Example: broadcast-cli broadcast recount 3
    Recount {
        /// Broadcast id.
        id: i64,
    },
    /// List a broadcast's recipient rows.
    ///
    /// Example: broadcast-cli broadcast recipients 3 --status failed
    Recipients {
        /// Broadcast id.
        id: i64,
        /// Only this delivery status (pending, sending, sent, failed, skipped, cancelled).
        #[arg(long)]
        status: Option<String>,
        /// Only this channel (telegram, email).
        #[arg(long)]
        channel: Option<String>,
        /// At most this many (0: all).
        #[arg(long, default_value_t = 100)]
        limit: u64,
    },
    /// Write every recipient row of a broadcast as CSV or JSON lines, for analysis.
    ///
    /// Rows are read page by page, so a broadcast of millions of rows never sits in memory.
    /// With --output the file is written under a temporary name and renamed when complete.
    ///
    /// Example: broadcast-cli broadcast export 3 --format csv --output broadcast-3.csv
    Export {
        /// Broadcast id.
        id: i64,
        /// Output format.
        #[arg(long, value_enum, default_value = "csv")]
        format: ExportFormat,
        /// Write to this file instead of stdout.
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
        /// Only this delivery status (pending, sending, sent, failed, skipped, cancelled).
        #[arg(long)]
        status: Option<String>,
        /// Only this channel (telegram, email).
        #[arg(long)]
        channel: Option<String>,
    },
}

/// Formats of `broadcast export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(crate) enum ExportFormat {
    /// Comma-separated values with a header row.
    Csv,
    /// One JSON object per line.
    Jsonl,
}

#[derive(Debug, Subcommand)]
pub(crate) enum AudienceCmd {
    /// Import users, competitions and registrations from CSV files (all or nothing per file).
    ///
    /// The columns are described in fixtures/README.md. A bad row is reported with its line
    /// and column and nothing from that file is written.
    ///
    /// Example: broadcast-cli audience import --competitions fixtures/competitions.csv --users fixtures/users.csv --registrations fixtures/registrations.csv
    Import {
        /// users.csv
        #[arg(long)]
        users: Option<PathBuf>,
        /// competitions.csv
        #[arg(long)]
        competitions: Option<PathBuf>,
        /// registrations.csv
        #[arg(long)]
        registrations: Option<PathBuf>,
    },
    /// List users.
    ///
    /// Example: broadcast-cli audience list --search berlin --limit 20
    List {
        /// Case-insensitive search in name, e-mail and user name.
        #[arg(long)]
        search: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u64,
        /// Skip this many.
        #[arg(long, default_value_t = 0)]
        offset: u64,
    },
    /// Count the users a filter selects, and per channel of a policy the users it reaches and
    /// the messages a launch would queue.
    ///
    /// Example: broadcast-cli audience count --role judge --country Germany --channels telegram_then_email
    Count {
        #[command(flatten)]
        filter: FilterArgs,
        /// The channel policy to count messages for (see `broadcast create --channels`).
        #[arg(long, default_value = "both")]
        channels: ChannelPolicy,
    },
    /// Show one user: addresses, flags (blocked, unsubscribed, bounced) and registrations.
    ///
    /// Example: broadcast-cli audience show 17
    Show {
        /// User id.
        id: i64,
    },
}

#[derive(Debug, Subcommand)]
pub(crate) enum AdminCmd {
    /// Create an administrator of the admin panel.
    ///
    /// The password is asked twice without echo, or read from the first line of stdin with
    /// --password-stdin. It is stored as an argon2id hash and never printed.
    ///
    /// Example: broadcast-cli admin create-user alice
    ///
    /// In scripts: printf '%s\n' "$ADMIN_PASSWORD" | broadcast-cli admin create-user alice
    /// --password-stdin
    CreateUser {
        /// Login name.
        username: String,
        /// Read the password from the first line of stdin instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Set a new password for an administrator.
    ///
    /// Example: broadcast-cli admin set-password alice
    SetPassword {
        /// Login name.
        username: String,
        /// Read the password from the first line of stdin instead of prompting.
        #[arg(long)]
        password_stdin: bool,
    },
    /// List administrators (never their password hashes).
    ///
    /// Example: broadcast-cli admin list --json
    List,
}

#[derive(Debug, Subcommand)]
pub(crate) enum MediaCmd {
    /// Add a file to the media library. Its type comes from its bytes; a file that is not what
    /// its name says, or too large for Telegram (photos 10 MB, other files 50 MB), is refused.
    ///
    /// Example: broadcast-cli media add fixtures/poster.png --name poster.png
    Add {
        /// The file.
        file: std::path::PathBuf,
        /// The name in the library (default: the file's name).
        #[arg(long)]
        name: Option<String>,
        /// Give the medium of that name these bytes (broadcasts already launched keep theirs).
        #[arg(long)]
        replace: bool,
    },
    /// List the media library.
    ///
    /// Example: broadcast-cli media list
    List,
    /// Show a medium, and with --out write its bytes to a file.
    ///
    /// Example: broadcast-cli media show poster.png --out /tmp/poster.png
    Show {
        /// Medium id or name.
        medium: String,
        /// Write the bytes here.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Remove a medium from the library.
    ///
    /// Example: broadcast-cli media rm poster.png
    Rm {
        /// Medium id or name.
        medium: String,
    },
}
