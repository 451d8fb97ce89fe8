//! The naive baseline every throughput row is compared with: the driver side runs `bench naive`,
//! which launches or delivers one recipient at a time.

use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use broadcast_domain::{
    AudienceFilter, Channel, ChannelKind, ClaimRequest, DeliveryResult, DeliveryStore, MessageBody,
    Outcome, OutgoingMessage, RenderEnv, Renderer,
};
use broadcast_render::TeraRenderer;
use broadcast_store::Store;
use sea_orm::ConnectionTrait;
use serde_json::{Value, json};

use crate::engine::InstantChannel;
use crate::measure::{Usage, measure};
use crate::setup::{BOT_TOKEN, Env, RunDb, links};
use crate::{Res, USAGE, err, number, options, required, runtime};

/// Runs `bench naive ...` and returns its messages per second.
pub(crate) fn naive(
    env: &Env,
    mode: &str,
    db: &RunDb,
    id: i64,
    n: u64,
    extra: &[&str],
) -> Res<(f64, Usage)> {
    let mut cmd = Command::new(std::env::current_exe().map_err(err)?);
    cmd.args([
        "naive",
        mode,
        "--database-url",
        &db.url,
        "--broadcast",
        &id.to_string(),
    ])
    .args(["--n", &n.to_string()])
    .args(extra);
    let u = measure(cmd, env.ticks)?;
    if !u.ok {
        return Err(format!("naive {mode} failed: {}", u.stderr));
    }
    let v: Value =
        serde_json::from_str(u.stdout.trim()).map_err(|e| format!("{e}: {}", u.stdout))?;
    Ok((v["rate"].as_f64().unwrap_or(f64::NAN), u))
}

/// `bench naive`: the baseline. `launch` writes the recipient rows one `INSERT` at a time (each
/// its own transaction) after reading each user; `deliver` claims one row, loads its context,
/// renders, sends and records the result, one message at a time, with a 50 ms pause after each
/// Telegram message.
pub(crate) fn child_naive(args: &[String]) -> Res<()> {
    let (mode, rest) = args.split_first().ok_or(USAGE)?;
    let opts = options(rest)?;
    let url = required(&opts, "database-url")?.to_owned();
    let id: i64 = number(required(&opts, "broadcast")?, "--broadcast")?;
    let n: u64 = number(required(&opts, "n")?, "--n")?;
    let telegram = opts.get("telegram").cloned();
    let smtp_port: Option<u16> = opts
        .get("smtp-port")
        .map(|p| number(p, "--smtp-port"))
        .transpose()?;
    let mode = mode.clone();
    runtime()?.block_on(async move {
        let store = Store::connect(&url).await.map_err(err)?;
        let t0 = Instant::now();
        let done = match mode.as_str() {
            "launch" => naive_launch(&store, id, n).await?,
            "deliver" => naive_deliver(&store, id, n, telegram, smtp_port).await?,
            other => return Err(format!("unknown naive mode `{other}`")),
        };
        let seconds = t0.elapsed().as_secs_f64();
        println!(
            "{}",
            json!({"done": done, "seconds": seconds, "rate": done as f64 / seconds})
        );
        Ok(())
    })
}

async fn naive_launch(store: &Store, broadcast: i64, n: u64) -> Res<u64> {
    use broadcast_domain::AudienceStore as _;
    use sea_orm::sea_query::{Alias, Expr, Query};
    let conn = store.conn();
    let filter = AudienceFilter {
        competition_ids: vec![1],
        ..AudienceFilter::default()
    };
    let mut select = broadcast_filter::audience_query(&filter);
    select.limit(n);
    let ids = conn.query_all(&select).await.map_err(err)?;
    let now = chrono::Utc::now();
    let mut done = 0;
    // One read and one insert per recipient, as a hand-written loop would do it.
    for row in ids {
        let user_id: i64 = row.try_get("", "user_id").map_err(err)?;
        let registration_id: Option<i64> = row.try_get("", "registration_id").map_err(err)?;
        let user = store.get_user(user_id).await.map_err(err)?;
        let (status, skip, address) = match broadcast_domain::Reach::email().address_of(&user) {
            Ok(address) => ("pending", None, address),
            Err(reason) => ("skipped", Some(reason.as_str()), String::new()),
        };
        let insert = Query::insert()
            .into_table(Alias::new("broadcast_recipients"))
            .columns(
                [
                    "broadcast_id",
                    "user_id",
                    "registration_id",
                    "channel",
                    "address",
                    "status",
                    "skip_reason",
                    "attempts",
                    "next_attempt_at",
                    "uncertain_sends",
                    "created_at",
                    "updated_at",
                ]
                .map(Alias::new),
            )
            .values_panic([
                Expr::val(broadcast),
                Expr::val(user_id),
                Expr::val(registration_id),
                Expr::val("email"),
                Expr::val(address),
                Expr::val(status),
                Expr::val(skip),
                Expr::val(0),
                Expr::val(now),
                Expr::val(0),
                Expr::val(now),
                Expr::val(now),
            ])
            .to_owned();
        conn.execute(&insert).await.map_err(err)?;
        done += 1;
    }
    Ok(done)
}

