//! Scheduling: a running worker launches a broadcast at its time; one whose time passed more
//! than `SCHEDULE_GRACE` ago is left for an operator, with the reason recorded.

use std::time::Duration;

use broadcast_testkit::smtp::SmtpSink;
use chrono::{DateTime, Utc};

use crate::harness::{Env, count, people, rfc3339_from_now, tail};

const USERS: usize = 5;

fn time(b: &serde_json::Value, field: &str) -> DateTime<Utc> {
    b[field]
        .as_str()
        .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
        .unwrap_or_else(|| panic!("no {field} in {b}"))
        .with_timezone(&Utc)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_launches_on_time_and_leaves_stale_schedules_alone() {
    let _serial = crate::SERIAL.lock().await;
    let sink = SmtpSink::start().await;
    let mut env = Env::sqlite();
    env.smtp(&sink);
    env.import(&people("sch", USERS, true, None), None).await;
    let template = env.template("schedule").await;

    let mut worker = env.worker("scheduler");
    let soon = rfc3339_from_now(chrono::Duration::seconds(2));
    let due = env
        .create("Soon", template, "email", &[], Some(&soon))
        .await;
    assert_eq!(due["status"], "scheduled", "{due}");
    let stale_at = rfc3339_from_now(-chrono::Duration::hours(2));
    let stale = env
        .create("Stale", template, "email", &[], Some(&stale_at))
        .await;
    assert_eq!(stale["status"], "scheduled", "{stale}");
    let (due, stale) = (
        due["id"].as_i64().expect("id"),
        stale["id"].as_i64().expect("id"),
    );

    let done = env
        .wait_for_status(due, "completed", Duration::from_secs(15), &[&worker])
        .await;
    let (scheduled, started) = (time(&done, "scheduled_at"), time(&done, "started_at"));
    let late = (started - scheduled).to_std();
    eprintln!(
        "schedule: launched {:?} after its time",
        started - scheduled
    );
    assert!(late.is_ok(), "launched {} early", scheduled - started);
    assert!(
        late.is_ok_and(|l| l <= Duration::from_secs(2)),
        "launched {:?} after its time",
        started - scheduled
    );
    assert_eq!(sink.message_count(), USERS as u64);
    assert_eq!(
        count(&env.stats(due).await, &["stats", "by_status", "sent"]),
        USERS as u64
    );

    // A few more polls of the worker: the stale one stays put, with the reason.
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let shown = env.show(stale).await;
    assert_eq!(shown["status"], "scheduled", "{shown}");
    assert!(shown["started_at"].is_null(), "{shown}");
    let reason = shown["status_reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("grace"),
        "status_reason names the grace period: {shown}"
    );
    assert_eq!(
        sink.message_count(),
        USERS as u64,
        "the stale broadcast sent nothing"
    );

    worker.sigterm();
    let status = worker.wait(Duration::from_secs(10)).await;
    assert!(
        status.is_some_and(|s| s.success()),
        "{status:?}\n{}",
        tail(&worker.stderr(), 2000)
    );
}
