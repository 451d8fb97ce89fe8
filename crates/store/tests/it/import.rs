//! AudienceStore: CSV import (happy path, upserts, every kind of bad row leaving the tables
//! unchanged), users, registrations and recipient contexts.

use broadcast_app::csv_import::{parse_competitions, parse_registrations, parse_users};
use broadcast_domain::{
    AudienceStore, ChannelKind, DeliveryStatus, Error, ImportReport, Recipient, RegistrationStatus,
    Role, TelegramChatId, UserQuery,
};
use broadcast_store::Store;
use broadcast_store::entity::{competitions, registrations, users};
use sea_orm::{EntityTrait, PaginatorTrait};

use crate::support::{stores, t};

const USERS: &str = "\
external_id,first_name,last_name,email,telegram_chat_id,username,language,country,city,attributes,telegram_blocked,email_unsubscribed
u1,Ann,Smith,ann@example.org,101,ann,de,Germany,Berlin,\"{\"\"team\"\":\"\"red\"\"}\",no,no
u2,Bob,Jones,,102,@bobby,en,UK,London,,yes,
u3,Cid,,cid@Example.ORG,,,,,,,,yes
";

const COMPETITIONS: &str = "\
slug,name,starts_on,city,country
berlin-26,Berlin Open,2026-05-01,Berlin,Germany
london-26,London Cup,,London,UK
";

const REGISTRATIONS: &str = "\
user_external_id,competition_slug,role,status
u1,berlin-26,judge,confirmed
u2,berlin-26,participant,pending
u1,london-26,mentor,waitlisted
";

fn report(inserted: u64, updated: u64) -> ImportReport {
    ImportReport { inserted, updated }
}

async fn import_all(store: &Store) {
    let users = parse_users(USERS.as_bytes()).unwrap();
    assert_eq!(store.import_users(users, t(0)).await.unwrap(), report(3, 0));
    let comps = parse_competitions(COMPETITIONS.as_bytes()).unwrap();
    assert_eq!(
        store.import_competitions(comps, t(0)).await.unwrap(),
        report(2, 0)
    );
    let regs = parse_registrations(REGISTRATIONS.as_bytes()).unwrap();
    assert_eq!(
        store.import_registrations(regs, t(0)).await.unwrap(),
        report(3, 0)
    );
}

async fn counts(store: &Store) -> [u64; 3] {
    [
        users::Entity::find().count(store.conn()).await.unwrap(),
        competitions::Entity::find()
            .count(store.conn())
            .await
            .unwrap(),
        registrations::Entity::find()
            .count(store.conn())
            .await
            .unwrap(),
    ]
}

async fn user_by_ext(store: &Store, ext: &str) -> broadcast_domain::User {
    let page = store
        .list_users(&UserQuery {
            search: Some(ext.into()),
            ..Default::default()
        })
        .await
        .unwrap();
    page.items
        .into_iter()
        .find(|u| u.external_id.as_deref() == Some(ext))
        .unwrap_or_else(|| panic!("no user {ext}"))
}

