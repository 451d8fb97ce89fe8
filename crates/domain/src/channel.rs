//! Channel kinds and channel policies as data.
//!
//! A [`ChannelKind`] is a registered name (`telegram`, `email`, `sms`, ...), not a closed set:
//! the composition root registers each adapter's kind at start-up, and the rest of the system
//! handles kinds generically. Names are interned, so a kind is a `Copy` handle, equal to
//! another exactly when their names are. The interner holds names only (at most [`MAX_KINDS`]), never an
//! adapter: which adapter serves a kind is the composition root's business.
//!
//! A [`ChannelPolicy`] is an ordered list of kinds plus a [`PolicyMode`]: `all` sends on every
//! kind the user can be reached on, `first_reachable` on the first one only (and on the next
//! one when a delivery on it fails for good). The names of the two-channel era, `telegram`,
//! `email`, `both` and `telegram_then_email`, remain the stored and shown names of those
//! policies, so databases written before kinds became data read unchanged.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;
use std::sync::Mutex;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::model::User;
use crate::types::{MessageFormat, ParseError, PolicyMode, SkipReason};

/// Most distinct channel kinds a process knows (the two built-in ones included).
pub const MAX_KINDS: usize = 64;

/// Most kinds in one policy.
pub const MAX_POLICY_KINDS: usize = 8;

/// Names a kind may not take: they are policy names, and a kind called `both` would make the
/// policy `both` ambiguous.
const RESERVED: &[&str] = &["both", "telegram_then_email", "all", "first_reachable"];

/// Kinds registered at run time, in registration order (the built-in ones are not in here).
static REGISTERED: Mutex<Vec<ChannelKind>> = Mutex::new(Vec::new());

/// A delivery channel kind: a registered name such as `telegram` or `email`. Kinds sort in
/// the order they became known (the built-in ones first), so lists and maps keyed by kind
/// show Telegram before e-mail before the kinds registered after them.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelKind(&'static Known);

/// A known kind: its name and its position among the known kinds (one per name).
#[derive(PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Known {
    rank: u16,
    name: &'static str,
}

impl ChannelKind {
    /// A Telegram bot message.
    pub const TELEGRAM: ChannelKind = ChannelKind(&Known {
        rank: 0,
        name: "telegram",
    });
    /// An e-mail.
    pub const EMAIL: ChannelKind = ChannelKind(&Known {
        rank: 1,
        name: "email",
    });
    /// The kinds every build knows.
    pub const BUILT_IN: [ChannelKind; 2] = [Self::TELEGRAM, Self::EMAIL];

    /// Registers a kind by name (idempotent), so that it can be parsed and stored. A name is 1
    /// to 32 characters of `a`-`z`, `0`-`9` and `_`, starting with a letter, and not a policy
    /// name (`both`, `telegram_then_email`, `all`, `first_reachable`).
    pub fn register(name: &str) -> Result<ChannelKind, ParseError> {
        if let Some(kind) = Self::known(name) {
            return Ok(kind);
        }
        let valid = name.len() <= 32
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        if !valid {
            return Err(ParseError(format!(
                "`{name}` is not a valid channel name: use 1 to 32 characters of a-z, 0-9 and \
                 `_`, starting with a letter"
            )));
        }
        if RESERVED.contains(&name) {
            return Err(ParseError(format!(
                "`{name}` is the name of a channel policy and cannot name a channel"
            )));
        }
        let mut registered = REGISTERED.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(kind) = registered.iter().find(|k| k.0.name == name) {
            return Ok(*kind);
        }
        let rank = registered.len() + Self::BUILT_IN.len();
        if rank >= MAX_KINDS {
            return Err(ParseError(format!(
                "cannot register channel `{name}`: a process knows at most {MAX_KINDS} channels"
            )));
        }
        let kind = ChannelKind(Box::leak(Box::new(Known {
            // Below MAX_KINDS, checked above.
            rank: rank as u16,
            name: Box::leak(name.to_owned().into_boxed_str()),
        })));
        registered.push(kind);
        Ok(kind)
    }

