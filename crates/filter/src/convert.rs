//! Rows of the store's entities turned into domain records, and database errors into the
//! domain's [`Error`].

use broadcast_domain::{
    Competition, EmailAddress, Error, Registration, RegistrationStatus, Role, TelegramChatId, User,
};
use broadcast_store::entity::{competitions, registrations, users};
use sea_orm::{DbErr, RuntimeErr, sqlx};

/// A database error as the ports report it: connection trouble, a busy SQLite file and
/// PostgreSQL serialisation failures or deadlocks are worth retrying; the rest is unexpected.
pub(crate) fn db_error(e: DbErr) -> Error {
    if is_transient(&e) {
        Error::Unavailable(e.to_string())
    } else {
        Error::Internal(format!("audience query failed: {e}"))
    }
}

fn is_transient(e: &DbErr) -> bool {
    let sqlx_err = match e {
        DbErr::ConnectionAcquire(_) | DbErr::Conn(_) => return true,
        DbErr::Exec(RuntimeErr::SqlxError(e)) | DbErr::Query(RuntimeErr::SqlxError(e)) => e,
        _ => return false,
    };
    match &**sqlx_err {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed => true,
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // SQLite: SQLITE_BUSY, SQLITE_LOCKED (and extended codes); PostgreSQL:
            // serialization_failure, deadlock_detected, connection exceptions.
            let code = code.as_ref();
            ["5", "6", "261", "262", "517", "40001", "40P01"].contains(&code)
                || code.starts_with("08")
        }
        _ => false,
    }
}

fn corrupt(what: &str, id: i64, detail: impl std::fmt::Display) -> Error {
    Error::Internal(format!("{what} {id} has an invalid stored value: {detail}"))
}

pub(crate) fn user(m: users::Model) -> Result<User, Error> {
    let email = m
        .email
        .as_deref()
        .map(EmailAddress::parse)
        .transpose()
        .map_err(|e| corrupt("user", m.id, e))?;
    let telegram_chat_id = m
        .telegram_chat_id
        .map(TelegramChatId::new)
        .transpose()
        .map_err(|e| corrupt("user", m.id, e))?;
    let attributes = match m.attributes {
        serde_json::Value::Object(map) => map,
        serde_json::Value::Null => serde_json::Map::new(),
        other => {
            return Err(corrupt(
                "user",
                m.id,
                format!("attributes {other} is not an object"),
            ));
        }
    };
    Ok(User {
        id: m.id,
        external_id: m.external_id,
        telegram_chat_id,
        email,
        first_name: m.first_name,
        last_name: m.last_name,
        username: m.username,
        language: m.language,
        country: m.country,
        city: m.city,
        attributes,
        telegram_blocked_at: m.telegram_blocked_at,
        email_unsubscribed_at: m.email_unsubscribed_at,
        email_bounced_at: m.email_bounced_at,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

pub(crate) fn registration(m: registrations::Model) -> Result<Registration, Error> {
    Ok(Registration {
        id: m.id,
        user_id: m.user_id,
        competition_id: m.competition_id,
        role: m
            .role
            .parse::<Role>()
            .map_err(|e| corrupt("registration", m.id, e))?,
        status: m
            .status
            .parse::<RegistrationStatus>()
            .map_err(|e| corrupt("registration", m.id, e))?,
        created_at: m.created_at,
    })
}

pub(crate) fn competition(m: competitions::Model) -> Competition {
    Competition {
        id: m.id,
        slug: m.slug,
        name: m.name,
        starts_on: m.starts_on,
        city: m.city,
        country: m.country,
        created_at: m.created_at,
    }
}
