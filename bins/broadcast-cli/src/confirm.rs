//! The confirmation before `broadcast launch` and `broadcast run`: how many messages go out on
//! each channel, at which rate, and about how long that takes. Skipped with `--yes` (`launch
//! --yes` does not even count: its report says how many were queued); refused without it when
//! nobody can answer (stdin is not a terminal).

use std::io::{BufRead as _, Write as _};

use broadcast_domain::{Broadcast, ChannelKind, DeliveryStatus, Transition};

use crate::app::{App, CliError, CliResult, invalid};
use crate::output::{Table, duration};
use crate::term::{self, Paint};

/// What the operator is about to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    /// Queue the recipients; workers send.
    Launch,
    /// Launch if needed and send in this process.
    Run,
}

/// How fast a channel sends.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Rate {
    /// The outbox: files on disk, as fast as the disk.
    Instant,
    /// At most this many messages per second.
    PerSecond(u32),
    /// No limit configured (the server decides).
    Unlimited,
}

impl Rate {
    fn describe(self) -> String {
        match self {
            Self::Instant => "instant (outbox)".to_owned(),
            Self::PerSecond(r) => format!("{r}/s"),
            Self::Unlimited => "unlimited".to_owned(),
        }
    }

    /// Seconds to send `n` messages, when the rate says.
    fn seconds(self, n: u64) -> Option<f64> {
        match self {
            Self::PerSecond(r) if r > 0 => Some(n as f64 / f64::from(r)),
            _ => None,
        }
    }
}

/// The rate of a channel as configured: Telegram's `TELEGRAM_RATE_LIMIT` (30/s by default),
/// e-mail's `EMAIL_RATE_LIMIT` (unlimited when unset), instant for an outbox.
pub(crate) fn rate(app: &App, kind: ChannelKind) -> Rate {
    let per_second = |r: u32| {
        if r == 0 {
            Rate::Unlimited
        } else {
            Rate::PerSecond(r)
        }
    };
    match kind {
        ChannelKind::TELEGRAM => match &app.config.channels.telegram {
            Some(t) => per_second(t.rate_per_sec),
            None => Rate::Instant,
        },
        ChannelKind::EMAIL => match &app.config.channels.smtp {
            Some(s) => s.rate_per_sec.map_or(Rate::Unlimited, per_second),
            None => Rate::Instant,
        },
        // The CLI configures Telegram and e-mail only; a channel it does not configure sends
        // nothing, so it is not paced either.
        _ => Rate::Instant,
    }
}

/// Messages per channel that the action would send.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Plan {
    /// Users the filter selects (launch only).
    pub(crate) users: Option<u64>,
    /// Messages per channel.
    pub(crate) messages: Vec<(ChannelKind, u64, Rate)>,
    /// The audience filter, with competition names.
    pub(crate) audience: String,
}

impl Plan {
    /// Every message.
    pub(crate) fn total(&self) -> u64 {
        self.messages.iter().map(|(_, n, _)| n).sum()
    }

    /// The estimated duration: channels send side by side, so the slowest one decides.
    pub(crate) fn estimate(&self) -> String {
        let limited = self
            .messages
            .iter()
            .filter_map(|(_, n, rate)| rate.seconds(*n))
            .fold(None, |acc: Option<f64>, s| {
                Some(acc.map_or(s, |a| a.max(s)))
            });
        let unlimited = self
            .messages
            .iter()
            .any(|(_, n, r)| *n > 0 && *r == Rate::Unlimited);
        match (limited, unlimited) {
            (Some(s), false) => format!("about {}", duration(s)),
            (Some(s), true) => format!(
                "at least {} (e-mail has no rate limit: the SMTP server sets the pace)",
                duration(s)
            ),
            (None, true) => {
                "unknown: e-mail has no rate limit, the SMTP server sets the pace".to_owned()
            }
            (None, false) => "instant".to_owned(),
        }
    }
}

/// What launching or running `b` would send.
pub(crate) async fn plan(app: &App, b: &Broadcast) -> CliResult<Plan> {
    let channels = b.channel_policy.channels();
    let audience = audience(app, &b.filter).await?;
    if Transition::Launch.allowed(b.status) {
        let count = app
            .orchestrator
            .count_audience(&b.filter, b.channel_policy)
            .await?;
        let messages = channels
            .iter()
            .map(|k| (*k, count.messages_on(*k), rate(app, *k)))
            .collect();
        return Ok(Plan {
            users: Some(count.users),
            messages,
            audience,
        });
    }
    // Launched already: what is still open.
    let stats = app.orchestrator.stats(b.id).await?;
    let messages = channels
        .iter()
        .map(|k| {
            let open = stats.channel_count(*k, DeliveryStatus::Pending)
                + stats.channel_count(*k, DeliveryStatus::Sending);
            (*k, open, rate(app, *k))
        })
        .collect();
    Ok(Plan {
        users: None,
        messages,
        audience,
    })
}