    /// A kind read back from storage: registered when this process does not know it yet (a
    /// database may hold rows of a channel another process serves).
    pub fn from_stored(name: &str) -> Result<ChannelKind, ParseError> {
        Self::register(name)
    }

    /// The kind of that name, when it is built in or registered.
    pub fn known(name: &str) -> Option<ChannelKind> {
        if let Some(kind) = Self::BUILT_IN.iter().find(|k| k.0.name == name) {
            return Some(*kind);
        }
        let registered = REGISTERED.lock().unwrap_or_else(|e| e.into_inner());
        registered.iter().find(|k| k.0.name == name).copied()
    }

    /// Every kind this process knows: the built-in ones, then the registered ones in the order
    /// of their registration.
    pub fn all() -> Vec<ChannelKind> {
        let registered = REGISTERED.lock().unwrap_or_else(|e| e.into_inner());
        Self::BUILT_IN
            .iter()
            .copied()
            .chain(registered.iter().copied())
            .collect()
    }

    /// The name.
    pub fn as_str(self) -> &'static str {
        self.0.name
    }
}

impl fmt::Debug for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name)
    }
}

impl fmt::Display for ChannelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.name)
    }
}

impl FromStr for ChannelKind {
    type Err = ParseError;
    /// Parses a known kind; an unknown name is an error that lists the known ones.
    fn from_str(raw: &str) -> Result<Self, ParseError> {
        let name = raw.trim().to_ascii_lowercase();
        Self::known(&name).ok_or_else(|| {
            let known: Vec<&str> = Self::all().iter().map(|k| k.as_str()).collect();
            ParseError(format!(
                "unknown channel `{raw}`; expected one of: {}",
                known.join(", ")
            ))
        })
    }
}

impl Serialize for ChannelKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.0.name)
    }
}

impl<'de> Deserialize<'de> for ChannelKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Which channels a broadcast uses, in which order, and whether it sends on all of them or on
/// the first one that reaches each user.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelPolicy {
    mode: PolicyMode,
    len: u8,
    /// The kinds in order; the entries from `len` on are unused filler.
    kinds: [ChannelKind; MAX_POLICY_KINDS],
}

/// The names kept from the two-channel era.
const NAMED: [(&str, ChannelPolicy); 4] = [
    ("telegram", ChannelPolicy::TELEGRAM),
    ("email", ChannelPolicy::EMAIL),
    ("both", ChannelPolicy::BOTH),
    ("telegram_then_email", ChannelPolicy::TELEGRAM_THEN_EMAIL),
];

impl ChannelPolicy {
    /// Telegram only.
    pub const TELEGRAM: ChannelPolicy = Self::of2(PolicyMode::All, &[ChannelKind::TELEGRAM]);
    /// E-mail only.
    pub const EMAIL: ChannelPolicy = Self::of2(PolicyMode::All, &[ChannelKind::EMAIL]);
    /// Telegram and e-mail, independently.
    pub const BOTH: ChannelPolicy = Self::of2(
        PolicyMode::All,
        &[ChannelKind::TELEGRAM, ChannelKind::EMAIL],
    );
    /// Telegram, and e-mail for those Telegram cannot reach.
    pub const TELEGRAM_THEN_EMAIL: ChannelPolicy = Self::of2(
        PolicyMode::FirstReachable,
        &[ChannelKind::TELEGRAM, ChannelKind::EMAIL],
    );
    /// The policies that have names of their own, in the order operators are offered them.
    pub const NAMED: [ChannelPolicy; 4] = [
        Self::TELEGRAM,
        Self::EMAIL,
        Self::BOTH,
        Self::TELEGRAM_THEN_EMAIL,
    ];

    /// Builds a constant policy of one or two kinds.
    const fn of2(mode: PolicyMode, kinds: &[ChannelKind]) -> ChannelPolicy {
        let mut out = [ChannelKind::TELEGRAM; MAX_POLICY_KINDS];
        let mut i = 0;
        while i < kinds.len() {
            out[i] = kinds[i];
            i += 1;
        }
        ChannelPolicy {
            mode,
            len: kinds.len() as u8,
            kinds: out,
        }
    }

