//! Command-line interface: every command, flag and help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Send announcements over Telegram and e-mail to chosen parts of an audience.
#[derive(Debug, Parser)]
#[command(name = "broadcast-cli", version, about, long_about = None)]
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
    /// Run a worker: deliver every running broadcast and launch scheduled ones when due.
    ///
    /// Any number of workers may share one PostgreSQL database. SIGINT/SIGTERM stop it
    /// gracefully: no new claims, in-flight sends finish and are recorded.
    ///
    /// Example: broadcast-cli worker --concurrency 32
    Worker {
        /// Messages in flight at once per channel (default WORKER_CONCURRENCY or 16).
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
    List,
    /// Show one template.
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

#[derive(Debug, Clone, Copy, ValueEnum)]
pub(crate) enum PolicyArg {
    Telegram,
    Email,
    Both,
    TelegramThenEmail,
}

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
        /// Which channels to send on.
        #[arg(long, value_enum, default_value = "both")]
        channels: PolicyArg,
        #[command(flatten)]
        filter: FilterArgs,
        /// Start time (RFC 3339, e.g. 2027-03-01T09:00:00Z); a worker launches it then.
        #[arg(long)]
        schedule_at: Option<String>,
    },
    /// List broadcasts, newest first.
    List {
        /// Only broadcasts with this status.
        #[arg(long)]
        status: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u64,
    },
    /// Show one broadcast.
    Show {
        /// Broadcast id.
        id: i64,
    },
    /// Count a broadcast's audience per channel, without launching it.
    Count {
        /// Broadcast id.
        id: i64,
    },
    /// Render a broadcast's message for a few of its recipients, without sending.
    Preview {
        /// Broadcast id.
        id: i64,
        /// How many recipients.
        #[arg(long, default_value_t = 3)]
        limit: u64,
    },
    /// Launch a broadcast: freeze its template and queue its recipients (workers send them).
    ///
    /// Example: broadcast-cli broadcast launch 3
    Launch {
        /// Broadcast id.
        id: i64,
    },
    /// Launch a broadcast if needed and deliver it to the end in this process.
    ///
    /// Example: broadcast-cli broadcast run 3
    Run {
        /// Broadcast id.
        id: i64,
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
    /// Pause a running broadcast: workers stop claiming its rows; in-flight sends finish.
    Pause {
        /// Broadcast id.
        id: i64,
    },
    /// Resume a paused broadcast.
    Resume {
        /// Broadcast id.
        id: i64,
    },
    /// Cancel a broadcast: pending rows become cancelled and nothing more is sent.
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
    /// Delivery statistics: per status, channel and error kind.
    Stats {
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
}

#[derive(Debug, Subcommand)]
pub(crate) enum AudienceCmd {
    /// Import users, competitions and registrations from CSV files (all or nothing per file).
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
    /// Count the users a filter selects, per channel.
    ///
    /// Example: broadcast-cli audience count --role judge --country Germany
    Count {
        #[command(flatten)]
        filter: FilterArgs,
    },
}
