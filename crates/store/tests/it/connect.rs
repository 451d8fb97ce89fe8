//! Store::connect, Store::migrate and connection errors.

use broadcast_domain::{Error, TemplateStore};
use broadcast_store::Store;
use broadcast_testkit::{Backend, TestDb};
use sea_orm::DatabaseBackend;

use crate::support::{new_template, stores};

#[tokio::test]
async fn connects_by_url_and_migrates_idempotently() {
    for (db, _) in stores().await {
        let b = db.backend();
        let store = Store::connect(db.url()).await.unwrap();
        let expected = match b {
            Backend::Sqlite => DatabaseBackend::Sqlite,
            Backend::Postgres => DatabaseBackend::Postgres,
        };
        assert_eq!(store.backend(), expected, "{b}");
        store.migrate().await.unwrap();
        store
            .create_template(new_template("Via URL"))
            .await
            .unwrap();
        // A second pool sees the first one's writes.
        let other = Store::from_conn(db.conn().clone());
        assert_eq!(other.list_templates().await.unwrap().len(), 1, "{b}");
    }
}

#[tokio::test]
async fn migrate_creates_the_schema() {
    let mut dbs = vec![TestDb::sqlite_unmigrated().await];
    dbs.extend(TestDb::postgres_unmigrated().await);
    for db in dbs {
        let b = db.backend();
        let store = Store::from_conn(db.conn().clone());
        assert!(store.list_templates().await.is_err(), "{b}: no tables yet");
        store.migrate().await.unwrap();
        store.create_template(new_template("Fresh")).await.unwrap();
        assert_eq!(store.list_templates().await.unwrap().len(), 1, "{b}");
    }
}

#[tokio::test]
async fn bad_urls_and_unreachable_servers() {
    let err = Store::connect("mysql://localhost/x").await.unwrap_err();
    assert!(
        matches!(&err, Error::Invalid(msg) if msg.contains("unsupported database URL scheme")),
        "{err:?}"
    );
    // Nothing listens on port 1.
    let err = Store::connect("postgres://postgres@127.0.0.1:1/test")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unavailable(_)), "{err:?}");
}