#[tokio::test]
async fn csv_import_happy_path() {
    for (db, store) in stores().await {
        let b = db.backend();
        import_all(&store).await;
        assert_eq!(counts(&store).await, [3, 2, 3], "{b}");

        let ann = user_by_ext(&store, "u1").await;
        assert_eq!(ann.full_name(), "Ann Smith");
        assert_eq!(ann.email.as_ref().unwrap().as_ref(), "ann@example.org");
        assert_eq!(
            ann.telegram_chat_id,
            Some(TelegramChatId::new(101).unwrap())
        );
        assert_eq!(ann.attributes["team"], "red", "{b}");
        assert_eq!(ann.country.as_deref(), Some("Germany"));
        assert_eq!(ann.telegram_blocked_at, None, "{b}");
        assert_eq!(store.get_user(ann.id).await.unwrap(), ann, "{b}");
        let bob = user_by_ext(&store, "u2").await;
        assert_eq!(bob.username.as_deref(), Some("bobby"), "{b}: `@` dropped");
        assert_eq!(bob.email, None);
        assert_eq!(bob.telegram_blocked_at, Some(t(0)), "{b}");
        let cid = user_by_ext(&store, "u3").await;
        assert_eq!(cid.email.as_ref().unwrap().as_ref(), "cid@example.org");
        assert_eq!(cid.email_unsubscribed_at, Some(t(0)), "{b}");

        let comps = store.list_competitions().await.unwrap();
        assert_eq!(
            comps.iter().map(|c| c.slug.as_str()).collect::<Vec<_>>(),
            ["berlin-26", "london-26"],
            "{b}"
        );
        assert_eq!(
            comps[0].starts_on,
            chrono::NaiveDate::from_ymd_opt(2026, 5, 1)
        );

        let regs = store.registrations_of(ann.id).await.unwrap();
        assert_eq!(regs.len(), 2, "{b}");
        assert_eq!(
            (regs[0].0.role, regs[0].0.status),
            (Role::Judge, RegistrationStatus::Confirmed)
        );
        assert_eq!(regs[0].1.slug, "berlin-26");
        assert_eq!(regs[1].1.slug, "london-26");
        assert!(
            store.registrations_of(cid.id).await.unwrap().is_empty(),
            "{b}"
        );
        assert!(
            matches!(
                store.registrations_of(9999).await,
                Err(Error::NotFound { .. })
            ),
            "{b}"
        );
    }
}

#[tokio::test]
async fn reimport_updates_and_keeps_first_flag_times() {
    for (db, store) in stores().await {
        let b = db.backend();
        import_all(&store).await;
        let bob_id = user_by_ext(&store, "u2").await.id;
        // u1 and u2 swap chat ids, u2 says "not blocked", u3 blocks the bot, u4 is new.
        let users = parse_users(
            "external_id,first_name,telegram_chat_id,telegram_blocked,email_unsubscribed,email\n\
             u1,Anna,102,,,ann@example.org\n\
             u2,Bob,101,no,,\n\
             u3,Cid,,yes,yes,cid@example.org\n\
             u4,Dee,104,,,\n"
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            store.import_users(users, t(1_000)).await.unwrap(),
            report(1, 3),
            "{b}"
        );
        assert_eq!(counts(&store).await[0], 4, "{b}");
        let ann = user_by_ext(&store, "u1").await;
        assert_eq!(ann.first_name, "Anna", "{b}");
        assert_eq!(ann.last_name, "", "{b}: an absent column clears the value");
        assert_eq!(
            ann.telegram_chat_id.map(TelegramChatId::get),
            Some(102),
            "{b}"
        );
        assert_eq!(ann.updated_at, t(1_000));
        assert_eq!(ann.created_at, t(0));
        let bob = store.get_user(bob_id).await.unwrap();
        assert_eq!(
            bob.telegram_chat_id.map(TelegramChatId::get),
            Some(101),
            "{b}"
        );
        assert_eq!(
            bob.telegram_blocked_at,
            Some(t(0)),
            "{b}: false does not unblock"
        );
        let cid = user_by_ext(&store, "u3").await;
        assert_eq!(cid.telegram_blocked_at, Some(t(1_000)), "{b}");
        assert_eq!(
            cid.email_unsubscribed_at,
            Some(t(0)),
            "{b}: the first time is kept"
        );

        let comps = parse_competitions(
            "slug,name,city\nberlin-26,Berlin Open 2026,Potsdam\nparis-26,Paris,\n".as_bytes(),
        )
        .unwrap();
        assert_eq!(
            store.import_competitions(comps, t(1_000)).await.unwrap(),
            report(1, 1)
        );
        let comps = store.list_competitions().await.unwrap();
        let berlin = comps.iter().find(|c| c.slug == "berlin-26").unwrap();
        assert_eq!(
            (berlin.name.as_str(), berlin.city.as_deref()),
            ("Berlin Open 2026", Some("Potsdam"))
        );
        assert_eq!(berlin.starts_on, None, "{b}");

        let regs = parse_registrations(
            "user_external_id,competition_slug,role,status\n\
             u2,berlin-26,volunteer,cancelled\n\
             u4,paris-26,participant,confirmed\n"
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            store.import_registrations(regs, t(1_000)).await.unwrap(),
            report(1, 1)
        );
        let bob_regs = store.registrations_of(bob_id).await.unwrap();
        assert_eq!(
            (bob_regs[0].0.role, bob_regs[0].0.status),
            (Role::Volunteer, RegistrationStatus::Cancelled),
            "{b}"
        );
        assert_eq!(counts(&store).await, [4, 3, 4], "{b}");
    }
}

