//! Materialising a broadcast's recipients: policies, skip reasons, idempotence, totals.

use std::collections::{BTreeMap, BTreeSet};

use broadcast_domain::{
    AudienceFilter, AudienceSource, AudienceStore, ChannelKind, ChannelPolicy, DeliveryStatus,
    Error, RegistrationStatus, SkipReason,
};

use crate::harness::{Loaded, RowView, email_reachable, now, telegram_reachable};

fn confirmed_at_euro(l: &Loaded) -> AudienceFilter {
    AudienceFilter {
        competition_ids: vec![l.competition("euro-robotics-2027")],
        registration_statuses: vec![RegistrationStatus::Confirmed],
        ..AudienceFilter::default()
    }
}

fn per_channel(rows: &[RowView]) -> BTreeMap<ChannelKind, usize> {
    let mut out = BTreeMap::new();
    for r in rows {
        *out.entry(r.channel).or_default() += 1;
    }
    out
}

#[tokio::test]
async fn every_policy_writes_the_expected_rows_and_the_count_predicts_them() {
    for l in Loaded::all().await {
        let f = confirmed_at_euro(&l);
        for policy in ChannelPolicy::NAMED {
            let what = format!("{} / {policy}", l.backend());
            let count = l.audience.count(&f, policy).await.unwrap();
            let broadcast = l.new_broadcast(&f, policy).await;
            let report = l
                .audience
                .materialise(broadcast, &f, policy, now())
                .await
                .unwrap();
            let rows = l.rows(broadcast).await;
            let set: BTreeSet<RowView> = rows.iter().cloned().collect();
            assert_eq!(set, l.expected_rows(&f, policy), "{what}");
            assert_eq!(set.len(), rows.len(), "{what}: no duplicates");

            // The messages of the count are what the operator is shown before launch.
            let queued = |c| report.queued.get(&c).copied().unwrap_or(0);
            for c in [ChannelKind::TELEGRAM, ChannelKind::EMAIL] {
                assert_eq!(queued(c), count.messages_on(c), "{what}: {c}");
            }
            for c in policy.channels() {
                assert!(
                    report.queued.contains_key(c),
                    "{what}: {c} reported even when 0"
                );
            }
            assert_eq!(report.inserted as usize, rows.len(), "{what}");
            assert_eq!(
                l.total_recipients(broadcast).await,
                rows.len() as i64,
                "{what}"
            );
            let channels = per_channel(&rows);
            match policy {
                ChannelPolicy::TELEGRAM => {
                    assert_eq!(channels.get(&ChannelKind::EMAIL), None, "{what}");
                }
                ChannelPolicy::EMAIL => {
                    assert_eq!(channels.get(&ChannelKind::TELEGRAM), None, "{what}");
                }
                ChannelPolicy::BOTH => {
                    assert_eq!(channels[&ChannelKind::TELEGRAM] as u64, count.users);
                    assert_eq!(channels[&ChannelKind::EMAIL] as u64, count.users);
                }
                ChannelPolicy::TELEGRAM_THEN_EMAIL => {
                    assert_eq!(channels[&ChannelKind::TELEGRAM] as u64, count.users);
                    assert_eq!(
                        channels[&ChannelKind::EMAIL] as u64,
                        count.users - count.reachable_on(ChannelKind::TELEGRAM),
                        "{what}: e-mail rows only for users Telegram cannot reach"
                    );
                }
                other => panic!("no expectation for policy {other}"),
            }
        }
    }
}

#[tokio::test]
async fn telegram_then_email_gives_email_rows_only_to_users_telegram_cannot_reach() {
    for l in Loaded::all().await {
        let f = confirmed_at_euro(&l);
        let policy = ChannelPolicy::TELEGRAM_THEN_EMAIL;
        let broadcast = l.new_broadcast(&f, policy).await;
        l.audience
            .materialise(broadcast, &f, policy, now())
            .await
            .unwrap();
        let rows = l.rows(broadcast).await;
        let selected = l.expected(&f);
        for u in l.users.iter().filter(|u| selected.contains_key(&u.id)) {
            let mine: Vec<&RowView> = rows.iter().filter(|r| r.user_id == u.id).collect();
            let email = mine.iter().find(|r| r.channel == ChannelKind::EMAIL);
            assert!(mine.iter().any(|r| r.channel == ChannelKind::TELEGRAM));
            if telegram_reachable(u) {
                assert!(
                    email.is_none(),
                    "{}: no e-mail row for {}",
                    l.backend(),
                    u.id
                );
            } else {
                let email = email.expect("an e-mail row for users Telegram cannot reach");
                let expected = if email_reachable(u) {
                    DeliveryStatus::Pending
                } else {
                    DeliveryStatus::Skipped
                };
                assert_eq!(email.status, expected, "{}: user {}", l.backend(), u.id);
            }
        }
        // Thomas blocked the bot: his Telegram row is skipped, his e-mail is the fallback.
        let thomas = l.user("u1199").id;
        let his: BTreeMap<ChannelKind, &RowView> = rows
            .iter()
            .filter(|r| r.user_id == thomas)
            .map(|r| (r.channel, r))
            .collect();
        assert_eq!(
            his[&ChannelKind::TELEGRAM].skip_reason,
            Some(SkipReason::TelegramBlocked)
        );
        assert_eq!(his[&ChannelKind::EMAIL].status, DeliveryStatus::Pending);
        assert_eq!(his[&ChannelKind::EMAIL].address, "thomas.berger@gmx.de");
    }
}

