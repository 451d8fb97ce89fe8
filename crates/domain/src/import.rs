//! The rules of an audience import, shared by every store: which rows are refused, and how the
//! message names the place. A store adds only what it must look up (the current holders of chat
//! ids and addresses, the users and competitions that registrations refer to) and applies the
//! whole batch or nothing.

use std::collections::{HashMap, HashSet};
use std::hash::Hash;

use crate::error::{Error, Result};
use crate::filter::fold_case;
use crate::model::{NewCompetition, NewRegistration, NewUser};
use crate::types::UserId;

/// Where an imported row came from: its file line, or its position when it has no line.
pub fn import_place(line: u64, index: usize) -> String {
    if line > 0 {
        format!("line {line}")
    } else {
        format!("row {}", index + 1)
    }
}

/// Remembers the first place of each key and reports a repeat naming both places.
struct Seen<K> {
    first: HashMap<K, String>,
}

impl<K: Hash + Eq> Seen<K> {
    fn new() -> Self {
        Self {
            first: HashMap::new(),
        }
    }

    fn check(
        &mut self,
        key: K,
        place: &str,
        column: &str,
        what: impl FnOnce() -> String,
    ) -> Result<()> {
        match self.first.get(&key) {
            Some(first) => Err(Error::Invalid(format!(
                "{place}, column `{column}`: {} is also on {first}",
                what()
            ))),
            None => {
                self.first.insert(key, place.to_owned());
                Ok(())
            }
        }
    }
}

fn required(place: &str, column: &str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::Invalid(format!(
            "{place}, column `{column}`: a value is required"
        )));
    }
    Ok(())
}

/// Checks a batch of users on its own: every row has an external id, and no external id, chat
/// id or e-mail address (compared with [`fold_case`]) is on two rows.
pub fn check_users(rows: &[NewUser]) -> Result<()> {
    let mut external = Seen::new();
    let mut chats = Seen::new();
    let mut emails = Seen::new();
    for (i, row) in rows.iter().enumerate() {
        let place = import_place(row.line, i);
        required(&place, "external_id", &row.external_id)?;
        external.check(row.external_id.as_str(), &place, "external_id", || {
            format!("`{}`", row.external_id)
        })?;
        if let Some(chat) = row.telegram_chat_id {
            chats.check(chat, &place, "telegram_chat_id", || chat.to_string())?;
        }
        if let Some(email) = &row.email {
            emails.check(fold_case(email.as_ref()), &place, "email", || {
                format!("`{email}`")
            })?;
        }
    }
    Ok(())
}

/// A stored user that holds a chat id or an e-mail address an import may want.
#[derive(Debug, Clone, Copy)]
pub struct Holder<'a> {
    /// Its id.
    pub id: UserId,
    /// Its external id, when it has one.
    pub external_id: Option<&'a str>,
    /// Its chat id.
    pub telegram_chat_id: Option<i64>,
    /// Its address.
    pub email: Option<&'a str>,
}

impl Holder<'_> {
    fn describe(&self) -> String {
        match self.external_id {
            Some(ext) => format!("user `{ext}`"),
            None => format!("user {}", self.id),
        }
    }
}

/// Refuses rows whose chat id or e-mail address belongs to a stored user that the batch does not
/// rewrite (a user the batch rewrites takes its values from the batch, which [`check_users`]
/// checks). `holders` may be every stored user or only those holding one of the batch's values.
pub fn check_holders<'a>(
    rows: &[NewUser],
    holders: impl IntoIterator<Item = Holder<'a>>,
) -> Result<()> {
    let rewritten: HashSet<&str> = rows.iter().map(|r| r.external_id.as_str()).collect();
    let mut chat_owner = HashMap::new();
    let mut email_owner = HashMap::new();
    for holder in holders {
        if holder.external_id.is_some_and(|e| rewritten.contains(e)) {
            continue;
        }
        if let Some(chat) = holder.telegram_chat_id {
            chat_owner.insert(chat, holder);
        }
        if let Some(email) = holder.email {
            email_owner.insert(fold_case(email), holder);
        }
    }
    for (i, row) in rows.iter().enumerate() {
        let place = import_place(row.line, i);
        if let Some(chat) = row.telegram_chat_id
            && let Some(owner) = chat_owner.get(&chat.get())
        {
            return Err(Error::Invalid(format!(
                "{place}, column `telegram_chat_id`: chat id {chat} already belongs to {}",
                owner.describe()
            )));
        }
        if let Some(email) = &row.email
            && let Some(owner) = email_owner.get(&fold_case(email.as_ref()))
        {
            return Err(Error::Invalid(format!(
                "{place}, column `email`: `{email}` already belongs to {}",
                owner.describe()
            )));
        }
    }
    Ok(())
}