    /// A policy of 1 to [`MAX_POLICY_KINDS`] distinct kinds. With one kind both modes mean the
    /// same, and the mode is `all`.
    pub fn new(mode: PolicyMode, kinds: &[ChannelKind]) -> Result<ChannelPolicy, ParseError> {
        if kinds.is_empty() || kinds.len() > MAX_POLICY_KINDS {
            return Err(ParseError(format!(
                "a channel policy names 1 to {MAX_POLICY_KINDS} channels, not {}",
                kinds.len()
            )));
        }
        for (i, k) in kinds.iter().enumerate() {
            if kinds[..i].contains(k) {
                return Err(ParseError(format!(
                    "channel `{k}` appears twice in the channel policy"
                )));
            }
        }
        let mut out = [ChannelKind::TELEGRAM; MAX_POLICY_KINDS];
        out[..kinds.len()].copy_from_slice(kinds);
        Ok(ChannelPolicy {
            mode: if kinds.len() == 1 {
                PolicyMode::All
            } else {
                mode
            },
            // At most MAX_POLICY_KINDS, checked above.
            len: kinds.len() as u8,
            kinds: out,
        })
    }

    /// The channels this policy may send on, in order.
    pub fn channels(&self) -> &[ChannelKind] {
        &self.kinds[..usize::from(self.len)]
    }

    /// Whether every channel is used or only the first that reaches a user.
    pub fn mode(&self) -> PolicyMode {
        self.mode
    }

    /// True when the policy may send on `kind`.
    pub fn uses(&self, kind: ChannelKind) -> bool {
        self.channels().contains(&kind)
    }

    /// The channels before `kind` in a `first_reachable` chain: a user gets a row on `kind` at
    /// launch only when none of them reaches the user. Empty for `all` policies.
    pub fn before(&self, kind: ChannelKind) -> &[ChannelKind] {
        match self.mode {
            PolicyMode::All => &[],
            PolicyMode::FirstReachable => {
                let at = self.channels().iter().position(|k| *k == kind).unwrap_or(0);
                &self.channels()[..at]
            }
        }
    }

    /// The channels after `kind` in a `first_reachable` chain, where a delivery that failed for
    /// good on `kind` falls back to. Empty for `all` policies.
    pub fn after(&self, kind: ChannelKind) -> &[ChannelKind] {
        match self.mode {
            PolicyMode::All => &[],
            PolicyMode::FirstReachable => match self.channels().iter().position(|k| *k == kind) {
                Some(at) => &self.channels()[at + 1..],
                None => &[],
            },
        }
    }

    /// A policy read back from storage: its channels are registered when this process does not
    /// know them yet (see [`ChannelKind::from_stored`]).
    pub fn from_stored(raw: &str) -> Result<ChannelPolicy, ParseError> {
        let list = raw.split_once(':').map_or(raw, |(_, list)| list);
        if !NAMED.iter().any(|(name, _)| *name == raw) {
            for name in list.split(',') {
                ChannelKind::from_stored(name.trim())?;
            }
        }
        raw.parse()
    }
}

/// The stored and shown name: one of the named policies, a single channel's name, or
/// `<mode>:<kind>,<kind>,...`.
impl fmt::Display for ChannelPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((name, _)) = NAMED.iter().find(|(_, p)| p == self) {
            return f.write_str(name);
        }
        if let [only] = self.channels() {
            return f.write_str(only.as_str());
        }
        write!(f, "{}:", self.mode)?;
        for (i, k) in self.channels().iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            f.write_str(k.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Debug for ChannelPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ChannelPolicy({self})")
    }
}