#[tokio::test]
async fn materialising_twice_inserts_nothing_the_second_time() {
    for l in Loaded::all().await {
        let f = confirmed_at_euro(&l);
        for policy in [ChannelPolicy::BOTH, ChannelPolicy::TELEGRAM_THEN_EMAIL] {
            let broadcast = l.new_broadcast(&f, policy).await;
            let first = l
                .audience
                .materialise(broadcast, &f, policy, now())
                .await
                .unwrap();
            let rows = l.rows(broadcast).await;
            assert!(first.inserted > 0);

            let later = now() + chrono::Duration::minutes(5);
            let second = l
                .audience
                .materialise(broadcast, &f, policy, later)
                .await
                .unwrap();
            assert_eq!(second.inserted, 0, "{} / {policy}", l.backend());
            assert_eq!(second.queued, first.queued);
            assert_eq!(second.skipped, first.skipped);
            // Existing rows are kept as they were (l.rows checks their timestamps are `now`).
            assert_eq!(l.rows(broadcast).await, rows);
            assert_eq!(l.total_recipients(broadcast).await, rows.len() as i64);
        }
    }
}

#[tokio::test]
async fn every_skip_reason_is_recorded() {
    for l in Loaded::all().await {
        // Bounce one confirmed participant's address: the e-mail row is skipped with the reason.
        let bounced = l
            .users
            .iter()
            .find(|u| {
                email_reachable(u)
                    && l.expected(&confirmed_at_euro(&l)).contains_key(&u.id)
                    && u.row.external_id != "u1192"
            })
            .unwrap()
            .id;
        l.store.mark_email_bounced(bounced, now()).await.unwrap();
        let mut l = l;
        l.users
            .iter_mut()
            .find(|u| u.id == bounced)
            .unwrap()
            .bounced = true;

        let f = confirmed_at_euro(&l);
        assert_eq!(
            l.audience.count(&f, ChannelPolicy::BOTH).await.unwrap(),
            l.expected_count(&f, ChannelPolicy::BOTH)
        );
        let broadcast = l.new_broadcast(&f, ChannelPolicy::BOTH).await;
        let report = l
            .audience
            .materialise(broadcast, &f, ChannelPolicy::BOTH, now())
            .await
            .unwrap();
        let rows = l.rows(broadcast).await;
        assert_eq!(
            rows.iter().cloned().collect::<BTreeSet<_>>(),
            l.expected_rows(&f, ChannelPolicy::BOTH)
        );
        for reason in [
            SkipReason::NoTelegram,
            SkipReason::NoEmail,
            SkipReason::TelegramBlocked,
            SkipReason::EmailUnsubscribed,
            SkipReason::EmailBounced,
        ] {
            assert!(
                report.skipped.get(&reason).copied().unwrap_or(0) > 0,
                "{}: the demo broadcast has {reason} rows: {:?}",
                l.backend(),
                report.skipped
            );
        }
        let row = |user: i64, channel: ChannelKind| {
            rows.iter()
                .find(|r| r.user_id == user && r.channel == channel)
                .unwrap()
                .clone()
        };
        let bounced_row = row(bounced, ChannelKind::EMAIL);
        assert_eq!(bounced_row.skip_reason, Some(SkipReason::EmailBounced));
        assert!(!bounced_row.address.is_empty(), "the address is kept");
        let claire = row(l.user("u1200").id, ChannelKind::EMAIL);
        assert_eq!(claire.skip_reason, Some(SkipReason::EmailUnsubscribed));
        assert_eq!(claire.address, "claire.fontaine@orange.fr");
        let mia = row(l.user("u1194").id, ChannelKind::TELEGRAM);
        assert_eq!(
            (mia.status, mia.address.as_str()),
            (DeliveryStatus::Skipped, "")
        );
        assert_eq!(mia.skip_reason, Some(SkipReason::NoTelegram));
        let max = row(l.user("u1192").id, ChannelKind::TELEGRAM);
        assert_eq!(max.status, DeliveryStatus::Pending);
        assert_eq!(
            max.address,
            l.user("u1192").row.telegram_chat_id.unwrap().to_string()
        );
    }
}

#[tokio::test]
async fn an_unknown_broadcast_is_not_found_and_writes_nothing() {
    for l in Loaded::all().await {
        let err = l
            .audience
            .materialise(
                987_654,
                &AudienceFilter::default(),
                ChannelPolicy::BOTH,
                now(),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                Error::NotFound {
                    entity: "broadcast",
                    ..
                }
            ),
            "{}: {err}",
            l.backend()
        );
        assert!(l.rows(987_654).await.is_empty());
    }
}

