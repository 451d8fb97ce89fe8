//! AdminStore and AuditLog.

use broadcast_domain::{AdminStore, AuditEntry, AuditLog, Error};
use serde_json::json;

use crate::support::{stores, t};

#[tokio::test]
async fn administrators() {
    for (db, store) in stores().await {
        let b = db.backend();
        let alice = store
            .create_admin("alice", "$argon2id$hash1", t(0))
            .await
            .unwrap();
        assert_eq!(
            (alice.username.as_str(), alice.last_login_at),
            ("alice", None),
            "{b}"
        );
        let err = store
            .create_admin("alice", "$argon2id$x", t(1))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Conflict(m) if m == "an administrator named `alice` already exists"),
            "{b}: {err:?}"
        );
        store
            .create_admin("Alice", "$argon2id$hash2", t(2))
            .await
            .unwrap();
        assert!(
            matches!(
                store.create_admin("", "h", t(0)).await,
                Err(Error::Invalid(_))
            ),
            "{b}"
        );
        assert!(
            matches!(
                store.create_admin("bob", " ", t(0)).await,
                Err(Error::Invalid(_))
            ),
            "{b}"
        );

        assert_eq!(
            store.find_admin("alice").await.unwrap(),
            Some(alice.clone()),
            "{b}"
        );
        let upper = store.find_admin("Alice").await.unwrap().unwrap();
        assert_eq!(
            upper.password_hash, "$argon2id$hash2",
            "{b}: names are case-sensitive"
        );
        assert_eq!(store.find_admin("ALICE").await.unwrap(), None, "{b}");

        store
            .set_admin_password("alice", "$argon2id$new")
            .await
            .unwrap();
        store.record_login("alice", t(99)).await.unwrap();
        let alice = store.find_admin("alice").await.unwrap().unwrap();
        assert_eq!(alice.password_hash, "$argon2id$new", "{b}");
        assert_eq!(alice.last_login_at, Some(t(99)), "{b}");
        for err in [
            store.set_admin_password("nobody", "h").await.unwrap_err(),
            store.record_login("nobody", t(0)).await.unwrap_err(),
        ] {
            assert!(
                matches!(
                    err,
                    Error::NotFound {
                        entity: "administrator",
                        ..
                    }
                ),
                "{b}: {err:?}"
            );
        }
        let names: Vec<String> = store
            .list_admins()
            .await
            .unwrap()
            .into_iter()
            .map(|a| a.username)
            .collect();
        assert_eq!(names, ["Alice", "alice"], "{b}");
    }
}

#[tokio::test]
async fn audit_log_newest_first() {
    for (db, store) in stores().await {
        let b = db.backend();
        let entry = |n: i64, at: i64| AuditEntry {
            id: 0,
            actor: format!("admin{n}"),
            action: "broadcast.launch".into(),
            target_type: "broadcast".into(),
            target_id: Some(n),
            details: json!({"n": n, "nested": {"ok": true}}),
            at: t(at),
        };
        for (n, at) in [(1, 100), (2, 300), (3, 200), (4, 300)] {
            store.record(entry(n, at)).await.unwrap();
        }
        let recent = store.recent(0, 0).await.unwrap();
        assert_eq!(
            recent
                .iter()
                .map(|e| e.target_id.unwrap())
                .collect::<Vec<_>>(),
            [4, 2, 3, 1],
            "{b}: by time, then newest id"
        );
        assert_eq!(
            recent[0].details,
            json!({"n": 4, "nested": {"ok": true}}),
            "{b}"
        );
        assert_eq!(recent[0].actor, "admin4");
        assert!(recent[0].id > 0);
        let page = store.recent(2, 1).await.unwrap();
        assert_eq!(
            page.iter()
                .map(|e| e.target_id.unwrap())
                .collect::<Vec<_>>(),
            [2, 3],
            "{b}"
        );
        let tail = store.recent(0, 3).await.unwrap();
        assert_eq!(
            tail.iter()
                .map(|e| e.target_id.unwrap())
                .collect::<Vec<_>>(),
            [1],
            "{b}"
        );
    }
}
