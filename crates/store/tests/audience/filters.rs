//! Every filter field alone and in combinations, on the demo audience: count, sample and the
//! materialised rows against the sets computed independently from the CSV rows.

use std::collections::{BTreeMap, BTreeSet};

use broadcast_domain::{
    AudienceFilter, AudienceSource, ChannelKind, ChannelPolicy, DeliveryStatus, EmailAddress,
    RegistrationStatus, Role, SkipReason,
};

use crate::harness::{Loaded, now};

/// How big the expected audience of a case must be, so no case passes vacuously.
#[derive(Debug, Clone, Copy)]
enum Size {
    /// Some users, but not all of them.
    Part,
    /// Every user.
    All,
    /// Nobody.
    Nobody,
}

struct Case {
    name: &'static str,
    filter: AudienceFilter,
    size: Size,
}

fn case(name: &'static str, filter: AudienceFilter) -> Case {
    Case {
        name,
        filter,
        size: Size::Part,
    }
}

fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|s| (*s).to_owned()).collect()
}

fn email(s: &str) -> EmailAddress {
    EmailAddress::parse(s).unwrap()
}

fn cases(l: &Loaded) -> Vec<Case> {
    let euro = l.competition("euro-robotics-2027");
    let krakow = l.competition("krakow-code-cup-2027");
    let valencia = l.competition("valencia-hackathon-2027");
    let max = l.user("u1192").id;
    let mia = l.user("u1194").id;
    let thomas = l.user("u1199").id;
    let some: Vec<i64> = l.users.iter().step_by(7).map(|u| u.id).collect();
    let f = AudienceFilter::default;
    vec![
        Case {
            name: "empty filter",
            filter: f(),
            size: Size::All,
        },
        // Each field alone.
        case(
            "competition_ids one",
            AudienceFilter {
                competition_ids: vec![euro],
                ..f()
            },
        ),
        case(
            "competition_ids two",
            AudienceFilter {
                competition_ids: vec![krakow, valencia],
                ..f()
            },
        ),
        case(
            "roles one",
            AudienceFilter {
                roles: vec![Role::Judge],
                ..f()
            },
        ),
        case(
            "roles two",
            AudienceFilter {
                roles: vec![Role::Mentor, Role::Organizer],
                ..f()
            },
        ),
        case(
            "registration_statuses one",
            AudienceFilter {
                registration_statuses: vec![RegistrationStatus::Waitlisted],
                ..f()
            },
        ),
        case(
            "registration_statuses two",
            AudienceFilter {
                registration_statuses: vec![
                    RegistrationStatus::Pending,
                    RegistrationStatus::Cancelled,
                ],
                ..f()
            },
        ),
        case(
            "countries",
            AudienceFilter {
                countries: strings(&["Germany"]),
                ..f()
            },
        ),
        case(
            "countries, other case",
            AudienceFilter {
                countries: strings(&["POLAND", "spain"]),
                ..f()
            },
        ),
        case(
            "cities",
            AudienceFilter {
                cities: strings(&["berlin"]),
                ..f()
            },
        ),
        case(
            "cities, non-ASCII",
            AudienceFilter {
                cities: strings(&["Kraków", "LYON", "Łódź"]),
                ..f()
            },
        ),
        case(
            "has_email true",
            AudienceFilter {
                has_email: Some(true),
                ..f()
            },
        ),
        case(
            "has_email false",
            AudienceFilter {
                has_email: Some(false),
                ..f()
            },
        ),
        case(
            "has_telegram true",
            AudienceFilter {
                has_telegram: Some(true),
                ..f()
            },
        ),
        case(
            "has_telegram false",
            AudienceFilter {
                has_telegram: Some(false),
                ..f()
            },
        ),
        case(
            "user_ids",
            AudienceFilter {
                user_ids: some.clone(),
                ..f()
            },
        ),
        case(
            "emails, any case",
            AudienceFilter {
                emails: vec![
                    email("MIA.LEHMANN@WEB.DE"),
                    email("eliska.novakova@seznam.cz"),
                    email("nobody@example.org"),
                ],
                ..f()
            },
        ),
        case(
            "exclude_user_ids",
            AudienceFilter {
                exclude_user_ids: some.clone(),
                ..f()
            },
        ),
        // Combinations.
        case(
            "confirmed participants of one competition",
            AudienceFilter {
                competition_ids: vec![euro],
                roles: vec![Role::Participant],
                registration_statuses: vec![RegistrationStatus::Confirmed],
                ..f()
            },
        ),
        case(
            "judges of one competition",
            AudienceFilter {
                competition_ids: vec![krakow],
                roles: vec![Role::Judge],
                ..f()
            },
        ),
        case(
            "participants in Germany on Telegram",
            AudienceFilter {
                roles: vec![Role::Participant],
                countries: strings(&["germany"]),
                has_telegram: Some(true),
                ..f()
            },
        ),
        case(
            "volunteers and organisers, not waitlisted or cancelled, with e-mail",
            AudienceFilter {
                roles: vec![Role::Volunteer, Role::Organizer],
                registration_statuses: vec![
                    RegistrationStatus::Confirmed,
                    RegistrationStatus::Pending,
                ],
                has_email: Some(true),
                ..f()
            },
        ),
        case(
            "cities without e-mail",
            AudienceFilter {
                cities: strings(&["Kyiv", "Lviv", "Warszawa", "Paris"]),
                has_email: Some(false),
                ..f()
            },
        ),
        case(
            "user_ids minus exclude_user_ids",
            AudienceFilter {
                user_ids: vec![max, mia, thomas, some[1], some[2]],
                exclude_user_ids: vec![mia, some[2]],
                ..f()
            },
        ),
        case(
            "emails of confirmed people",
            AudienceFilter {
                registration_statuses: vec![RegistrationStatus::Confirmed],
                emails: vec![
                    email("max.mustermann@example.org"),
                    email("Mia.Lehmann@web.de"),
                ],
                ..f()
            },
        ),
        case(
            "everything at once",
            AudienceFilter {
                competition_ids: vec![euro, valencia],
                roles: vec![Role::Participant, Role::Mentor],
                registration_statuses: vec![RegistrationStatus::Confirmed],
                countries: strings(&["Germany", "France", "Spain"]),
                has_email: Some(true),
                has_telegram: Some(true),
                exclude_user_ids: vec![max],
                ..f()
            },
        ),
        Case {
            name: "nobody",
            filter: AudienceFilter {
                user_ids: vec![i64::MAX],
                ..f()
            },
            size: Size::Nobody,
        },
        Case {
            name: "contradiction",
            filter: AudienceFilter {
                user_ids: vec![max],
                exclude_user_ids: vec![max],
                ..f()
            },
            size: Size::Nobody,
        },
    ]
}