async fn naive_deliver(
    store: &Store,
    broadcast: i64,
    n: u64,
    telegram: Option<String>,
    smtp_port: Option<u16>,
) -> Res<u64> {
    use broadcast_domain::{AudienceStore, BroadcastStore};
    let channel: Arc<dyn Channel> = if let Some(api) = &telegram {
        let mut config = broadcast_channels::TelegramConfig::new(secrecy::SecretString::from(
            BOT_TOKEN.to_owned(),
        ));
        config.api_url = Some(url::Url::parse(api).map_err(err)?);
        Arc::new(broadcast_channels::TelegramChannel::new(config).map_err(err)?)
    } else if let Some(port) = smtp_port {
        let from = broadcast_domain::EmailAddress::parse("news@example.org").map_err(|e| e.0)?;
        let mut config = broadcast_channels::SmtpConfig::new("127.0.0.1", from);
        config.port = Some(port);
        config.tls = broadcast_channels::SmtpTls::None;
        config.pool_size = 1;
        Arc::new(broadcast_channels::EmailChannel::new(config).map_err(err)?)
    } else {
        Arc::new(InstantChannel(ChannelKind::EMAIL))
    };
    let b = store.get_broadcast(broadcast).await.map_err(err)?;
    let content = b
        .frozen_template
        .clone()
        .ok_or("the broadcast is not launched")?;
    let template = TeraRenderer::new().compile(&content).map_err(err)?;
    let env = RenderEnv {
        broadcast_name: b.name.clone(),
        app_name: "Broadcast".into(),
        current_date: chrono::Utc::now().date_naive(),
    };
    let links = links()?;
    let mut done = 0;
    while done < n {
        let now = chrono::Utc::now();
        let rows = store
            .claim_due(&ClaimRequest {
                worker_id: "naive".into(),
                now,
                lease_for: chrono::Duration::seconds(120),
                limit: 1,
                broadcast_id: Some(broadcast),
                channels: Vec::new(),
            })
            .await
            .map_err(err)?;
        let Some(row) = rows.into_iter().next() else {
            break;
        };
        let context = store
            .contexts(std::slice::from_ref(&row))
            .await
            .map_err(err)?
            .pop()
            .ok_or("no context")?;
        let url = links.url_for(row.user_id);
        let body = match row.channel {
            ChannelKind::TELEGRAM => MessageBody::Chat {
                to: row.address.clone(),
                message: template
                    .render_telegram(&context, &env, url.as_deref())
                    .map_err(err)?,
            },
            ChannelKind::EMAIL => MessageBody::Email {
                to: broadcast_domain::EmailAddress::parse(&row.address).map_err(|e| e.0)?,
                to_name: Some(context.user.full_name()),
                message: template
                    .render_email(&context, &env, url.as_deref())
                    .map_err(err)?,
                unsubscribe_url: url,
            },
            other => return Err(format!("the naive loop cannot send on {other}")),
        };
        let message = OutgoingMessage {
            broadcast_id: Some(broadcast),
            recipient_id: Some(row.id),
            user_id: Some(row.user_id),
            body,
        };
        let outcome = match channel.send(&message).await {
            Ok(d) => Outcome::Sent {
                at: chrono::Utc::now(),
                provider_message_id: d.provider_message_id,
            },
            Err(e) => Outcome::Failed {
                at: chrono::Utc::now(),
                kind: e.kind.error_kind(),
                error: e.message,
            },
        };
        store
            .record_results(&[DeliveryResult {
                recipient_id: row.id,
                worker_id: "naive".into(),
                uncertain: false,
                outcome,
            }])
            .await
            .map_err(err)?;
        done += 1;
        if telegram.is_some() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok(done)
}