impl FromStr for ChannelPolicy {
    type Err = ParseError;
    /// Parses `telegram`, `email`, `both`, `telegram_then_email`, any single known channel, or
    /// `all:<kind>,...` / `first_reachable:<kind>,...`; `-` may stand for `_`
    /// (`telegram-then-email`).
    fn from_str(raw: &str) -> Result<Self, ParseError> {
        let s = raw.trim().to_ascii_lowercase().replace('-', "_");
        if let Some((_, p)) = NAMED.iter().find(|(name, _)| *name == s) {
            return Ok(*p);
        }
        let explain = |why: String| {
            let known: Vec<&str> = ChannelKind::all().iter().map(|k| k.as_str()).collect();
            ParseError(format!(
                "unknown channel policy `{raw}` ({why}); expected telegram, email, both, \
                 telegram_then_email, or `all:` or `first_reachable:` followed by channels \
                 separated by commas; the channels are {}",
                known.join(", ")
            ))
        };
        let (mode, list) = match s.split_once(':') {
            Some((mode, list)) => (
                mode.trim()
                    .parse()
                    .map_err(|_| explain(format!("no policy mode `{}`", mode.trim())))?,
                list,
            ),
            None => (PolicyMode::All, s.as_str()),
        };
        let kinds = list
            .split(',')
            .map(|k| {
                ChannelKind::known(k.trim())
                    .ok_or_else(|| explain(format!("no channel `{}`", k.trim())))
            })
            .collect::<Result<Vec<_>, _>>()?;
        ChannelPolicy::new(mode, &kinds).map_err(|e| explain(e.0))
    }
}

impl Serialize for ChannelPolicy {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for ChannelPolicy {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// A column of `users` that tells where, or whether, a user can be reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum UserField {
    /// `telegram_chat_id`.
    TelegramChatId,
    /// `email`.
    Email,
    /// `telegram_blocked_at`.
    TelegramBlockedAt,
    /// `email_unsubscribed_at`.
    EmailUnsubscribedAt,
    /// `email_bounced_at`.
    EmailBouncedAt,
}

/// Where a channel's address comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AddressSource {
    /// A column of `users`.
    Field(UserField),
    /// A text or number attribute in `users.attributes` (e.g. `phone`); blank text counts as
    /// no address.
    Attribute(String),
}

/// How a channel finds a user's address, and when the user cannot be reached on it: without an
/// address (`missing`), or when one of the `refusals` columns is set (the user blocked the
/// bot, unsubscribed, bounced), checked in that order.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reach {
    /// Where the address comes from.
    pub address: AddressSource,
    /// Why a user without an address is skipped.
    pub missing: SkipReason,
    /// Columns that, when set, make the user unreachable, with the reason.
    pub refusals: Vec<(UserField, SkipReason)>,
}

impl Reach {
    /// Telegram: the chat id, unless the user blocked the bot.
    pub fn telegram() -> Reach {
        Reach {
            address: AddressSource::Field(UserField::TelegramChatId),
            missing: SkipReason::NoTelegram,
            refusals: vec![(UserField::TelegramBlockedAt, SkipReason::TelegramBlocked)],
        }
    }

    /// E-mail: the address, unless the user unsubscribed or mail to it bounced.
    pub fn email() -> Reach {
        Reach {
            address: AddressSource::Field(UserField::Email),
            missing: SkipReason::NoEmail,
            refusals: vec![
                (
                    UserField::EmailUnsubscribedAt,
                    SkipReason::EmailUnsubscribed,
                ),
                (UserField::EmailBouncedAt, SkipReason::EmailBounced),
            ],
        }
    }