/// Count, sample and materialise (policy `both`) one filter and compare with the expectation.
async fn check(l: &Loaded, case: &Case) {
    let what = format!("{} / {}", l.backend(), case.name);
    let f = &case.filter;
    let expected = l.expected(f);
    match case.size {
        Size::Part => assert!(
            !expected.is_empty() && expected.len() < l.users.len(),
            "{what}: the case should select part of the audience, selects {}",
            expected.len()
        ),
        Size::All => assert_eq!(expected.len(), l.users.len(), "{what}"),
        Size::Nobody => assert!(expected.is_empty(), "{what}"),
    }

    for policy in ChannelPolicy::NAMED {
        let count = l.audience.count(f, policy).await.unwrap();
        assert_eq!(
            count,
            l.expected_count(f, policy),
            "{what}: count for {policy}"
        );
    }
    let count = l.audience.count(f, ChannelPolicy::BOTH).await.unwrap();

    let sample = l.audience.sample(f, 1_000).await.unwrap();
    let sampled: BTreeMap<i64, Option<i64>> = sample
        .iter()
        .map(|c| (c.user.id, c.registration.as_ref().map(|r| r.id)))
        .collect();
    assert_eq!(
        sampled, expected,
        "{what}: sampled users and their registrations"
    );
    assert!(
        sample.windows(2).all(|w| w[0].user.id < w[1].user.id),
        "{what}: sample ordered by user id, without duplicates"
    );
    for c in &sample {
        assert_eq!(
            c.competition.as_ref().map(|c| c.id),
            c.registration.as_ref().map(|r| r.competition_id),
            "{what}: the competition is the registration's"
        );
    }

    let broadcast = l.new_broadcast(f, ChannelPolicy::BOTH).await;
    let report = l
        .audience
        .materialise(broadcast, f, ChannelPolicy::BOTH, now())
        .await
        .unwrap();
    let rows = l.rows(broadcast).await;
    let set: BTreeSet<_> = rows.iter().cloned().collect();
    assert_eq!(set.len(), rows.len(), "{what}: no duplicate rows");
    assert_eq!(set, l.expected_rows(f, ChannelPolicy::BOTH), "{what}: rows");

    // The count predicts the materialised rows exactly.
    for channel in [ChannelKind::TELEGRAM, ChannelKind::EMAIL] {
        let of_channel: Vec<_> = rows.iter().filter(|r| r.channel == channel).collect();
        assert_eq!(
            of_channel.len() as u64,
            count.users,
            "{what}: {channel} rows"
        );
        let pending = of_channel
            .iter()
            .filter(|r| r.status == DeliveryStatus::Pending)
            .count() as u64;
        let reachable = count.reachable_on(channel);
        assert_eq!(pending, reachable, "{what}: {channel} pending rows");
        assert_eq!(report.queued[&channel], pending, "{what}: {channel} queued");
    }
    let mut skipped: BTreeMap<SkipReason, u64> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.status == DeliveryStatus::Skipped) {
        *skipped.entry(r.skip_reason.unwrap()).or_default() += 1;
    }
    assert_eq!(report.skipped, skipped, "{what}: skipped per reason");
    assert_eq!(report.inserted, rows.len() as u64, "{what}: inserted");
    assert_eq!(
        l.total_recipients(broadcast).await,
        rows.len() as i64,
        "{what}: total_recipients"
    );
}

