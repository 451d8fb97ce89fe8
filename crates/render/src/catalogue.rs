//! The variable catalogue: every name a template may use, what it holds, an example value, and
//! how it is taken from a recipient.

use broadcast_domain::{RecipientContext, RenderEnv, VariableInfo};
use tera::Value;

/// A variable of the catalogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) enum Var {
    FirstName,
    LastName,
    FullName,
    Username,
    Email,
    TelegramId,
    Language,
    Country,
    City,
    CompetitionName,
    CompetitionDate,
    Role,
    RegistrationStatus,
    BroadcastName,
    CurrentDate,
    AppName,
    UnsubscribeUrl,
    Attributes,
}

/// One entry of the catalogue, as documented in `docs/templates.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Variable {
    /// Name as written in templates.
    pub name: &'static str,
    /// What it holds.
    pub description: &'static str,
    /// What it looks like for the sample recipient.
    pub example: &'static str,
}

impl Var {
    /// Every variable, in catalogue order.
    pub(crate) const ALL: [Var; 18] = [
        Var::FirstName,
        Var::LastName,
        Var::FullName,
        Var::Username,
        Var::Email,
        Var::TelegramId,
        Var::Language,
        Var::Country,
        Var::City,
        Var::CompetitionName,
        Var::CompetitionDate,
        Var::Role,
        Var::RegistrationStatus,
        Var::BroadcastName,
        Var::CurrentDate,
        Var::AppName,
        Var::UnsubscribeUrl,
        Var::Attributes,
    ];

    /// Looks a variable up by the name a template uses.
    pub(crate) fn from_name(name: &str) -> Option<Var> {
        Var::ALL.into_iter().find(|v| v.name() == name)
    }

    /// The name as written in templates.
    pub(crate) fn name(self) -> &'static str {
        self.info().name
    }

    /// Name, description and example.
    pub(crate) fn info(self) -> Variable {
        let (name, description, example) = match self {
            Var::FirstName => ("first_name", "The user's first name.", "Anna"),
            Var::LastName => ("last_name", "The user's last name.", "Schmidt"),
            Var::FullName => (
                "full_name",
                "First and last name joined by a space (just one of them when the other is empty).",
                "Anna Schmidt",
            ),
            Var::Username => (
                "username",
                "The user's Telegram user name, without `@`; empty when unknown.",
                "anna_s",
            ),
            Var::Email => (
                "email",
                "The user's e-mail address; empty when unknown.",
                "anna.schmidt@example.org",
            ),
            Var::TelegramId => (
                "telegram_id",
                "The user's Telegram chat id; empty when the user never talked to the bot.",
                "123456789",
            ),
            Var::Language => (
                "language",
                "The user's preferred language code; empty when unknown.",
                "de",
            ),
            Var::Country => (
                "country",
                "The user's country; empty when unknown.",
                "Germany",
            ),
            Var::City => ("city", "The user's city; empty when unknown.", "Berlin"),
            Var::CompetitionName => (
                "competition_name",
                "Name of the competition of the registration the audience filter matched; empty \
                 when the recipient was selected without one.",
                "Spring Open 2026",
            ),
            Var::CompetitionDate => (
                "competition_date",
                "First day of that competition as YYYY-MM-DD; empty when unknown.",
                "2026-04-18",
            ),
            Var::Role => (
                "role",
                "The user's role in that competition: participant, judge, mentor, organizer or \
                 volunteer; empty without a registration.",
                "participant",
            ),
            Var::RegistrationStatus => (
                "registration_status",
                "State of that registration: pending, confirmed, waitlisted or cancelled; empty \
                 without a registration.",
                "confirmed",
            ),
            Var::BroadcastName => (
                "broadcast_name",
                "Name of the broadcast being sent.",
                "Registration reminder",
            ),
            Var::CurrentDate => (
                "current_date",
                "The day the message is rendered (UTC) as YYYY-MM-DD.",
                "2026-03-01",
            ),
            Var::AppName => (
                "app_name",
                "Name of the platform sending the message.",
                "Broadcast",
            ),
            Var::UnsubscribeUrl => (
                "unsubscribe_url",
                "The recipient's own one-click unsubscribe link; empty when no public URL is \
                 configured.",
                "https://example.org/unsubscribe/abc123",
            ),
            Var::Attributes => (
                "attributes",
                "The user's free-form attributes (a JSON object): `{{ attributes.shirt_size }}`. \
                 Write `{{ attributes.key | default(value=\"\") }}` for a key some users lack.",
                "{\"shirt_size\": \"M\"}",
            ),
        };
        Variable {
            name,
            description,
            example,
        }
    }

    fn bit(self) -> u32 {
        1 << (self as u32)
    }

    /// The value of this variable for one recipient. Missing optional values are empty strings.
    pub(crate) fn value(
        self,
        recipient: &RecipientContext,
        env: &RenderEnv,
        unsubscribe_url: Option<&str>,
    ) -> Result<Value, String> {
        let user = &recipient.user;
        let text = |s: Option<&str>| Value::from(s.unwrap_or(""));
        Ok(match self {
            Var::FirstName => Value::from(user.first_name.as_str()),
            Var::LastName => Value::from(user.last_name.as_str()),
            Var::FullName => Value::from(user.full_name()),
            Var::Username => text(user.username.as_deref()),
            Var::Email => text(user.email.as_ref().map(AsRef::as_ref)),
            Var::TelegramId => match user.telegram_chat_id {
                Some(id) => Value::from(id.to_string()),
                None => Value::from(""),
            },
            Var::Language => text(user.language.as_deref()),
            Var::Country => text(user.country.as_deref()),
            Var::City => text(user.city.as_deref()),
            Var::CompetitionName => text(recipient.competition.as_ref().map(|c| c.name.as_str())),
            Var::CompetitionDate => {
                match recipient.competition.as_ref().and_then(|c| c.starts_on) {
                    Some(day) => Value::from(day.format("%Y-%m-%d").to_string()),
                    None => Value::from(""),
                }
            }
            Var::Role => text(recipient.registration.as_ref().map(|r| r.role.as_str())),
            Var::RegistrationStatus => {
                text(recipient.registration.as_ref().map(|r| r.status.as_str()))
            }
            Var::BroadcastName => Value::from(env.broadcast_name.as_str()),
            Var::CurrentDate => Value::from(env.current_date.format("%Y-%m-%d").to_string()),
            Var::AppName => Value::from(env.app_name.as_str()),
            Var::UnsubscribeUrl => text(unsubscribe_url),
            Var::Attributes => Value::try_from_serializable(&user.attributes)
                .map_err(|e| format!("the user's attributes cannot be used: {e}"))?,
        })
    }
}

