//! `competitions`: events users register for.

use sea_orm::entity::prelude::*;

/// A row of `competitions`.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "competitions")]
pub struct Model {
    /// Id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// Unique short key.
    #[sea_orm(unique)]
    pub slug: String,
    /// Display name.
    pub name: String,
    /// Day it starts.
    pub starts_on: Option<Date>,
    /// City.
    pub city: Option<String>,
    /// Country.
    pub country: Option<String>,
    /// Created.
    pub created_at: DateTimeUtc,
}

/// Relations of `competitions`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// Registrations to the competition.
    #[sea_orm(has_many = "super::registrations::Entity")]
    Registrations,
}

impl Related<super::registrations::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Registrations.def()
    }
}

impl Related<super::users::Entity> for Entity {
    fn to() -> RelationDef {
        super::registrations::Relation::User.def()
    }
    fn via() -> Option<RelationDef> {
        Some(super::registrations::Relation::Competition.def().rev())
    }
}

impl ActiveModelBehavior for ActiveModel {}