#[tokio::test]
async fn every_field_alone_and_combined_matches_the_expected_set() {
    for l in Loaded::all().await {
        for case in cases(&l) {
            check(&l, &case).await;
        }
    }
}

#[tokio::test]
async fn registration_fields_must_hold_on_the_same_registration() {
    for l in Loaded::all().await {
        let krakow = l.competition("krakow-code-cup-2027");
        let f = AudienceFilter {
            competition_ids: vec![krakow],
            roles: vec![Role::Participant],
            ..AudienceFilter::default()
        };
        // The naive reading: registered for Kraków, and a participant somewhere.
        let naive: BTreeSet<i64> = l
            .users
            .iter()
            .filter(|u| {
                let regs = || l.registrations.iter().filter(|r| r.user_id == u.id);
                regs().any(|r| r.competition_id == krakow)
                    && regs().any(|r| r.row.role == Role::Participant)
            })
            .map(|u| u.id)
            .collect();
        let expected: BTreeSet<i64> = l.expected(&f).into_keys().collect();
        assert!(
            expected.len() < naive.len(),
            "the fixtures must contain people who are participants elsewhere but not in Kraków"
        );
        let got: BTreeSet<i64> = l
            .audience
            .sample(&f, 1_000)
            .await
            .unwrap()
            .into_iter()
            .map(|c| {
                let reg = c
                    .registration
                    .expect("a registration filter yields the registration");
                assert_eq!(reg.competition_id, krakow);
                assert_eq!(reg.role, Role::Participant);
                c.user.id
            })
            .collect();
        assert_eq!(got, expected, "{}", l.backend());
    }
}

#[tokio::test]
async fn a_user_with_two_matching_registrations_appears_once_with_the_first() {
    for l in Loaded::all().await {
        let f = AudienceFilter {
            roles: vec![Role::Participant],
            ..AudienceFilter::default()
        };
        // Users who take part as participants in two competitions.
        let twice: Vec<i64> = l
            .users
            .iter()
            .filter(|u| {
                l.registrations
                    .iter()
                    .filter(|r| r.user_id == u.id && r.row.role == Role::Participant)
                    .count()
                    == 2
            })
            .map(|u| u.id)
            .collect();
        assert!(twice.len() >= 5, "the fixtures have such users: {twice:?}");

        let broadcast = l.new_broadcast(&f, ChannelPolicy::BOTH).await;
        l.audience
            .materialise(broadcast, &f, ChannelPolicy::BOTH, now())
            .await
            .unwrap();
        let rows = l.rows(broadcast).await;
        for user in &twice {
            let first = l
                .registrations
                .iter()
                .filter(|r| r.user_id == *user && r.row.role == Role::Participant)
                .map(|r| r.id)
                .min();
            let mine: Vec<_> = rows.iter().filter(|r| r.user_id == *user).collect();
            assert_eq!(mine.len(), 2, "one row per channel for user {user}");
            assert!(mine.iter().all(|r| r.registration_id == first));
        }
        assert_eq!(
            l.audience
                .count(&f, ChannelPolicy::BOTH)
                .await
                .unwrap()
                .users,
            rows.len() as u64 / 2,
            "{}",
            l.backend()
        );
    }
}

