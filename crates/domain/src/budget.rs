//! The arithmetic of a shared send budget ([`SendBudget`](crate::SendBudget)), which every
//! store applies to its key's state under its own lock: reservations of consecutive slots,
//! moves owed by late answers and made when they fall due, and holds.
//!
//! Why moves are owed rather than made at once: a message answered `late` after its slot
//! needs the slot a window after it to come `late` later (the provider counts any sliding
//! window at its end, and the message may have reached it just before its answer). Every
//! later slot moves with it, so a move helps only the messages reserved before it. Made at
//! once, a steady lateness (a provider 50 ms away) would move the slots again for every
//! reservation made since the last move, several times a window; owed until the slot a window
//! later is handed out, the late answers of one window share one move, and the key runs at
//! `rate` messages per `window + lateness`, which is what the provider's counting allows.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::error::{Error, Result};

/// Slots reserved from a [`SendBudget`](crate::SendBudget).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slots {
    /// The first slot; slot `i` is at `first + i * interval`.
    pub first: DateTime<Utc>,
    /// The key's moves just after the reservation: how far its slots had been moved back in
    /// all ([`SendBudget::move_back`](crate::SendBudget::move_back)), and what it still owed.
    pub moves: Moves,
}

impl Slots {
    /// Checks a send budget key: every [`SendBudget`](crate::SendBudget) refuses an empty one.
    pub fn check_key(key: &str) -> Result<()> {
        if key.trim().is_empty() {
            return Err(Error::Invalid("a send budget key must not be empty".into()));
        }
        Ok(())
    }
}

/// A move of a key's slots that is due but not made yet: the key's total of moves reaches
/// `total` before it hands out any slot at or after `by`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Owed {
    /// The total of moves the key will have made.
    pub total: Duration,
    /// No slot at or after this time is handed out before the move.
    pub by: DateTime<Utc>,
}

/// A key's moves: made in all, and owed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Moves {
    /// How far the slots have been moved back in all.
    pub moved: Duration,
    /// The move due later, if any.
    pub owed: Option<Owed>,
}

impl Moves {
    /// True when a message sent in a slot reserved at `moved_then` and answered `late` needs
    /// nothing more than these moves: made since its reservation, or owed by `by`. A worker
    /// that knows the key's moves this far skips the call (moves only grow, and an owed move
    /// is only ever made or made larger and earlier).
    pub fn cover(&self, late: Duration, moved_then: Duration, by: DateTime<Utc>) -> bool {
        let target = moved_then + late;
        target <= self.moved
            || self
                .owed
                .is_some_and(|owed| owed.total >= target && owed.by <= by)
    }

    /// The newer of two readings of one key: the budget's moves only grow, and what it owes
    /// only grows or comes earlier until it is made, so the reading that asks more is the
    /// later one and tells everything the other did.
    pub fn newer(self, other: Moves) -> Moves {
        let rank = |m: &Moves| (m.moved, m.owed.map(|o| (o.total, std::cmp::Reverse(o.by))));
        match rank(&other) > rank(&self) {
            true => other,
            false => self,
        }
    }

    /// These moves and a move asked for: what is owed becomes the larger total by the
    /// earlier time, which keeps both promises.
    fn owe(self, total: Duration, by: DateTime<Utc>) -> Moves {
        if total <= self.moved {
            return self;
        }
        let owed = match self.owed {
            Some(o) => Owed {
                total: o.total.max(total),
                by: o.by.min(by),
            },
            None => Owed { total, by },
        };
        Moves {
            moved: self.moved,
            owed: Some(owed),
        }
    }
}

/// One key's state: the first slot nobody has reserved, the moves made and owed, and the end
/// of the latest hold. Every store keeps these and applies these rules under its lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetState {
    /// The first slot nobody has reserved yet (in the past when the key is idle).
    pub next: DateTime<Utc>,
    /// The moves made and owed.
    pub moves: Moves,
    /// The end of the latest hold.
    pub held: Option<DateTime<Utc>>,
}

impl BudgetState {
    /// A key nobody has reserved from yet.
    pub fn new(now: DateTime<Utc>) -> Self {
        Self {
            next: now,
            moves: Moves::default(),
            held: None,
        }
    }

    /// Reserves the slots `[first, first + span)` and answers `first`: never before `now`,
    /// after the owed move when this reservation reaches its time.
    pub fn reserve(&mut self, span: chrono::Duration, now: DateTime<Utc>) -> DateTime<Utc> {
        let mut first = self.next.max(now);
        if let Some(owed) = self.moves.owed
            && first + span > owed.by
        {
            first += to_delta(owed.total.saturating_sub(self.moves.moved));
            self.moves.moved = self.moves.moved.max(owed.total);
            self.moves.owed = None;
        }
        self.next = first + span;
        first
    }

    /// Applies [`SendBudget::move_back`](crate::SendBudget::move_back): owes the move, or makes
    /// it (and whatever was owed) at once when a slot at or after `by` is out already.
    pub fn move_back(
        &mut self,
        late: Duration,
        moved_then: Duration,
        by: DateTime<Utc>,
        now: DateTime<Utc>,
    ) {
        let moves = self.moves.owe(moved_then + late, by);
        match moves.owed {
            Some(owed) if owed.by < self.next => {
                self.next = self.next.max(now) + to_delta(owed.total - moves.moved);
                self.moves = Moves {
                    moved: owed.total,
                    owed: None,
                };
            }
            _ => self.moves = moves,
        }
    }

