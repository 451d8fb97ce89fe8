//! Case-insensitive matching that is the same on every backend: `users.country_key`,
//! `users.city_key` and `users.email_key` hold the trimmed Unicode lower case of the country,
//! city and e-mail address (`broadcast_domain::fold_case`), written by the store with every
//! change of a user, and compared by the audience filter and the import's uniqueness check.
//!
//! Before, both compared `LOWER(column)`, which is Unicode-aware on PostgreSQL but folds ASCII
//! only on SQLite: `ŁÓDŹ` found the users of `Łódź` on one backend and not on the other. The
//! keys of existing users are computed here, in Rust, with the same rule (a migration is frozen
//! in time, so it keeps its own copy of the rule instead of calling the domain's).

use sea_orm_migration::prelude::*;
use sea_orm_migration::schema::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, TransactionTrait};

#[derive(DeriveMigrationName)]
pub(crate) struct Migration;

/// The domain's `fold_case` as of this migration.
fn fold(text: &str) -> String {
    text.trim().to_lowercase()
}

// async_trait only matches the trait when the `SchemaManager` lifetime stays elided.
#[allow(elided_lifetimes_in_paths)]
#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for key in [Users::CountryKey, Users::CityKey, Users::EmailKey] {
            // One column per statement: SQLite's ALTER TABLE adds one at a time.
            manager
                .alter_table(
                    Table::alter()
                        .table(Users::Table)
                        .add_column(text_null(key))
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("idx_users_email_key")
                    .table(Users::Table)
                    .col(Users::EmailKey)
                    .to_owned(),
            )
            .await?;
        backfill(manager).await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_users_email_key")
                    .table(Users::Table)
                    .to_owned(),
            )
            .await?;
        for key in [Users::CountryKey, Users::CityKey, Users::EmailKey] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Users::Table)
                        .drop_column(key)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

/// Computes the keys of every existing user, in one transaction.
async fn backfill(manager: &SchemaManager<'_>) -> Result<(), DbErr> {
    let db = manager.get_connection();
    let txn = db.begin().await?;
    let select = Query::select()
        .columns([Users::Id, Users::Country, Users::City, Users::Email])
        .from(Users::Table)
        .and_where(
            Expr::col(Users::Country)
                .is_not_null()
                .or(Expr::col(Users::City).is_not_null())
                .or(Expr::col(Users::Email).is_not_null()),
        )
        .to_owned();
    let rows = txn.query_all(&select).await?;
    for row in rows {
        let id: i64 = row.try_get("", "id")?;
        let key = |column: &str| -> Result<Option<String>, DbErr> {
            Ok(row
                .try_get::<Option<String>>("", column)?
                .as_deref()
                .map(fold))
        };
        let update = Query::update()
            .table(Users::Table)
            .values([
                (Users::CountryKey, key("country")?.into()),
                (Users::CityKey, key("city")?.into()),
                (Users::EmailKey, key("email")?.into()),
            ])
            .and_where(Expr::col(Users::Id).eq(id))
            .to_owned();
        txn.execute(&update).await?;
    }
    txn.commit().await
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
    Country,
    City,
    Email,
    CountryKey,
    CityKey,
    EmailKey,
}