/// Checks a batch of competitions on its own: slug and name given, no slug twice.
pub fn check_competitions(rows: &[NewCompetition]) -> Result<()> {
    let mut slugs = Seen::new();
    for (i, row) in rows.iter().enumerate() {
        let place = import_place(row.line, i);
        required(&place, "slug", &row.slug)?;
        required(&place, "name", &row.name)?;
        slugs.check(row.slug.as_str(), &place, "slug", || {
            format!("`{}`", row.slug)
        })?;
    }
    Ok(())
}

/// Checks a batch of registrations on its own: no (user, competition) pair twice.
pub fn check_registrations(rows: &[NewRegistration]) -> Result<()> {
    let mut pairs = Seen::new();
    for (i, row) in rows.iter().enumerate() {
        pairs.check(
            (row.user_external_id.as_str(), row.competition_slug.as_str()),
            &import_place(row.line, i),
            "competition_slug",
            || {
                format!(
                    "the registration of user `{}` to `{}`",
                    row.user_external_id, row.competition_slug
                )
            },
        )?;
    }
    Ok(())
}

/// The error for a registration naming a user or competition that does not exist.
pub fn unknown_in_import(line: u64, index: usize, what: &str, key: &str) -> Error {
    Error::Invalid(format!(
        "{}: unknown {what} `{key}`",
        import_place(line, index)
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{EmailAddress, TelegramChatId};

    fn user(line: u64, ext: &str, chat: Option<i64>, email: Option<&str>) -> NewUser {
        NewUser {
            line,
            external_id: ext.to_owned(),
            telegram_chat_id: chat.map(|c| TelegramChatId::new(c).unwrap()),
            email: email.map(|e| EmailAddress::parse(e).unwrap()),
            first_name: String::new(),
            last_name: String::new(),
            username: None,
            language: None,
            country: None,
            city: None,
            attributes: Default::default(),
            telegram_blocked: false,
            email_unsubscribed: false,
        }
    }

    #[test]
    fn a_batch_names_the_repeated_value_and_both_places() {
        let err = |rows: &[NewUser]| check_users(rows).unwrap_err().to_string();
        assert_eq!(
            err(&[user(2, "u1", None, None), user(3, " ", None, None)]),
            "line 3, column `external_id`: a value is required"
        );
        assert_eq!(
            err(&[user(2, "u1", Some(5), None), user(4, "u2", Some(5), None)]),
            "line 4, column `telegram_chat_id`: 5 is also on line 2"
        );
        assert_eq!(
            err(&[
                user(0, "u1", None, Some("Ünal@x.org")),
                user(0, "u2", None, Some("ünal@X.org"))
            ]),
            "row 2, column `email`: `ünal@x.org` is also on row 1"
        );
    }

    #[test]
    fn holders_rewritten_by_the_batch_give_way() {
        let rows = [user(2, "u1", Some(5), Some("a@x.org"))];
        let holder = |ext, chat, email| Holder {
            id: 9,
            external_id: Some(ext),
            telegram_chat_id: chat,
            email,
        };
        assert!(check_holders(&rows, [holder("u1", Some(5), Some("A@x.org"))]).is_ok());
        assert_eq!(
            check_holders(&rows, [holder("u7", None, Some("A@x.org"))])
                .unwrap_err()
                .to_string(),
            "line 2, column `email`: `a@x.org` already belongs to user `u7`"
        );
        assert_eq!(
            check_holders(&rows, [holder("u7", Some(5), None)])
                .unwrap_err()
                .to_string(),
            "line 2, column `telegram_chat_id`: chat id 5 already belongs to user `u7`"
        );
    }
}