/// A filter as people read it, with the names of its competitions.
pub(crate) async fn audience(
    app: &App,
    filter: &broadcast_domain::AudienceFilter,
) -> CliResult<String> {
    let names =
        broadcast_app::names::competition_names(&*app.orchestrator.ports().audience).await?;
    Ok(filter.describe_with(&names))
}

/// Shows the plan on stderr and asks to go ahead (unless `yes`). Without `yes`, a stdin that
/// is not a terminal is refused (exit code 2) before anything is counted.
pub(crate) async fn confirm(app: &App, b: &Broadcast, action: Action, yes: bool) -> CliResult<()> {
    if !yes && !term::stdin_is_terminal() {
        return Err(invalid("stdin is not a terminal: pass --yes to confirm"));
    }
    let plan = plan(app, b).await?;
    let paint = Paint::stderr();
    eprint!("{}", describe(app, b, &plan, paint));
    if yes {
        return Ok(());
    }
    let question = match (action, plan.users) {
        (Action::Launch, _) => format!(
            "Launch broadcast {} and queue {} messages?",
            b.id,
            plan.total()
        ),
        (Action::Run, Some(_)) => format!(
            "Launch broadcast {} and send {} messages now?",
            b.id,
            plan.total()
        ),
        (Action::Run, None) => format!(
            "Send the {} open messages of broadcast {} now?",
            plan.total(),
            b.id
        ),
    };
    eprint!("{} [y/N] ", paint.bold(&question));
    std::io::stderr().flush().ok();
    let mut answer = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut answer)
        .map_err(|e| CliError::Failed(anyhow::anyhow!("cannot read the answer: {e}")))?;
    if matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes") {
        Ok(())
    } else {
        Err(CliError::Failed(anyhow::anyhow!(
            "not confirmed: broadcast {} was left as it is",
            b.id
        )))
    }
}

/// Which broadcast and audience, as two lines for people.
pub(crate) fn heading(b: &Broadcast, audience: &str, paint: Paint) -> String {
    format!(
        "{} `{}` ({}, channels {})\naudience: {audience}\n",
        paint.bold(&format!("broadcast {}", b.id)),
        b.name,
        b.status,
        b.channel_policy,
    )
}

/// The plan as a few lines for people.
fn describe(app: &App, b: &Broadcast, plan: &Plan, paint: Paint) -> String {
    let mut out = heading(b, &plan.audience, paint);
    if let Some(users) = plan.users {
        out.push_str(&format!("users matching: {users}\n"));
    }
    let mut t = Table::new(&["channel", "messages", "rate", "time", "via"]);
    for (kind, n, rate) in &plan.messages {
        let via = app
            .channels
            .iter()
            .find(|c| c.kind() == *kind)
            .map(|c| c.describe())
            .unwrap_or_else(|| "not configured".to_owned());
        t.row(vec![
            kind.to_string(),
            n.to_string(),
            rate.describe(),
            rate.seconds(*n).map_or_else(|| "-".to_owned(), duration),
            via,
        ]);
    }
    out.push_str(&t.render(None, paint));
    out.push_str(&format!("estimated duration: {}\n", plan.estimate()));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(messages: &[(ChannelKind, u64, Rate)]) -> Plan {
        Plan {
            users: Some(10),
            messages: messages.to_vec(),
            audience: "everyone".into(),
        }
    }

    #[test]
    fn the_slowest_channel_decides_the_estimate() {
        let p = plan(&[
            (ChannelKind::TELEGRAM, 3_000, Rate::PerSecond(30)),
            (ChannelKind::EMAIL, 1_000, Rate::PerSecond(50)),
        ]);
        assert_eq!(p.total(), 4_000);
        assert_eq!(p.estimate(), "about 1m 40s");
        let p = plan(&[
            (ChannelKind::TELEGRAM, 90, Rate::PerSecond(30)),
            (ChannelKind::EMAIL, 1_000, Rate::Unlimited),
        ]);
        assert!(p.estimate().starts_with("at least 3s"), "{}", p.estimate());
        let p = plan(&[
            (ChannelKind::TELEGRAM, 90, Rate::Instant),
            (ChannelKind::EMAIL, 0, Rate::Unlimited),
        ]);
        assert_eq!(p.estimate(), "instant");
    }
}
