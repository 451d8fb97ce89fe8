//! `registrations`: a user's registration to a competition, with role and status.

use sea_orm::entity::prelude::*;

/// A row of `registrations`; unique per (user_id, competition_id).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "registrations")]
pub struct Model {
    /// Id.
    #[sea_orm(primary_key)]
    pub id: i64,
    /// The user.
    pub user_id: i64,
    /// The competition.
    pub competition_id: i64,
    /// `Role::as_str()`.
    pub role: String,
    /// `RegistrationStatus::as_str()`.
    pub status: String,
    /// Created.
    pub created_at: DateTimeUtc,
    /// Last changed.
    pub updated_at: DateTimeUtc,
}

/// Relations of `registrations`.
#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {
    /// The registered user.
    #[sea_orm(
        belongs_to = "super::users::Entity",
        from = "Column::UserId",
        to = "super::users::Column::Id",
        on_delete = "Cascade"
    )]
    User,
    /// The competition.
    #[sea_orm(
        belongs_to = "super::competitions::Entity",
        from = "Column::CompetitionId",
        to = "super::competitions::Column::Id",
        on_delete = "Cascade"
    )]
    Competition,
}

impl Related<super::users::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::User.def()
    }
}

impl Related<super::competitions::Entity> for Entity {
    fn to() -> RelationDef {
        Relation::Competition.def()
    }
}

impl ActiveModelBehavior for ActiveModel {}