#[derive(Debug, Clone, Copy)]
enum File {
    Users,
    Competitions,
    Registrations,
}

/// Parses and imports a file that must fail; returns the error text.
async fn try_import(store: &Store, file: File, text: &str) -> String {
    let input = text.as_bytes();
    let result = match file {
        File::Users => match parse_users(input) {
            Err(e) => return e.to_string(),
            Ok(rows) => store.import_users(rows, t(5)).await,
        },
        File::Competitions => match parse_competitions(input) {
            Err(e) => return e.to_string(),
            Ok(rows) => store.import_competitions(rows, t(5)).await,
        },
        File::Registrations => match parse_registrations(input) {
            Err(e) => return e.to_string(),
            Ok(rows) => store.import_registrations(rows, t(5)).await,
        },
    };
    match result {
        Err(Error::Invalid(msg)) => msg,
        other => panic!("{file:?} {text:?}: expected Error::Invalid, got {other:?}"),
    }
}

#[tokio::test]
async fn bad_rows_are_reported_and_nothing_is_written() {
    let cases: &[(File, &str, &str)] = &[
        (
            File::Users,
            "external_id,email\nu9,new@example.org\nu10,bob@\n",
            "users.csv line 3, column `email`: `bob@` is not a valid e-mail address",
        ),
        (
            File::Users,
            "external_id,telegram_chat_id\nu9,12x\n",
            "users.csv line 2, column `telegram_chat_id`: `12x` is not a valid Telegram chat id",
        ),
        (
            File::Users,
            "external_id,attributes\nu9,{broken\n",
            "users.csv line 2, column `attributes`: `{broken` is not valid JSON",
        ),
        (
            File::Users,
            "external_id,telegram_blocked\nu9,sometimes\n",
            "users.csv line 2, column `telegram_blocked`: `sometimes` is not a yes/no value",
        ),
        (
            File::Users,
            "external_id,shoe_size\nu9,44\n",
            "users.csv line 1: unknown column `shoe_size`",
        ),
        (
            File::Users,
            "first_name,email\nAnn,a@example.org\n",
            "users.csv line 1: missing required column(s): external_id",
        ),
        (
            File::Users,
            "external_id,first_name\nu9,Nine\nu10\n",
            "users.csv line 3: the row has 1 field(s) but the header has 2",
        ),
        (
            File::Users,
            "external_id\nu9\nu10\nu9\n",
            "users.csv line 4, column `external_id`: `u9` is also on line 2",
        ),
        (
            File::Users,
            "external_id,telegram_chat_id\nu9,909\nu10,101\n",
            "line 3, column `telegram_chat_id`: chat id 101 already belongs to user `u1`",
        ),
        (
            File::Users,
            "external_id,email\nu9,nine@example.org\nu10,ANN@EXAMPLE.org\n",
            "line 3, column `email`: `ANN@example.org` already belongs to user `u1`",
        ),
        (
            File::Users,
            "external_id,telegram_chat_id\nu9,555\nu10,555\n",
            "line 3, column `telegram_chat_id`: 555 is also on line 2",
        ),
        (
            File::Competitions,
            "slug,name,starts_on\nnew-26,New,2026-01-01\nbad-26,Bad,1 May 2026\n",
            "competitions.csv line 3, column `starts_on`: `1 May 2026` is not a date in the form YYYY-MM-DD",
        ),
        (
            File::Competitions,
            "slug,name\nnew-26,\n",
            "competitions.csv line 2, column `name`: a value is required",
        ),
        (
            File::Competitions,
            "slug,starts_on\nnew-26,2026-01-01\n",
            "competitions.csv line 1: missing required column(s): name",
        ),
        (
            File::Competitions,
            "slug,name\na-26,A\nb-26,B\na-26,A again\n",
            "competitions.csv line 4, column `slug`: `a-26` is also on line 2",
        ),
        (
            File::Registrations,
            "user_external_id,competition_slug,role,status\nu3,berlin-26,judge,confirmed\nu123,berlin-26,judge,confirmed\n",
            "line 3: unknown user `u123`",
        ),
        (
            File::Registrations,
            "user_external_id,competition_slug,role,status\nu3,berlin-26,judge,confirmed\nu3,rome-26,judge,confirmed\n",
            "line 3: unknown competition `rome-26`",
        ),
        (
            File::Registrations,
            "user_external_id,competition_slug,role,status\nu3,berlin-26,referee,confirmed\n",
            "registrations.csv line 2, column `role`: unknown role `referee`; expected one of: participant, judge, mentor, organizer, volunteer",
        ),
        (
            File::Registrations,
            "user_external_id,competition_slug,role,status\nu3,berlin-26,judge,maybe\n",
            "registrations.csv line 2, column `status`: unknown registration status `maybe`",
        ),
        (
            File::Registrations,
            "user_external_id,competition_slug,status\nu3,berlin-26,pending\n",
            "registrations.csv line 1: missing required column(s): role",
        ),
        (
            File::Registrations,
            "user_external_id,competition_slug,role,status\nu3,berlin-26,judge,pending\nu3,berlin-26,mentor,pending\n",
            "registrations.csv line 3, column `competition_slug`: the registration of user `u3` to `berlin-26` is also on line 2",
        ),
    ];
    for (db, store) in stores().await {
        let b = db.backend();
        import_all(&store).await;
        let before = counts(&store).await;
        let ann_before = user_by_ext(&store, "u1").await;
        for (file, text, expected) in cases {
            let err = try_import(&store, *file, text).await;
            assert!(
                err.starts_with(expected),
                "{b}: {text:?}\n got: {err}\nwant: {expected}"
            );
            assert_eq!(counts(&store).await, before, "{b}: {text:?} wrote rows");
        }
        assert_eq!(user_by_ext(&store, "u1").await, ann_before, "{b}");
    }
}