#[tokio::test]
async fn an_empty_audience_materialises_to_nothing() {
    for l in Loaded::all().await {
        let f = AudienceFilter {
            user_ids: vec![i64::MAX],
            ..AudienceFilter::default()
        };
        let broadcast = l.new_broadcast(&f, ChannelPolicy::BOTH).await;
        let report = l
            .audience
            .materialise(broadcast, &f, ChannelPolicy::BOTH, now())
            .await
            .unwrap();
        assert_eq!(report.inserted, 0);
        assert_eq!(report.queued.values().sum::<u64>(), 0);
        assert!(report.skipped.is_empty());
        assert_eq!(l.total_recipients(broadcast).await, 0);
    }
}

/// After a real launch (with skipped rows), the counters follow claims, an expired lease taken
/// over, results of every kind (one for a lost lease), the e-mail fallback, a requeue and a
/// cancel: after each step they equal the rows grouped (`Loaded::assert_counted`).
#[tokio::test]
async fn counters_follow_a_launch_through_its_delivery() {
    use broadcast_domain::{
        ClaimRequest, DeliveryResult, DeliveryStore, ErrorKind, Outcome, RecipientQuery,
    };
    use broadcast_store::entity::broadcasts;
    use sea_orm::{ActiveModelTrait, EntityTrait, IntoActiveModel, Set};

    for l in Loaded::all().await {
        let be = l.backend();
        let f = AudienceFilter::default();
        let policy = ChannelPolicy::TELEGRAM_THEN_EMAIL;
        let b = l.new_broadcast(&f, policy).await;
        let report = l.audience.materialise(b, &f, policy, now()).await.unwrap();
        assert!(!report.skipped.is_empty(), "{be}: the fixtures have skips");
        l.assert_counted(b).await;
        let mut m = broadcasts::Entity::find_by_id(b)
            .one(l.db.conn())
            .await
            .unwrap()
            .unwrap()
            .into_active_model();
        m.status = Set("running".into());
        m.update(l.db.conn()).await.unwrap();

        let claim = |worker: &str, at: chrono::DateTime<chrono::Utc>, limit| ClaimRequest {
            worker_id: worker.into(),
            now: at,
            lease_for: chrono::Duration::seconds(30),
            limit,
            broadcast_id: Some(b),
            channels: Vec::new(),
        };
        let w1 = l.store.claim_due(&claim("w1", now(), 4)).await.unwrap();
        assert_eq!(w1.len(), 4, "{be}");
        let started: Vec<_> = w1.iter().map(|r| r.id).collect();
        let marked = l.store.mark_started("w1", &started, now()).await.unwrap();
        assert_eq!(marked.len(), 4, "{be}");
        l.assert_counted(b).await;
        let later = now() + chrono::Duration::seconds(31);
        let w2 = l
            .store
            .claim_due(&claim("w2", later, 10_000))
            .await
            .unwrap();
        assert_eq!(w2.iter().filter(|r| r.uncertain_sends == 1).count(), 4);
        l.assert_counted(b).await;

        let lost: Vec<_> = w1
            .iter()
            .map(|r| DeliveryResult {
                recipient_id: r.id,
                worker_id: "w1".into(),
                uncertain: false,
                outcome: Outcome::Sent {
                    at: later,
                    provider_message_id: None,
                },
            })
            .collect();
        assert_eq!(l.store.record_results(&lost).await.unwrap(), 0, "{be}");
        let results: Vec<_> = w2
            .iter()
            .enumerate()
            .map(|(i, r)| DeliveryResult {
                recipient_id: r.id,
                worker_id: "w2".into(),
                uncertain: false,
                outcome: match i % 4 {
                    0 => Outcome::Sent {
                        at: later + chrono::Duration::milliseconds(i as i64),
                        provider_message_id: Some(format!("m{i}")),
                    },
                    1 => Outcome::Failed {
                        at: later,
                        kind: ErrorKind::Permanent,
                        error: "no".into(),
                    },
                    2 => Outcome::Retry {
                        next_attempt_at: later,
                        kind: ErrorKind::Transient,
                        error: "later".into(),
                        count_attempt: true,
                    },
                    _ => Outcome::Failed {
                        at: later,
                        kind: ErrorKind::Blocked,
                        error: "blocked".into(),
                    },
                },
            })
            .collect();
        let n = l.store.record_results(&results).await.unwrap();
        assert_eq!(n, results.len() as u64, "{be}");
        l.assert_counted(b).await;

        // The e-mail fallback for a user whose Telegram row failed as blocked.
        let blocked = &w2[3];
        l.store
            .add_fallback(
                b,
                blocked.user_id,
                blocked.registration_id,
                &[ChannelKind::EMAIL],
                later,
            )
            .await
            .unwrap();
        l.assert_counted(b).await;
        let requeued = l.store.requeue_failed(b, &[], later).await.unwrap();
        assert!(requeued > 0, "{be}");
        l.assert_counted(b).await;
        let cancelled = l.store.cancel_pending(b, later).await.unwrap();
        assert!(cancelled > 0, "{be}");
        l.assert_counted(b).await;
        let page = l
            .store
            .list_recipients(b, &RecipientQuery::default())
            .await
            .unwrap();
        assert_eq!(page.total, page.items.len() as u64, "{be}");
    }
}