    /// Applies [`SendBudget::hold`](crate::SendBudget::hold).
    pub fn hold(&mut self, until: DateTime<Utc>) {
        self.next = self.next.max(until);
        self.held = Some(self.held.map_or(until, |h| h.max(until)));
    }
}

/// A move as a time span (a move is at most a day, which the stores check).
fn to_delta(d: Duration) -> chrono::Duration {
    chrono::Duration::from_std(d).unwrap_or(chrono::Duration::MAX)
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn t(ms: i64) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 5, 12, 0, 0).unwrap() + chrono::Duration::milliseconds(ms)
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn span(n: i64) -> chrono::Duration {
        chrono::Duration::milliseconds(n)
    }

    #[test]
    fn a_late_answer_owes_a_move_made_when_the_slot_a_window_later_is_reserved() {
        let mut b = BudgetState::new(t(0));
        // 10 slots of 100 ms: a window of 1 s.
        assert_eq!(b.reserve(span(300), t(0)), t(0));
        // The slot at 0 was answered 40 ms late: the slot at 1000 and after move by 40 ms.
        b.move_back(ms(40), Duration::ZERO, t(1000), t(50));
        assert_eq!(b.moves.moved, Duration::ZERO);
        // Reservations before that time are not moved...
        assert_eq!(b.reserve(span(300), t(100)), t(300));
        assert_eq!(b.reserve(span(300), t(400)), t(600));
        // ... the one that reaches it is, and the move is made once.
        assert_eq!(b.reserve(span(300), t(700)), t(900 + 40));
        assert_eq!(b.moves.moved, ms(40));
        assert_eq!(b.moves.owed, None);
        assert_eq!(b.reserve(span(100), t(700)), t(1240));
    }

    #[test]
    fn the_late_answers_of_one_window_share_one_move() {
        let mut b = BudgetState::new(t(0));
        let mut moved = Vec::new();
        // A provider 50 ms away: every slot is answered 50 ms after it, 10 ms past the margin.
        // Slots of 10 ms (100 a window), reserved 3 at a time just before they are used.
        let mut now = t(0);
        for _ in 0..100 {
            let first = b.reserve(span(30), now);
            let at_reservation = b.moves.moved;
            for i in 0..3 {
                let slot = first + span(10 * i);
                b.move_back(ms(10), at_reservation, slot + span(990), slot + span(50));
            }
            moved.push(b.moves.moved);
            now = first + span(30);
        }
        // 300 slots, three windows: the slots moved about once per window, 10 ms each time
        // (made at once, every reservation after a move would move them again: 1 s in all).
        let moves = moved.windows(2).filter(|w| w[1] > w[0]).count();
        assert!((2..=3).contains(&moves), "{moves} moves: {moved:?}");
        assert_eq!(
            b.moves.moved
                + b.moves
                    .owed
                    .map_or(Duration::ZERO, |o| o.total - b.moves.moved),
            ms(10) * (moves as u32 + u32::from(b.moves.owed.is_some())),
            "{moved:?}"
        );
    }

    #[test]
    fn a_move_whose_slot_is_out_already_is_made_at_once_from_now_when_idle() {
        let mut b = BudgetState::new(t(0));
        assert_eq!(b.reserve(span(1000), t(0)), t(0));
        // The slot a window after the late one is out: the move is made now.
        b.move_back(ms(25), Duration::ZERO, t(500), t(600));
        assert_eq!(b.moves.moved, ms(25));
        assert_eq!(b.reserve(span(10), t(600)), t(1025));
        // Covered already: nothing more.
        b.move_back(ms(20), Duration::ZERO, t(500), t(700));
        assert_eq!(b.moves.moved, ms(25));
        // Idle since: a move made at once counts from now.
        b.move_back(ms(60), ms(25), t(1000), t(60_000));
        assert_eq!(b.reserve(span(10), t(60_000)), t(60_000 + 60));
    }

    #[test]
    fn owed_moves_combine_to_the_larger_and_earlier() {
        let mut b = BudgetState::new(t(0));
        b.reserve(span(100), t(0));
        b.move_back(ms(10), Duration::ZERO, t(2000), t(10));
        b.move_back(ms(30), Duration::ZERO, t(3000), t(20));
        assert_eq!(
            b.moves.owed,
            Some(Owed {
                total: ms(30),
                by: t(2000)
            })
        );
        let known = b.moves;
        assert!(known.cover(ms(30), Duration::ZERO, t(2500)));
        assert!(!known.cover(ms(31), Duration::ZERO, t(2500)));
        assert!(!known.cover(ms(30), Duration::ZERO, t(1500)));
        // A reading taken later tells more; the older one is dropped whichever comes first.
        let mut later = b;
        later.move_back(ms(40), Duration::ZERO, t(4000), t(30));
        assert_eq!(known.newer(later.moves), later.moves);
        assert_eq!(later.moves.newer(known), later.moves);
        later.reserve(span(2000), t(40));
        assert_eq!(later.moves.moved, ms(40));
        assert_eq!(known.newer(later.moves), later.moves);
    }

    #[test]
    fn a_hold_moves_the_next_slot_and_is_never_shortened() {
        let mut b = BudgetState::new(t(0));
        b.hold(t(3000));
        b.hold(t(1000));
        assert_eq!(b.held, Some(t(3000)));
        assert_eq!(b.reserve(span(10), t(0)), t(3000));
    }
}