#[tokio::test]
async fn users_search_marks_and_chat_ids() {
    for (db, store) in stores().await {
        let b = db.backend();
        import_all(&store).await;
        let search = |s: &str, offset: u64, limit: u64| {
            let store = store.clone();
            let q = UserQuery {
                search: Some(s.into()),
                offset,
                limit,
            };
            async move {
                let page = store.list_users(&q).await.unwrap();
                let ext: Vec<String> = page
                    .items
                    .into_iter()
                    .map(|u| u.external_id.unwrap())
                    .collect();
                (page.total, ext)
            }
        };
        assert_eq!(
            search("ANN SMI", 0, 0).await,
            (1, vec!["u1".into()]),
            "{b}: full name"
        );
        assert_eq!(
            search("example.org", 0, 0).await,
            (2, vec!["u1".into(), "u3".into()])
        );
        assert_eq!(
            search("bobby", 0, 0).await,
            (1, vec!["u2".into()]),
            "{b}: user name"
        );
        assert_eq!(
            search("", 1, 1).await,
            (3, vec!["u2".into()]),
            "{b}: paging"
        );
        assert_eq!(
            search("", 1, 0).await,
            (3, vec!["u2".into(), "u3".into()]),
            "{b}"
        );
        assert_eq!(
            search("%", 0, 0).await.0,
            0,
            "{b}: LIKE wildcards are escaped"
        );
        assert_eq!(search("_", 0, 0).await.0, 0, "{b}");

        let ann = user_by_ext(&store, "u1").await;
        store.mark_telegram_blocked(ann.id, t(10)).await.unwrap();
        store.mark_telegram_blocked(ann.id, t(20)).await.unwrap();
        store.mark_email_unsubscribed(ann.id, t(30)).await.unwrap();
        store.mark_email_bounced(ann.id, t(40)).await.unwrap();
        let ann = store.get_user(ann.id).await.unwrap();
        assert_eq!(
            ann.telegram_blocked_at,
            Some(t(10)),
            "{b}: the first time is kept"
        );
        assert_eq!(ann.email_unsubscribed_at, Some(t(30)));
        assert_eq!(ann.email_bounced_at, Some(t(40)), "{b}");
        for err in [
            store.mark_telegram_blocked(999, t(0)).await.unwrap_err(),
            store.mark_email_unsubscribed(999, t(0)).await.unwrap_err(),
            store.mark_email_bounced(999, t(0)).await.unwrap_err(),
            store
                .update_chat_id(999, TelegramChatId::new(5).unwrap())
                .await
                .unwrap_err(),
            store.get_user(999).await.unwrap_err(),
        ] {
            assert!(
                matches!(err, Error::NotFound { entity: "user", .. }),
                "{b}: {err:?}"
            );
        }

        store
            .update_chat_id(ann.id, TelegramChatId::new(-100_777).unwrap())
            .await
            .unwrap();
        assert_eq!(
            store
                .get_user(ann.id)
                .await
                .unwrap()
                .telegram_chat_id
                .map(TelegramChatId::get),
            Some(-100_777),
            "{b}"
        );
        let err = store
            .update_chat_id(ann.id, TelegramChatId::new(102).unwrap())
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::Conflict(msg) if msg == "telegram chat id 102 already belongs to another user"),
            "{b}: {err:?}"
        );
    }
}

