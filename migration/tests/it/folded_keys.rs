//! Migration 8: the folded keys of existing users are computed with Unicode case folding on
//! both backends, and go away on `down`.

use broadcast_migration::Migrator;
use broadcast_testkit::TestDb;
use chrono::{TimeZone, Utc};
use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Alias, Expr, Query};
use sea_orm_migration::{MigratorTrait, SchemaManager};

async fn user(db: &TestDb, country: Option<&str>, city: Option<&str>, email: Option<&str>) {
    let at = Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap();
    let stmt = Query::insert()
        .into_table(Alias::new("users"))
        .columns(["country", "city", "email", "created_at", "updated_at"].map(Alias::new))
        .values_panic([
            Expr::val(country.map(str::to_owned)),
            Expr::val(city.map(str::to_owned)),
            Expr::val(email.map(str::to_owned)),
            Expr::val(at),
            Expr::val(at),
        ])
        .to_owned();
    db.conn()
        .execute(&stmt)
        .await
        .unwrap_or_else(|e| panic!("{}: insert: {e}", db.backend()));
}

type Keys = (Option<String>, Option<String>, Option<String>);

async fn keys(db: &TestDb) -> Vec<Keys> {
    let stmt = Query::select()
        .columns(["country_key", "city_key", "email_key"].map(Alias::new))
        .from(Alias::new("users"))
        .order_by(Alias::new("id"), sea_orm::Order::Asc)
        .to_owned();
    db.conn()
        .query_all(&stmt)
        .await
        .expect("select keys")
        .into_iter()
        .map(|row| {
            let get = |c: &str| row.try_get::<Option<String>>("", c).expect(c);
            (get("country_key"), get("city_key"), get("email_key"))
        })
        .collect()
}

#[tokio::test]
async fn keys_of_existing_users_fold_unicode_case_on_every_backend() {
    for db in crate::unmigrated().await {
        let backend = db.backend();
        Migrator::up(db.conn(), Some(7)).await.expect("up to 7");
        user(&db, Some(" POLSKA "), Some("ŁÓDŹ"), Some("Zoë@Example.org")).await;
        user(&db, None, Some("Kraków"), None).await;
        user(&db, None, None, None).await;
        Migrator::up(db.conn(), Some(1)).await.expect("up to 8");
        let s = |v: &str| Some(v.to_owned());
        assert_eq!(
            keys(&db).await,
            vec![
                (s("polska"), s("łódź"), s("zoë@example.org")),
                (None, s("kraków"), None),
                (None, None, None),
            ],
            "{backend}"
        );

        Migrator::down(db.conn(), Some(1)).await.expect("down 1");
        let manager = SchemaManager::new(db.conn());
        for column in ["country_key", "city_key", "email_key"] {
            assert!(
                !manager
                    .has_column("users", column)
                    .await
                    .expect("has_column"),
                "{backend}: {column} is gone"
            );
        }
    }
}
