//! BroadcastStore: creation, listing, the compare-and-set status change and scheduling.

use broadcast_domain::{
    AudienceFilter, BroadcastStatus, BroadcastStore, ChannelPolicy, Error, Role, StatusChange,
    TemplateStore,
};
use broadcast_store::entity::broadcasts;
use sea_orm::{ActiveModelTrait, ActiveValue::Set, EntityTrait, IntoActiveModel};

use crate::support::{broadcast, content, new_broadcast, stores, t, template};

fn change(from: &[BroadcastStatus], to: BroadcastStatus, at: i64) -> StatusChange {
    StatusChange {
        from: from.to_vec(),
        to,
        at: t(at),
        reason: None,
        freeze: None,
        probe: None,
    }
}

#[tokio::test]
async fn create_get_and_list() {
    for (db, store) in stores().await {
        let b = db.backend();
        let tpl = template(&store, "T").await;
        let mut new = new_broadcast(tpl.id, "  Heats  ");
        new.channel_policy = ChannelPolicy::TELEGRAM_THEN_EMAIL;
        new.filter = AudienceFilter {
            roles: vec![Role::Judge],
            competition_ids: vec![3],
            ..Default::default()
        };
        let draft = store.create_broadcast(new.clone(), t(5)).await.unwrap();
        assert_eq!(draft.status, BroadcastStatus::Draft, "{b}");
        assert_eq!(draft.name, "Heats");
        assert_eq!(draft.filter, new.filter, "{b}");
        assert_eq!(draft.channel_policy, ChannelPolicy::TELEGRAM_THEN_EMAIL);
        assert_eq!(draft.template_id, Some(tpl.id));
        assert_eq!(draft.created_at, t(5), "{b}");
        assert_eq!(draft.created_by.as_deref(), Some("tester"));
        assert_eq!(store.get_broadcast(draft.id).await.unwrap(), draft, "{b}");

        new.scheduled_at = Some(t(60_000));
        let scheduled = store.create_broadcast(new.clone(), t(6)).await.unwrap();
        assert_eq!(scheduled.status, BroadcastStatus::Scheduled, "{b}");
        assert_eq!(scheduled.scheduled_at, Some(t(60_000)), "{b}");

        let all = store.list_broadcasts(&[], 0).await.unwrap();
        assert_eq!(
            all.iter().map(|x| x.id).collect::<Vec<_>>(),
            [scheduled.id, draft.id],
            "{b}: newest first"
        );
        assert_eq!(store.list_broadcasts(&[], 1).await.unwrap().len(), 1, "{b}");
        let drafts = store
            .list_broadcasts(&[BroadcastStatus::Draft, BroadcastStatus::Running], 0)
            .await
            .unwrap();
        assert_eq!(
            drafts.iter().map(|x| x.id).collect::<Vec<_>>(),
            [draft.id],
            "{b}"
        );

        let err = store
            .create_broadcast(new_broadcast(9999, "x"), t(0))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::NotFound { entity: "template", key } if key == "9999"),
            "{b}: {err:?}"
        );
        let err = store
            .create_broadcast(new_broadcast(tpl.id, "   "), t(0))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::Invalid(_)), "{b}: {err:?}");
        assert!(
            matches!(store.get_broadcast(9999).await, Err(Error::NotFound { .. })),
            "{b}"
        );

        // Deleting the template keeps the broadcast (and its frozen copy).
        store.delete_template(tpl.id).await.unwrap();
        assert_eq!(
            store.get_broadcast(draft.id).await.unwrap().template_id,
            None,
            "{b}"
        );
    }
}

#[tokio::test]
async fn status_changes_are_compare_and_set() {
    for (db, store) in stores().await {
        let b = db.backend();
        let draft = broadcast(&store, BroadcastStatus::Draft).await;
        let launch = StatusChange {
            freeze: Some(content()),
            probe: None,
            ..change(
                &[BroadcastStatus::Draft, BroadcastStatus::Scheduled],
                BroadcastStatus::Running,
                10,
            )
        };
        let running = store.change_status(draft.id, launch).await.unwrap();
        assert_eq!(running.status, BroadcastStatus::Running, "{b}");
        assert_eq!(running.started_at, Some(t(10)), "{b}");
        assert_eq!(running.frozen_template, Some(content()), "{b}");
        assert_eq!(running.finished_at, None);
        assert_eq!(running.updated_at, t(10), "{b}");

        let paused = store
            .change_status(
                draft.id,
                StatusChange {
                    reason: Some("SMTP down".into()),
                    ..change(&[BroadcastStatus::Running], BroadcastStatus::Paused, 20)
                },
            )
            .await
            .unwrap();
        assert_eq!(paused.status_reason.as_deref(), Some("SMTP down"), "{b}");

        let resumed = store
            .change_status(
                draft.id,
                change(&[BroadcastStatus::Paused], BroadcastStatus::Running, 30),
            )
            .await
            .unwrap();
        assert_eq!(
            resumed.started_at,
            Some(t(10)),
            "{b}: a resume keeps started_at"
        );
        assert_eq!(resumed.status_reason, None, "{b}: the reason is cleared");
        assert_eq!(
            resumed.frozen_template,
            Some(content()),
            "{b}: freeze None keeps it"
        );

        let done = store
            .change_status(
                draft.id,
                change(&[BroadcastStatus::Running], BroadcastStatus::Completed, 40),
            )
            .await
            .unwrap();
        assert_eq!(done.finished_at, Some(t(40)), "{b}");

        let err = store
            .change_status(
                draft.id,
                change(
                    &[BroadcastStatus::Paused, BroadcastStatus::Draft],
                    BroadcastStatus::Running,
                    50,
                ),
            )
            .await
            .unwrap_err();
        match err {
            Error::Conflict(msg) => assert_eq!(
                msg,
                format!(
                    "broadcast {} is completed; cannot move it to running (only from paused, draft)",
                    draft.id
                ),
                "{b}"
            ),
            other => panic!("{b}: expected a conflict, got {other:?}"),
        }
        assert_eq!(
            store.get_broadcast(draft.id).await.unwrap(),
            done,
            "{b}: unchanged"
        );

        let err = store
            .change_status(
                4242,
                change(&[BroadcastStatus::Draft], BroadcastStatus::Running, 0),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::NotFound { entity: "broadcast", key } if key == "4242"),
            "{b}: {err:?}"
        );
    }
}