#[tokio::test]
async fn contexts_come_in_input_order_with_registrations() {
    for (db, store) in stores().await {
        let b = db.backend();
        import_all(&store).await;
        let ann = user_by_ext(&store, "u1").await;
        let cid = user_by_ext(&store, "u3").await;
        let regs = store.registrations_of(ann.id).await.unwrap();
        let london = regs.iter().find(|(_, c)| c.slug == "london-26").unwrap();
        let recipient = |id: i64, user: i64, registration_id: Option<i64>| Recipient {
            id,
            broadcast_id: 1,
            user_id: user,
            registration_id,
            channel: ChannelKind::EMAIL,
            address: String::new(),
            status: DeliveryStatus::Pending,
            skip_reason: None,
            attempts: 0,
            next_attempt_at: t(0),
            lease_owner: None,
            lease_expires_at: None,
            send_started_at: None,
            error_kind: None,
            last_error: None,
            provider_message_id: None,
            sent_at: None,
            uncertain_sends: 0,
            updated_at: t(0),
        };
        let input = [
            recipient(1, cid.id, None),
            recipient(2, ann.id, Some(london.0.id)),
            recipient(3, ann.id, None),
            recipient(4, cid.id, None),
        ];
        let contexts = store.contexts(&input).await.unwrap();
        assert_eq!(
            contexts.iter().map(|c| c.user.id).collect::<Vec<_>>(),
            [cid.id, ann.id, ann.id, cid.id],
            "{b}"
        );
        assert_eq!(contexts[1].registration.as_ref(), Some(&london.0), "{b}");
        assert_eq!(contexts[1].competition.as_ref(), Some(&london.1), "{b}");
        assert_eq!(
            contexts[1].registration.as_ref().unwrap().role,
            Role::Mentor
        );
        assert_eq!(
            (
                contexts[0].registration.as_ref(),
                contexts[0].competition.as_ref()
            ),
            (None, None)
        );
        assert!(store.contexts(&[]).await.unwrap().is_empty());

        let err = store
            .contexts(&[recipient(1, ann.id, None), recipient(2, 4242, None)])
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::NotFound { entity: "user", key } if key == "4242"),
            "{b}: {err:?}"
        );
    }
}
