//! The audience filter: which users a broadcast goes to.
//!
//! Every field is optional; fields combine with AND, the values of one list with OR. The three
//! registration fields (`competition_ids`, `roles`, `registration_statuses`) must hold for one
//! and the same registration: "judges of competition 3" means a registration to competition 3
//! with the role judge, not a judge somewhere and a registration to 3 elsewhere. An empty list is
//! the same as an absent field. Countries, cities and e-mail addresses match case-insensitively,
//! as [`fold_case`] defines it; [`AudienceFilter::matches`] is the definition every store (and
//! the SQL compiler's tests) follow.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::model::{Registration, User};
use crate::types::{CompetitionId, EmailAddress, RegistrationId, RegistrationStatus, Role, UserId};

/// Which users a broadcast goes to. Build it with [`AudienceFilter::from_json`] or field by field.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AudienceFilter {
    /// Registered for one of these competitions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub competition_ids: Vec<CompetitionId>,
    /// Registered with one of these roles.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<Role>,
    /// Registered with one of these statuses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub registration_statuses: Vec<RegistrationStatus>,
    /// Living in one of these countries (case-insensitive).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub countries: Vec<String>,
    /// Living in one of these cities (case-insensitive).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cities: Vec<String>,
    /// `true`: has an e-mail address; `false`: has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_email: Option<bool>,
    /// `true`: has a Telegram chat id; `false`: has none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub has_telegram: Option<bool>,
    /// One of these users.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub user_ids: Vec<UserId>,
    /// One of these e-mail addresses (case-insensitive).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub emails: Vec<EmailAddress>,
    /// None of these users.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude_user_ids: Vec<UserId>,
}

/// How text is compared without regard to case: trimmed, then in Unicode lower case (`Łódź`,
/// `ŁÓDŹ` and ` łódź ` are one city). Stores keep this form of the country, city and e-mail
/// address next to the original, so that every backend compares the same way.
pub fn fold_case(text: &str) -> String {
    text.trim().to_lowercase()
}

/// A filter that could not be read; the message names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid audience filter: {0}")]
pub struct FilterError(pub String);

const FIELDS: &[&str] = &[
    "competition_ids",
    "roles",
    "registration_statuses",
    "countries",
    "cities",
    "has_email",
    "has_telegram",
    "user_ids",
    "emails",
    "exclude_user_ids",
];

