//! The tables and columns the compiled statements read, named here so that the compiler does not
//! depend on the store. The store's tests run every compiled statement against the migrated
//! schema on SQLite and PostgreSQL, so a renamed column fails there.

use sea_orm::DeriveIden;

/// `users`.
#[derive(Debug, Clone, Copy, DeriveIden)]
pub enum Users {
    /// The table.
    Table,
    /// Id.
    Id,
    /// Telegram chat id.
    TelegramChatId,
    /// E-mail address.
    Email,
    /// `fold_case(email)`.
    EmailKey,
    /// `fold_case(country)`.
    CountryKey,
    /// `fold_case(city)`.
    CityKey,
    /// When the user blocked the bot.
    TelegramBlockedAt,
    /// When the user unsubscribed.
    EmailUnsubscribedAt,
    /// When mail to the user bounced.
    EmailBouncedAt,
    /// Free-form JSON attributes.
    Attributes,
}

/// `registrations`.
#[derive(Debug, Clone, Copy, DeriveIden)]
pub enum Registrations {
    /// The table.
    Table,
    /// Id.
    Id,
    /// The user.
    UserId,
    /// The competition.
    CompetitionId,
    /// Role.
    Role,
    /// Status.
    Status,
}