/// A set of catalogue variables (the ones a template part uses).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct VarSet(u32);

impl VarSet {
    pub(crate) fn insert(&mut self, var: Var) {
        self.0 |= var.bit();
    }

    pub(crate) fn union(self, other: VarSet) -> VarSet {
        VarSet(self.0 | other.0)
    }

    pub(crate) fn iter(self) -> impl Iterator<Item = Var> {
        Var::ALL.into_iter().filter(move |v| self.0 & v.bit() != 0)
    }
}

/// The whole catalogue, in the order of `docs/templates.md`.
pub fn catalogue() -> Vec<Variable> {
    Var::ALL.into_iter().map(Var::info).collect()
}

/// The catalogue as the domain's [`VariableInfo`] list.
pub(crate) fn variable_infos() -> Vec<VariableInfo> {
    Var::ALL
        .into_iter()
        .map(|v| {
            let info = v.info();
            VariableInfo {
                name: info.name.to_owned(),
                description: info.description.to_owned(),
            }
        })
        .collect()
}

/// Every name of the catalogue.
pub(crate) fn known_names() -> Vec<String> {
    Var::ALL.into_iter().map(|v| v.name().to_owned()).collect()
}

/// Builds the rendering context of one recipient with just the variables in `vars`.
pub(crate) fn context(
    vars: VarSet,
    recipient: &RecipientContext,
    env: &RenderEnv,
    unsubscribe_url: Option<&str>,
) -> Result<tera::Context, String> {
    let mut ctx = tera::Context::new();
    for var in vars.iter() {
        ctx.insert_value(var.name(), var.value(recipient, env, unsubscribe_url)?);
    }
    Ok(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_round_trip() {
        let names = known_names();
        let mut sorted = names.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), names.len());
        for v in Var::ALL {
            assert_eq!(Var::from_name(v.name()), Some(v));
        }
        assert_eq!(Var::from_name("nope"), None);
    }

    #[test]
    fn var_sets_hold_what_was_inserted() {
        let mut set = VarSet::default();
        set.insert(Var::City);
        set.insert(Var::Attributes);
        let mut other = VarSet::default();
        other.insert(Var::FirstName);
        let all: Vec<_> = set.union(other).iter().collect();
        assert_eq!(all, [Var::FirstName, Var::City, Var::Attributes]);
    }
}