    /// An address from a user attribute, such as `phone`: a name of letters, digits and `_`
    /// that does not start with a digit, at most 64 characters.
    pub fn attribute(name: &str) -> Result<Reach, ParseError> {
        let valid = !name.is_empty()
            && name.len() <= 64
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            return Err(ParseError(format!(
                "`{name}` is not a valid attribute name for addresses: use letters, digits and \
                 `_`, not starting with a digit"
            )));
        }
        Ok(Reach {
            address: AddressSource::Attribute(name.to_owned()),
            missing: SkipReason::NoAddress,
            refusals: Vec::new(),
        })
    }

    /// Where a message to `user` goes, or why it cannot.
    pub fn address_of(&self, user: &User) -> Result<String, SkipReason> {
        let address = match &self.address {
            AddressSource::Field(UserField::TelegramChatId) => {
                user.telegram_chat_id.map(|id| id.to_string())
            }
            AddressSource::Field(UserField::Email) => user.email.as_ref().map(|e| e.to_string()),
            AddressSource::Field(
                UserField::TelegramBlockedAt
                | UserField::EmailUnsubscribedAt
                | UserField::EmailBouncedAt,
            ) => None,
            AddressSource::Attribute(name) => match user.attributes.get(name) {
                Some(serde_json::Value::String(s)) if !s.trim().is_empty() => {
                    Some(s.trim().to_owned())
                }
                Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                _ => None,
            },
        };
        let address = address.ok_or(self.missing)?;
        match self.refusals.iter().find(|(f, _)| is_set(user, *f)) {
            Some((_, reason)) => Err(*reason),
            None => Ok(address),
        }
    }

    /// True when the user refused the channel since (blocked the bot, unsubscribed, bounced).
    pub fn refused_by(&self, user: &User) -> bool {
        self.refusals.iter().any(|(f, _)| is_set(user, *f))
    }
}

/// True when the user's column `field` holds a value.
fn is_set(user: &User, field: UserField) -> bool {
    match field {
        UserField::TelegramChatId => user.telegram_chat_id.is_some(),
        UserField::Email => user.email.is_some(),
        UserField::TelegramBlockedAt => user.telegram_blocked_at.is_some(),
        UserField::EmailUnsubscribedAt => user.email_unsubscribed_at.is_some(),
        UserField::EmailBouncedAt => user.email_bounced_at.is_some(),
    }
}

/// What the composition root says about a channel when it registers the channel's adapter:
/// where its addresses come from, which template part it renders, and how its provider counts
/// its rate. (Its rate and concurrency are the adapter's and the worker settings'.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSpec {
    /// Where addresses come from and when users are skipped.
    pub reach: Reach,
    /// The template part rendered for it.
    pub format: MessageFormat,
    /// The provider counts the rate in any sliding second at its end, after network jitter
    /// (Telegram): a late answer moves the shared send slots back.
    pub strict_window: bool,
}

impl ChannelSpec {
    /// The spec of a built-in kind: Telegram (chat id, chat format, strict window) or e-mail
    /// (address, e-mail format).
    pub fn built_in(kind: ChannelKind) -> Option<ChannelSpec> {
        match kind {
            ChannelKind::TELEGRAM => Some(ChannelSpec {
                reach: Reach::telegram(),
                format: MessageFormat::Chat,
                strict_window: true,
            }),
            ChannelKind::EMAIL => Some(ChannelSpec {
                reach: Reach::email(),
                format: MessageFormat::Email,
                strict_window: false,
            }),
            _ => None,
        }
    }
}

/// How each known channel reaches users: what an audience source needs to turn an audience
/// into recipient rows. Telegram and e-mail are always in; the composition root adds the
/// channels it registers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reaches(BTreeMap<ChannelKind, Reach>);

impl Default for Reaches {
    fn default() -> Self {
        Reaches(BTreeMap::from([
            (ChannelKind::TELEGRAM, Reach::telegram()),
            (ChannelKind::EMAIL, Reach::email()),
        ]))
    }
}

impl Reaches {
    /// Adds or replaces a channel's reach.
    pub fn with(mut self, kind: ChannelKind, reach: Reach) -> Self {
        self.0.insert(kind, reach);
        self
    }

    /// The reach of `kind`, or an error naming the channel.
    pub fn get(&self, kind: ChannelKind) -> crate::Result<&Reach> {
        self.0.get(&kind).ok_or_else(|| {
            crate::Error::Invalid(format!(
                "channel `{kind}` is not configured: nothing says where its addresses come from"
            ))
        })
    }

