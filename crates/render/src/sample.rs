//! The sample recipient: what validation renders a template for, and what previews show when
//! there is no real audience yet. Its values are the examples of the catalogue.

use broadcast_domain::{
    Attributes, Competition, EmailAddress, RecipientContext, Registration, RegistrationStatus,
    RenderEnv, Role, TelegramChatId, User,
};
use chrono::{DateTime, NaiveDate};

/// The unsubscribe link used for the sample recipient.
pub const SAMPLE_UNSUBSCRIBE_URL: &str = "https://example.org/unsubscribe/abc123";

/// A recipient with every field set: the examples of `docs/templates.md`.
pub fn sample_recipient() -> RecipientContext {
    let at = DateTime::from_timestamp(1_767_225_600, 0).unwrap_or_default(); // 2026-01-01
    let mut attributes = Attributes::new();
    attributes.insert("shirt_size".to_owned(), "M".into());
    RecipientContext {
        user: User {
            id: 1,
            external_id: Some("u-0001".to_owned()),
            telegram_chat_id: TelegramChatId::new(123_456_789).ok(),
            email: EmailAddress::parse("anna.schmidt@example.org").ok(),
            first_name: "Anna".to_owned(),
            last_name: "Schmidt".to_owned(),
            username: Some("anna_s".to_owned()),
            language: Some("de".to_owned()),
            country: Some("Germany".to_owned()),
            city: Some("Berlin".to_owned()),
            attributes,
            telegram_blocked_at: None,
            email_unsubscribed_at: None,
            email_bounced_at: None,
            created_at: at,
            updated_at: at,
        },
        competition: Some(Competition {
            id: 1,
            slug: "spring-open-2026".to_owned(),
            name: "Spring Open 2026".to_owned(),
            starts_on: NaiveDate::from_ymd_opt(2026, 4, 18),
            city: Some("Berlin".to_owned()),
            country: Some("Germany".to_owned()),
            created_at: at,
        }),
        registration: Some(Registration {
            id: 1,
            user_id: 1,
            competition_id: 1,
            role: Role::Participant,
            status: RegistrationStatus::Confirmed,
            created_at: at,
        }),
    }
}

/// The environment of the sample: a broadcast named "Registration reminder" on 2026-03-01.
pub fn sample_env() -> RenderEnv {
    RenderEnv {
        broadcast_name: "Registration reminder".to_owned(),
        app_name: "Broadcast".to_owned(),
        current_date: NaiveDate::from_ymd_opt(2026, 3, 1).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalogue::Var;

    #[test]
    fn sample_values_are_the_documented_examples() {
        let (r, env) = (sample_recipient(), sample_env());
        for var in Var::ALL {
            let value = var.value(&r, &env, Some(SAMPLE_UNSUBSCRIBE_URL)).unwrap();
            let shown = if var == Var::Attributes {
                serde_json::to_string(&r.user.attributes).unwrap()
            } else {
                value.as_str().unwrap().to_owned()
            };
            let example = var.info().example.replace("\": ", "\":");
            assert_eq!(shown, example, "{}", var.name());
        }
    }
}
