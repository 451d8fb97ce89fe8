//! The broadcast lifecycle: which status each operation may start from and where it leads.
//!
//! Every front-end, store and the engine ask these rules instead of spelling them out, so "only
//! a draft or scheduled broadcast can be launched" is written once and reads the same everywhere.

use chrono::{DateTime, Utc};

use crate::error::Error;
use crate::model::{StatusChange, TemplateContent};
use crate::types::{BroadcastId, BroadcastStatus};

use BroadcastStatus as S;

/// An operation that changes a broadcast's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transition {
    /// Freeze the template, write the recipient rows, start delivering.
    Launch,
    /// Set or clear the scheduled time (the status becomes scheduled or draft).
    Schedule,
    /// Stop workers from claiming rows.
    Pause,
    /// Let workers claim rows again.
    Resume,
    /// Stop for good; open rows are cancelled.
    Cancel,
    /// Put failed rows back in the queue.
    Retry,
    /// Every row reached a final status.
    Complete,
    /// The broadcast cannot run (a scheduled launch failed).
    Fail,
}

impl Transition {
    /// The statuses the operation may start from.
    pub const fn from(self) -> &'static [BroadcastStatus] {
        match self {
            Self::Launch | Self::Schedule => &[S::Draft, S::Scheduled],
            Self::Pause | Self::Complete => &[S::Running],
            Self::Resume => &[S::Paused],
            Self::Cancel => &[S::Draft, S::Scheduled, S::Running, S::Paused],
            Self::Retry => &[S::Completed, S::Failed, S::Paused],
            Self::Fail => &[S::Scheduled],
        }
    }

    /// The status the operation leads to, when it is always the same (scheduling leads to
    /// scheduled or draft; a retry of a paused broadcast keeps it paused).
    pub const fn to(self) -> Option<BroadcastStatus> {
        match self {
            Self::Launch | Self::Resume => Some(S::Running),
            Self::Pause => Some(S::Paused),
            Self::Cancel => Some(S::Cancelled),
            Self::Complete => Some(S::Completed),
            Self::Fail => Some(S::Failed),
            Self::Schedule | Self::Retry => None,
        }
    }

    /// The past participle used in messages and audit entries: "launched", "paused", ...
    pub const fn done(self) -> &'static str {
        match self {
            Self::Launch => "launched",
            Self::Schedule => "scheduled",
            Self::Pause => "paused",
            Self::Resume => "resumed",
            Self::Cancel => "cancelled",
            Self::Retry => "retried",
            Self::Complete => "completed",
            Self::Fail => "failed",
        }
    }

    /// True when a broadcast in `status` may undergo the operation.
    pub fn allowed(self, status: BroadcastStatus) -> bool {
        self.from().contains(&status)
    }

    /// `Ok` when a broadcast in `status` may undergo the operation; otherwise a
    /// [`Error::Conflict`] such as "broadcast 7 is running; only a draft or scheduled broadcast
    /// can be launched".
    pub fn check(self, id: BroadcastId, status: BroadcastStatus) -> Result<(), Error> {
        if self.allowed(status) {
            Ok(())
        } else {
            Err(self.refused(id, status))
        }
    }

    /// The conflict reported when a broadcast in `status` may not undergo the operation.
    pub fn refused(self, id: BroadcastId, status: BroadcastStatus) -> Error {
        Error::Conflict(format!(
            "broadcast {id} is {status}; only {} broadcast can be {}",
            article_list(self.from()),
            self.done()
        ))
    }

    /// The status change the operation makes when it always leads to the same status.
    ///
    /// # Panics
    /// For [`Transition::Schedule`] and [`Transition::Retry`], whose target depends on more than
    /// the operation; their callers build the [`StatusChange`] themselves.
    pub fn change(
        self,
        at: DateTime<Utc>,
        reason: Option<String>,
        freeze: Option<TemplateContent>,
    ) -> StatusChange {
        let to = self
            .to()
            .unwrap_or_else(|| panic!("{self:?} has no fixed target status"));
        StatusChange {
            from: self.from().to_vec(),
            to,
            at,
            reason,
            freeze,
            probe: None,
        }
    }
}

/// "a draft or scheduled", "a draft, scheduled, running or paused", "a completed".
fn article_list(statuses: &[BroadcastStatus]) -> String {
    let names: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
    let list = match names.as_slice() {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    };
    let article = match list.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => "an",
        _ => "a",
    };
    format!("{article} {list}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_allowed_statuses() {
        assert_eq!(
            Transition::Launch
                .check(7, BroadcastStatus::Running)
                .unwrap_err()
                .to_string(),
            "broadcast 7 is running; only a draft or scheduled broadcast can be launched"
        );
        assert_eq!(
            Transition::Cancel
                .refused(3, BroadcastStatus::Completed)
                .to_string(),
            "broadcast 3 is completed; only a draft, scheduled, running or paused broadcast can \
             be cancelled"
        );
        assert_eq!(
            Transition::Resume
                .refused(1, BroadcastStatus::Draft)
                .to_string(),
            "broadcast 1 is draft; only a paused broadcast can be resumed"
        );
    }

    #[test]
    fn final_statuses_allow_nothing_but_a_retry_of_a_finished_run() {
        let all = [
            Transition::Launch,
            Transition::Schedule,
            Transition::Pause,
            Transition::Resume,
            Transition::Cancel,
            Transition::Retry,
            Transition::Complete,
            Transition::Fail,
        ];
        for status in BroadcastStatus::ALL.iter().copied() {
            for t in all {
                let expected = match (status, t) {
                    (S::Cancelled, _) => false,
                    (S::Completed | S::Failed, Transition::Retry) => true,
                    (S::Completed | S::Failed, _) => false,
                    _ => t.from().contains(&status),
                };
                assert_eq!(t.allowed(status), expected, "{t:?} from {status}");
                assert_eq!(t.check(1, status).is_ok(), expected, "{t:?} from {status}");
            }
        }
        for t in all {
            if let Some(to) = t.to() {
                assert!(!t.allowed(to), "{t:?} is a loop");
                let change = t.change(Utc::now(), None, None);
                assert_eq!((change.from.as_slice(), change.to), (t.from(), to));
            }
        }
    }
}
