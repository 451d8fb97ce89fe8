//! `message_templates`: named, versioned message templates.

use sea_orm::entity::prelude::*;

/// A row of `message_templates`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "message_templates")]
pub struct Model {
    /// Id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Unique name.
    #[sea_orm(unique)]
    pub name: String,
    /// What it is for.
    pub description: String,
    /// Telegram text.
    pub telegram_text: Option<String>,
    /// `ParseMode::as_str()`.
    pub parse_mode: String,
    /// Telegram link preview.
    pub link_preview: bool,
    /// serde JSON of the `Vec<MediaRef>` the Telegram message shows; null when none.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub telegram_media: Option<Json>,
    /// serde JSON of the `Vec<Vec<UrlButton>>` under the Telegram message; null when none.
    #[sea_orm(column_type = "JsonBinary", nullable)]
    pub telegram_buttons: Option<Json>,
    /// E-mail subject.
    pub email_subject: Option<String>,
    /// E-mail HTML body.
    pub email_html: Option<String>,
    /// E-mail plain-text body.
    pub email_text: Option<String>,
    /// Incremented on every update.
    pub version: i32,
    /// Created.
    pub created_at: DateTimeUtc,
    /// Last changed.
    pub updated_at: DateTimeUtc,
}

/// Relations of `message_templates`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// Broadcasts created from the template.
    #[sea_orm(has_many = "super::broadcasts::Entity")]
    Broadcasts,
}

impl Related<super::broadcasts::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Broadcasts.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
