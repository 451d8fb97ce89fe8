//! `users`: the audience.

use sea_orm::entity::prelude::*;

/// A row of `users`.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "users")]
pub struct Model {
    /// Id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The platform's own identifier (unique).
    #[sea_orm(unique)]
    pub external_id: Option<String>,
    /// Telegram chat id (unique).
    #[sea_orm(unique)]
    pub telegram_chat_id: Option<i64>,
    /// E-mail address.
    pub email: Option<String>,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Telegram user name.
    pub username: Option<String>,
    /// Preferred language.
    pub language: Option<String>,
    /// Country.
    pub country: Option<String>,
    /// City.
    pub city: Option<String>,
    /// `fold_case(country)`, what filters compare.
    pub country_key: Option<String>,
    /// `fold_case(city)`, what filters compare.
    pub city_key: Option<String>,
    /// `fold_case(email)`, what filters and the import's uniqueness check compare.
    pub email_key: Option<String>,
    /// Free-form JSON object.
    #[sea_orm(column_type = "JsonBinary")]
    pub attributes: Json,
    /// When the user blocked the bot.
    pub telegram_blocked_at: Option<DateTimeUtc>,
    /// When the user unsubscribed from e-mail.
    pub email_unsubscribed_at: Option<DateTimeUtc>,
    /// When mail to the user bounced.
    pub email_bounced_at: Option<DateTimeUtc>,
    /// Created.
    pub created_at: DateTimeUtc,
    /// Last changed.
    pub updated_at: DateTimeUtc,
}

/// Relations of `users`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The user's registrations.
    #[sea_orm(has_many = "super::registrations::Entity")]
    Registrations,
    /// The user's delivery rows.
    #[sea_orm(has_many = "super::broadcast_recipients::Entity")]
    BroadcastRecipients,
}

impl Related<super::registrations::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Registrations.def()
    }
}

impl Related<super::broadcast_recipients::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::BroadcastRecipients.def()
    }
}

impl Related<super::competitions::Entity> for Entity {
    fn to() -> RelationDef {
        super::registrations::Relation::Competition.def()
    }
    fn via() -> Option<RelationDef> {
        Some(super::registrations::Relation::User.def().rev())
    }
}

impl ActiveModelBehavior for ActiveModel {}