impl AudienceFilter {
    /// Parses a filter from JSON, naming the offending field on any error.
    pub fn from_json(text: &str) -> Result<Self, FilterError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| FilterError(format!("not valid JSON: {e}")))?;
        Self::from_value(value)
    }

    /// Reads a filter from a JSON value, naming the offending field on any error.
    pub fn from_value(value: Value) -> Result<Self, FilterError> {
        let Value::Object(map) = value else {
            return Err(FilterError(format!(
                "expected a JSON object with the fields {}, got {}",
                FIELDS.join(", "),
                kind_of(&value)
            )));
        };
        for key in map.keys() {
            if !FIELDS.contains(&key.as_str()) {
                return Err(FilterError(format!(
                    "unknown field `{key}`; known fields: {}",
                    FIELDS.join(", ")
                )));
            }
        }
        fn field<T: serde::de::DeserializeOwned + Default>(
            map: &serde_json::Map<String, Value>,
            name: &str,
        ) -> Result<T, FilterError> {
            match map.get(name) {
                None | Some(Value::Null) => Ok(T::default()),
                Some(v) => serde_json::from_value(v.clone())
                    .map_err(|e| FilterError(format!("field `{name}`: {e}"))),
            }
        }
        let filter = Self {
            competition_ids: field(&map, "competition_ids")?,
            roles: field(&map, "roles")?,
            registration_statuses: field(&map, "registration_statuses")?,
            countries: field(&map, "countries")?,
            cities: field(&map, "cities")?,
            has_email: field(&map, "has_email")?,
            has_telegram: field(&map, "has_telegram")?,
            user_ids: field(&map, "user_ids")?,
            emails: field(&map, "emails")?,
            exclude_user_ids: field(&map, "exclude_user_ids")?,
        };
        filter.validate()?;
        Ok(filter.normalised())
    }

    /// Checks values that the types alone do not rule out.
    pub fn validate(&self) -> Result<(), FilterError> {
        for (name, list) in [("countries", &self.countries), ("cities", &self.cities)] {
            if list.iter().any(|s| s.trim().is_empty()) {
                return Err(FilterError(format!(
                    "field `{name}`: values must not be empty"
                )));
            }
        }
        for (name, ids) in [
            ("competition_ids", &self.competition_ids),
            ("user_ids", &self.user_ids),
            ("exclude_user_ids", &self.exclude_user_ids),
        ] {
            if let Some(id) = ids.iter().find(|id| **id <= 0) {
                return Err(FilterError(format!(
                    "field `{name}`: {id} is not a valid id (ids are positive)"
                )));
            }
        }
        Ok(())
    }

    /// The same filter with lists sorted, deduplicated and trimmed, so equal filters compare equal.
    pub fn normalised(mut self) -> Self {
        fn dedup<T: Ord + Clone>(v: &mut Vec<T>) {
            let set: BTreeSet<T> = v.drain(..).collect();
            v.extend(set);
        }
        for list in [&mut self.countries, &mut self.cities] {
            for s in list.iter_mut() {
                *s = s.trim().to_owned();
            }
        }
        dedup(&mut self.competition_ids);
        dedup(&mut self.roles);
        dedup(&mut self.registration_statuses);
        dedup(&mut self.countries);
        dedup(&mut self.cities);
        dedup(&mut self.user_ids);
        dedup(&mut self.emails);
        dedup(&mut self.exclude_user_ids);
        self
    }

    /// Whether `user` belongs to the audience, and through which registration: `None` when not;
    /// `Some(None)` when it does and the filter has no registration fields; `Some(Some(id))` with
    /// the smallest id among the user's registrations that meet every registration field at
    /// once. `registrations` may hold other users' registrations too; they are ignored.
    pub fn matches<'r>(
        &self,
        user: &User,
        registrations: impl IntoIterator<Item = &'r Registration>,
    ) -> Option<Option<RegistrationId>> {
        fn folded_in(list: &[String], value: Option<&str>) -> bool {
            list.is_empty()
                || value.is_some_and(|v| {
                    let v = fold_case(v);
                    list.iter().any(|x| fold_case(x) == v)
                })
        }
        fn listed<T: PartialEq>(list: &[T], value: &T) -> bool {
            list.is_empty() || list.contains(value)
        }
        let emails: Vec<String> = self.emails.iter().map(|e| fold_case(e.as_ref())).collect();
        let user_ok = folded_in(&self.countries, user.country.as_deref())
            && folded_in(&self.cities, user.city.as_deref())
            && folded_in(&emails, user.email.as_ref().map(AsRef::as_ref))
            && self.has_email.is_none_or(|b| b == user.email.is_some())
            && self
                .has_telegram
                .is_none_or(|b| b == user.telegram_chat_id.is_some())
            && listed(&self.user_ids, &user.id)
            && !self.exclude_user_ids.contains(&user.id);
        if !user_ok {
            return None;
        }
        if !self.uses_registrations() {
            return Some(None);
        }
        registrations
            .into_iter()
            .filter(|r| {
                r.user_id == user.id
                    && listed(&self.competition_ids, &r.competition_id)
                    && listed(&self.roles, &r.role)
                    && listed(&self.registration_statuses, &r.status)
            })
            .map(|r| r.id)
            .min()
            .map(Some)
    }

    /// True when the filter constrains registrations (so the audience comes from them).
    pub fn uses_registrations(&self) -> bool {
        !self.competition_ids.is_empty()
            || !self.roles.is_empty()
            || !self.registration_statuses.is_empty()
    }

    /// The filter as compact JSON (for storage and display).
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| "{}".to_owned())
    }

    /// A short human description, e.g. `roles in [judge] AND has_email = true`.
    pub fn describe(&self) -> String {
        self.describe_with(&BTreeMap::new())
    }

    /// [`describe`](Self::describe) with each competition's name beside its id
    /// (`competition in [Berlin Open (#1)]`), from `names`; an id missing there stays an id.
    pub fn describe_with(&self, names: &BTreeMap<CompetitionId, String>) -> String {
        fn list<T: std::fmt::Display>(out: &mut Vec<String>, name: &str, v: &[T]) {
            if !v.is_empty() {
                let items: Vec<String> = v.iter().map(ToString::to_string).collect();
                out.push(format!("{name} in [{}]", items.join(", ")));
            }
        }
        let mut parts = Vec::new();
        let competitions: Vec<String> = self
            .competition_ids
            .iter()
            .map(|id| match names.get(id) {
                Some(name) => format!("{name} (#{id})"),
                None => id.to_string(),
            })
            .collect();
        list(&mut parts, "competition", &competitions);
        list(&mut parts, "role", &self.roles);
        list(&mut parts, "status", &self.registration_statuses);
        list(&mut parts, "country", &self.countries);
        list(&mut parts, "city", &self.cities);
        if let Some(b) = self.has_email {
            parts.push(format!("has_email = {b}"));
        }
        if let Some(b) = self.has_telegram {
            parts.push(format!("has_telegram = {b}"));
        }
        list(&mut parts, "user", &self.user_ids);
        list(&mut parts, "email", &self.emails);
        list(&mut parts, "not user", &self.exclude_user_ids);
        if parts.is_empty() {
            "everyone".to_owned()
        } else {
            parts.join(" AND ")
        }
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    fn user(id: UserId, city: &str, email: Option<&str>) -> User {
        User {
            id,
            external_id: None,
            telegram_chat_id: None,
            email: email.map(|e| EmailAddress::parse(e).unwrap()),
            first_name: String::new(),
            last_name: String::new(),
            username: None,
            language: None,
            country: None,
            city: Some(city.to_owned()),
            attributes: Default::default(),
            telegram_blocked_at: None,
            email_unsubscribed_at: None,
            email_bounced_at: None,
            created_at: Utc::now(),
            updated_at: Utc::now(),
        }
    }

    fn registration(id: i64, user_id: UserId, competition_id: i64, role: Role) -> Registration {
        Registration {
            id,
            user_id,
            competition_id,
            role,
            status: RegistrationStatus::Confirmed,
            created_at: Utc::now(),
        }
    }

    #[test]
    fn matching_folds_unicode_case_and_takes_the_smallest_matching_registration() {
        let lodz = user(1, " Łódź", Some("Zoë.Ü@Example.org"));
        let by_city = |c: &str| AudienceFilter {
            cities: vec![c.to_owned()],
            ..AudienceFilter::default()
        };
        for spelling in ["Łódź", "ŁÓDŹ", "łódź ", "ŁóDź"] {
            assert_eq!(
                by_city(spelling).matches(&lodz, []),
                Some(None),
                "{spelling}"
            );
        }
        assert_eq!(by_city("Lodz").matches(&lodz, []), None);
        let by_email = AudienceFilter {
            emails: vec![EmailAddress::parse("zoË.ü@example.ORG").unwrap()],
            ..AudienceFilter::default()
        };
        assert_eq!(by_email.matches(&lodz, []), Some(None));

        let regs = [
            registration(9, 1, 3, Role::Judge),
            registration(4, 2, 3, Role::Judge),
            registration(7, 1, 3, Role::Judge),
            registration(5, 1, 3, Role::Participant),
            registration(2, 1, 8, Role::Judge),
        ];
        let judges_of_3 = AudienceFilter {
            competition_ids: vec![3],
            roles: vec![Role::Judge],
            ..AudienceFilter::default()
        };
        assert_eq!(judges_of_3.matches(&lodz, &regs), Some(Some(7)));
        assert_eq!(judges_of_3.matches(&user(3, "x", None), &regs), None);
        let excluded = AudienceFilter {
            exclude_user_ids: vec![1],
            ..judges_of_3
        };
        assert_eq!(excluded.matches(&lodz, &regs), None);
        let has_telegram = AudienceFilter {
            has_telegram: Some(true),
            ..AudienceFilter::default()
        };
        assert_eq!(has_telegram.matches(&lodz, []), None);
    }

    #[test]
    fn parses_every_field() {
        let f = AudienceFilter::from_json(
            r#"{"competition_ids":[2,1,2],"roles":["judge"],"registration_statuses":["confirmed"],
                "countries":[" Germany "],"cities":["Berlin"],"has_email":true,"has_telegram":false,
                "user_ids":[5],"emails":["A@X.org"],"exclude_user_ids":[7]}"#,
        )
        .unwrap();
        assert_eq!(f.competition_ids, vec![1, 2]);
        assert_eq!(f.roles, vec![Role::Judge]);
        assert_eq!(f.countries, vec!["Germany".to_owned()]);
        assert_eq!(f.emails[0].as_ref(), "A@x.org");
        assert_eq!(f.has_telegram, Some(false));
        assert!(f.uses_registrations());
        assert_eq!(AudienceFilter::from_json(&f.to_json()).unwrap(), f);
    }

    #[test]
    fn errors_name_the_field() {
        let cases = [
            (r#"{"rolez":["judge"]}"#, "unknown field `rolez`"),
            (r#"{"has_email":"yes"}"#, "field `has_email`"),
            (
                r#"{"roles":["jduge"]}"#,
                "field `roles`: unknown role `jduge`",
            ),
            (r#"{"competition_ids":["x"]}"#, "field `competition_ids`"),
            (r#"{"emails":["nope"]}"#, "field `emails`"),
            (r#"{"user_ids":[0]}"#, "field `user_ids`"),
            (r#"{"cities":[""]}"#, "field `cities`"),
            (r#"[1]"#, "expected a JSON object"),
            (r#"{"roles": "#, "not valid JSON"),
        ];
        for (json, expected) in cases {
            let err = AudienceFilter::from_json(json).unwrap_err().to_string();
            assert!(err.contains(expected), "{json}: {err}");
        }
    }

    #[test]
    fn empty_filter_is_everyone() {
        let f = AudienceFilter::from_json("{}").unwrap();
        assert_eq!(f, AudienceFilter::default());
        assert_eq!(f.describe(), "everyone");
        assert_eq!(f.to_json(), "{}");
    }

    #[test]
    fn summaries_name_competitions_beside_their_ids() {
        let f =
            AudienceFilter::from_json(r#"{"competition_ids":[1,9],"roles":["judge"]}"#).unwrap();
        assert_eq!(f.describe(), "competition in [1, 9] AND role in [judge]");
        let names = BTreeMap::from([(1, "Berlin Open".to_owned())]);
        assert_eq!(
            f.describe_with(&names),
            "competition in [Berlin Open (#1), 9] AND role in [judge]"
        );
    }
}