    /// Every channel with its reach.
    pub fn iter(&self) -> impl Iterator<Item = (ChannelKind, &Reach)> {
        self.0.iter().map(|(k, r)| (*k, r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_names_of_the_two_channel_era_read_and_write_unchanged() {
        for (name, policy) in NAMED {
            assert_eq!(name.parse::<ChannelPolicy>().unwrap(), policy);
            assert_eq!(policy.to_string(), name);
            assert_eq!(
                serde_json::to_string(&policy).unwrap(),
                format!("\"{name}\"")
            );
        }
        assert_eq!(
            "all:telegram,email".parse::<ChannelPolicy>().unwrap(),
            ChannelPolicy::BOTH
        );
        assert_eq!(
            " First_Reachable: telegram , email "
                .parse::<ChannelPolicy>()
                .unwrap(),
            ChannelPolicy::TELEGRAM_THEN_EMAIL
        );
        assert_eq!(
            "first_reachable:email".parse::<ChannelPolicy>().unwrap(),
            ChannelPolicy::EMAIL
        );
        assert_eq!(
            "Telegram-Then-Email".parse::<ChannelPolicy>().unwrap(),
            ChannelPolicy::TELEGRAM_THEN_EMAIL
        );
    }

    #[test]
    fn registered_kinds_make_new_policies() {
        let pigeon = ChannelKind::register("pigeon_post").unwrap();
        assert_eq!(ChannelKind::register("pigeon_post").unwrap(), pigeon);
        assert!(ChannelKind::all().contains(&pigeon));
        let chain: ChannelPolicy = "first_reachable:telegram,pigeon_post,email"
            .parse()
            .unwrap();
        assert_eq!(chain.mode(), PolicyMode::FirstReachable);
        assert_eq!(
            chain.channels(),
            &[ChannelKind::TELEGRAM, pigeon, ChannelKind::EMAIL]
        );
        assert_eq!(
            chain.before(ChannelKind::EMAIL),
            &[ChannelKind::TELEGRAM, pigeon]
        );
        assert_eq!(
            chain.after(ChannelKind::TELEGRAM),
            &[pigeon, ChannelKind::EMAIL]
        );
        assert_eq!(
            chain.to_string(),
            "first_reachable:telegram,pigeon_post,email"
        );
        let alone: ChannelPolicy = "pigeon_post".parse().unwrap();
        assert_eq!(alone.channels(), &[pigeon]);
        assert_eq!(alone.to_string(), "pigeon_post");
        assert!(ChannelPolicy::BOTH.before(ChannelKind::EMAIL).is_empty());
        assert!(ChannelPolicy::BOTH.after(ChannelKind::TELEGRAM).is_empty());
    }

    #[test]
    fn bad_kinds_and_policies_are_named() {
        for (bad, why) in [
            ("Pigeon", "not a valid channel name"),
            ("9lives", "not a valid channel name"),
            ("both", "name of a channel policy"),
            ("", "not a valid channel name"),
        ] {
            let err = ChannelKind::register(bad).unwrap_err();
            assert!(err.0.contains(why), "{bad}: {err}");
        }
        let err = "carrier".parse::<ChannelKind>().unwrap_err();
        assert!(
            err.0
                .starts_with("unknown channel `carrier`; expected one of: telegram, email")
        );
        for (bad, why) in [
            ("sometimes:telegram", "(no policy mode `sometimes`)"),
            ("all:telegram,telegram", "appears twice"),
            ("all:telegram,fax", "(no channel `fax`)"),
            ("first_reachable:", "(no channel ``)"),
            ("telegram_and_email", "(no channel `telegram_and_email`)"),
        ] {
            let err = bad.parse::<ChannelPolicy>().unwrap_err();
            assert!(err.0.contains(why), "{bad}: {err}");
            assert!(err.0.contains(&format!("`{bad}`")), "{bad}: {err}");
        }
        assert!(serde_json::from_str::<ChannelPolicy>("\"never\"").is_err());
    }
}