#[tokio::test]
async fn parallel_status_changes_let_one_win() {
    for (db, store) in stores().await {
        let b = db.backend();
        let draft = broadcast(&store, BroadcastStatus::Draft).await;
        let launch = || change(&[BroadcastStatus::Draft], BroadcastStatus::Running, 1);
        let (x, y) = tokio::join!(
            store.change_status(draft.id, launch()),
            store.change_status(draft.id, launch())
        );
        assert_eq!(
            [x.is_ok(), y.is_ok()].iter().filter(|ok| **ok).count(),
            1,
            "{b}: exactly one launch wins: {x:?} {y:?}"
        );
    }
}

#[tokio::test]
async fn set_schedule_only_before_launch() {
    for (db, store) in stores().await {
        let b = db.backend();
        let draft = broadcast(&store, BroadcastStatus::Draft).await;
        let s = store
            .set_schedule(draft.id, Some(t(3_600_000)), t(1))
            .await
            .unwrap();
        assert_eq!(s.status, BroadcastStatus::Scheduled, "{b}");
        assert_eq!(s.scheduled_at, Some(t(3_600_000)));
        assert_eq!(s.updated_at, t(1));
        let s = store
            .set_schedule(draft.id, Some(t(7_200_000)), t(2))
            .await
            .unwrap();
        assert_eq!(s.scheduled_at, Some(t(7_200_000)), "{b}: rescheduled");
        let d = store.set_schedule(draft.id, None, t(3)).await.unwrap();
        assert_eq!(d.status, BroadcastStatus::Draft, "{b}");
        assert_eq!(d.scheduled_at, None);

        let running = broadcast(&store, BroadcastStatus::Running).await;
        let err = store
            .set_schedule(running.id, Some(t(5)), t(4))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Conflict(msg) if msg.starts_with(&format!("broadcast {} is running", running.id))),
            "{b}: {err:?}"
        );
        assert!(
            matches!(
                store.set_schedule(777, None, t(0)).await,
                Err(Error::NotFound { .. })
            ),
            "{b}"
        );
    }
}

#[tokio::test]
async fn garbage_in_the_database_is_an_internal_error_naming_the_column() {
    for (db, store) in stores().await {
        let b = db.backend();
        let draft = broadcast(&store, BroadcastStatus::Draft).await;
        let model = broadcasts::Entity::find_by_id(draft.id)
            .one(store.conn())
            .await
            .unwrap()
            .unwrap();
        let mut m = model.into_active_model();
        m.channel_policy = Set("carrier pigeon".into());
        m.update(store.conn()).await.unwrap();
        let err = store.get_broadcast(draft.id).await.unwrap_err();
        match err {
            Error::Internal(msg) => {
                assert!(msg.contains("broadcasts.channel_policy"), "{b}: {msg}");
                assert!(msg.contains("carrier pigeon"), "{b}: {msg}");
            }
            other => panic!("{b}: expected an internal error, got {other:?}"),
        }
    }
}

/// `channel_policy` holds the same text for the four policies of the two-channel era as before
/// channel kinds became data, so a database written then reads unchanged; a policy naming a
/// channel this process does not serve reads too (another process may serve it).
#[tokio::test]
async fn stored_policies_read_back_whatever_wrote_them() {
    for (db, store) in stores().await {
        let b = db.backend();
        let tpl = template(&store, "T").await;
        let draft = store
            .create_broadcast(new_broadcast(tpl.id, "Heats"), t(5))
            .await
            .unwrap();
        let set = |raw: &'static str| {
            let conn = store.conn().clone();
            async move {
                let mut m = broadcasts::Entity::find_by_id(draft.id)
                    .one(&conn)
                    .await
                    .unwrap()
                    .unwrap()
                    .into_active_model();
                m.channel_policy = Set(raw.to_owned());
                m.update(&conn).await.unwrap();
            }
        };
        for (raw, policy) in [
            ("telegram", ChannelPolicy::TELEGRAM),
            ("email", ChannelPolicy::EMAIL),
            ("both", ChannelPolicy::BOTH),
            ("telegram_then_email", ChannelPolicy::TELEGRAM_THEN_EMAIL),
        ] {
            set(raw).await;
            let read = store.get_broadcast(draft.id).await.unwrap();
            assert_eq!(read.channel_policy, policy, "{b}: {raw}");
            assert_eq!(read.channel_policy.to_string(), raw, "{b}");
        }

        set("first_reachable:telegram,stored_only_kind,email").await;
        let read = store.get_broadcast(draft.id).await.unwrap();
        assert_eq!(
            read.channel_policy.to_string(),
            "first_reachable:telegram,stored_only_kind,email",
            "{b}"
        );

        set("sometimes:telegram").await;
        let err = store.get_broadcast(draft.id).await.unwrap_err().to_string();
        assert!(
            err.contains("broadcasts.channel_policy") && err.contains("sometimes"),
            "{b}: {err}"
        );
    }
}
