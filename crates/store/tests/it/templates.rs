//! TemplateStore: CRUD, unique names, version bumps.

use broadcast_domain::{Error, ParseMode, TemplateName, TemplateStore};

use crate::support::{new_template, stores, template};

#[tokio::test]
async fn template_crud_and_versions() {
    for (db, store) in stores().await {
        let b = db.backend();
        let created = template(&store, "Reminder").await;
        assert_eq!(created.version, 1, "{b}");
        assert_eq!(created.name.as_ref(), "Reminder");
        assert_eq!(
            store.get_template(created.id).await.unwrap(),
            created,
            "{b}"
        );
        let found = store
            .find_template(&TemplateName::parse("Reminder").unwrap())
            .await
            .unwrap();
        assert_eq!(found.as_ref(), Some(&created), "{b}");
        assert_eq!(
            store
                .find_template(&TemplateName::parse("reminder").unwrap())
                .await
                .unwrap(),
            None,
            "{b}: names are case-sensitive"
        );

        let mut update = new_template("Reminder v2");
        update.content.parse_mode = ParseMode::MarkdownV2;
        update.content.link_preview = true;
        update.content.email_html = Some("<p>Hi</p>".into());
        let updated = store
            .update_template(created.id, update.clone())
            .await
            .unwrap();
        assert_eq!(updated.version, 2, "{b}");
        assert_eq!(updated.name.as_ref(), "Reminder v2");
        assert_eq!(updated.content, update.content, "{b}");
        assert_eq!(updated.created_at, created.created_at, "{b}");
        assert!(updated.updated_at >= created.updated_at, "{b}");
        let again = store.update_template(created.id, update).await.unwrap();
        assert_eq!(again.version, 3, "{b}");

        template(&store, "Another").await;
        let names: Vec<String> = store
            .list_templates()
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.name.to_string())
            .collect();
        assert_eq!(names, ["Another", "Reminder v2"], "{b}: listed by name");

        store.delete_template(created.id).await.unwrap();
        assert!(
            matches!(
                store.get_template(created.id).await,
                Err(Error::NotFound { .. })
            ),
            "{b}"
        );
        assert!(
            matches!(
                store.delete_template(created.id).await,
                Err(Error::NotFound { .. })
            ),
            "{b}"
        );
        assert!(
            matches!(
                store.update_template(created.id, new_template("X")).await,
                Err(Error::NotFound { .. })
            ),
            "{b}"
        );
    }
}

#[tokio::test]
async fn duplicate_template_names_conflict() {
    for (db, store) in stores().await {
        let b = db.backend();
        template(&store, "Welcome").await;
        let err = store
            .create_template(new_template("Welcome"))
            .await
            .unwrap_err();
        match err {
            Error::Conflict(msg) => {
                assert_eq!(msg, "a template named `Welcome` already exists", "{b}");
            }
            other => panic!("{b}: expected a conflict, got {other:?}"),
        }
        let other = template(&store, "Other").await;
        let err = store
            .update_template(other.id, new_template("Welcome"))
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Conflict(msg) if msg.contains("`Welcome` already exists")),
            "{b}: {err:?}"
        );
        assert_eq!(
            store.get_template(other.id).await.unwrap().version,
            1,
            "{b}"
        );
    }
}