#[tokio::test]
async fn country_and_city_ignore_case() {
    for l in Loaded::all().await {
        let ids = |country: Option<&str>, city: Option<&str>| -> BTreeSet<i64> {
            l.users
                .iter()
                .filter(|u| {
                    country.is_none_or(|c| {
                        u.row.country.as_deref().map(str::to_lowercase) == Some(c.to_lowercase())
                    }) && city.is_none_or(|c| {
                        u.row.city.as_deref().map(str::to_lowercase) == Some(c.to_lowercase())
                    })
                })
                .map(|u| u.id)
                .collect()
        };
        let germany = ids(Some("germany"), None);
        let berlin = ids(None, Some("berlin"));
        // Stored as Germany, germany and GERMANY; Berlin, berlin and BERLIN.
        assert_eq!(germany.len(), 44);
        assert!(berlin.contains(&l.user("u1193").id) && berlin.contains(&l.user("u1194").id));

        for spelling in ["Germany", "germany", "GERMANY", "gErMaNy", " Germany "] {
            let f =
                AudienceFilter::from_json(&format!(r#"{{"countries":["{spelling}"]}}"#)).unwrap();
            let got = sampled_ids(&l, &f).await;
            assert_eq!(got, germany, "{} / {spelling:?}", l.backend());
            assert_eq!(
                l.audience
                    .count(&f, ChannelPolicy::BOTH)
                    .await
                    .unwrap()
                    .users,
                44
            );
        }
        for spelling in ["Berlin", "berlin", "BERLIN"] {
            let f = AudienceFilter {
                cities: vec![spelling.to_owned()],
                ..AudienceFilter::default()
            };
            assert_eq!(
                sampled_ids(&l, &f).await,
                berlin,
                "{} / {spelling}",
                l.backend()
            );
        }

        // Non-ASCII: any case of any letter matches on every backend (the store compares the
        // folded keys it wrote, not the database's LOWER, which folds ASCII only on SQLite).
        let lodz = ids(None, Some("Łódź"));
        assert!(!lodz.is_empty());
        let f = |city: &str| AudienceFilter {
            cities: vec![city.to_owned()],
            ..AudienceFilter::default()
        };
        for spelling in ["Łódź", "ŁÓDŹ", "łódź", " łÓdŹ "] {
            assert_eq!(
                sampled_ids(&l, &f(spelling)).await,
                lodz,
                "{} / {spelling}",
                l.backend()
            );
        }
        let krakow = ids(None, Some("Kraków"));
        assert_eq!(
            sampled_ids(&l, &f("KRAKÓW")).await,
            krakow,
            "{}",
            l.backend()
        );
    }
}

async fn sampled_ids(l: &Loaded, f: &AudienceFilter) -> BTreeSet<i64> {
    l.audience
        .sample(f, 1_000)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.user.id)
        .collect()
}

#[tokio::test]
async fn sample_returns_the_first_users_with_their_registration() {
    for l in Loaded::all().await {
        let euro = l.competition("euro-robotics-2027");
        let f = AudienceFilter {
            competition_ids: vec![euro],
            ..AudienceFilter::default()
        };
        let expected: Vec<(i64, Option<i64>)> = l.expected(&f).into_iter().take(5).collect();
        let sample = l.audience.sample(&f, 5).await.unwrap();
        let got: Vec<(i64, Option<i64>)> = sample
            .iter()
            .map(|c| (c.user.id, c.registration.as_ref().map(|r| r.id)))
            .collect();
        assert_eq!(got, expected);
        let first = &sample[0];
        let known = l.users.iter().find(|u| u.id == first.user.id).unwrap();
        assert_eq!(first.user.first_name, known.row.first_name);
        assert_eq!(first.user.email, known.row.email);
        assert_eq!(first.user.telegram_chat_id, known.row.telegram_chat_id);
        assert_eq!(first.user.attributes, known.row.attributes);
        let competition = first.competition.as_ref().unwrap();
        assert_eq!(competition.slug, "euro-robotics-2027");
        assert_eq!(competition.name, "European Robotics Challenge 2027");

        // Max's markup and attributes come back untouched.
        let max = l.user("u1192").id;
        let one = l
            .audience
            .sample(
                &AudienceFilter {
                    user_ids: vec![max],
                    ..AudienceFilter::default()
                },
                10,
            )
            .await
            .unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].user.first_name, "<b>Max</b>");
        assert_eq!(one[0].user.attributes["team"], "Rocket Owls");
        assert!(one[0].registration.is_none() && one[0].competition.is_none());

        assert!(l.audience.sample(&f, 0).await.unwrap().is_empty());
    }
}

#[tokio::test]
async fn invalid_filters_are_refused_with_the_field_named() {
    for l in Loaded::all().await {
        let bad = AudienceFilter {
            user_ids: vec![0],
            ..AudienceFilter::default()
        };
        let err = l
            .audience
            .count(&bad, ChannelPolicy::BOTH)
            .await
            .unwrap_err();
        assert!(err.is_invalid_input(), "{err}");
        assert!(err.to_string().contains("user_ids"), "{err}");
        let err = l.audience.sample(&bad, 3).await.unwrap_err();
        assert!(err.to_string().contains("user_ids"), "{err}");

        let huge = AudienceFilter {
            cities: (0..40_000).map(|i| format!("City {i}")).collect(),
            ..AudienceFilter::default()
        };
        let err = l
            .audience
            .count(&huge, ChannelPolicy::BOTH)
            .await
            .unwrap_err();
        assert!(
            err.is_invalid_input() && err.to_string().contains("cities"),
            "{err}"
        );
    }
}
