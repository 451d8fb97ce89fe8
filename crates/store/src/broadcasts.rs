//! [`BroadcastStore`] for [`Store`]: broadcasts and their lifecycle, with status changes as one
//! atomic compare-and-set `UPDATE`.

use async_trait::async_trait;
use broadcast_domain::{
    BreakerProbe, Broadcast, BroadcastId, BroadcastStatus, BroadcastStore, Error, NewBroadcast,
    Result, StatusChange, Transition,
};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, Func};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use crate::Store;
use crate::convert;
use crate::entity::broadcasts::{self, Column, Entity};
use crate::entity::message_templates;
use crate::error::db_err;
use crate::store::limit_opt;

fn names(statuses: &[BroadcastStatus]) -> Vec<&'static str> {
    statuses.iter().map(|s| s.as_str()).collect()
}

impl Store {
    /// The current status of a broadcast, or NotFound.
    async fn current_status(&self, id: BroadcastId) -> Result<BroadcastStatus> {
        let model = Entity::find_by_id(id)
            .one(self.conn())
            .await
            .map_err(db_err)?
            .ok_or_else(|| Error::not_found("broadcast", id))?;
        convert::parse("broadcasts", "status", id, &model.status)
    }
}

#[async_trait]
impl BroadcastStore for Store {
    #[tracing::instrument(skip(self, new), fields(name = %new.name))]
    async fn create_broadcast(&self, new: NewBroadcast, now: DateTime<Utc>) -> Result<Broadcast> {
        let name = new.name.trim();
        if name.is_empty() {
            return Err(Error::Invalid("a broadcast name must not be empty".into()));
        }
        new.filter.validate()?;
        let template_exists = message_templates::Entity::find_by_id(new.template_id)
            .one(self.conn())
            .await
            .map_err(db_err)?
            .is_some();
        if !template_exists {
            return Err(Error::not_found("template", new.template_id));
        }
        let status = if new.scheduled_at.is_some() {
            BroadcastStatus::Scheduled
        } else {
            BroadcastStatus::Draft
        };
        let model = broadcasts::ActiveModel {
            name: Set(name.to_owned()),
            template_id: Set(Some(new.template_id)),
            frozen_template: Set(None),
            channel_policy: Set(new.channel_policy.to_string()),
            filter: Set(convert::to_json("the audience filter", &new.filter)?),
            status: Set(status.as_str().to_owned()),
            status_reason: Set(None),
            scheduled_at: Set(new.scheduled_at),
            started_at: Set(None),
            finished_at: Set(None),
            created_by: Set(new.created_by),
            total_recipients: Set(0),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        }
        .insert(self.conn())
        .await
        .map_err(|e| match db_err(e) {
            // The template was deleted between the check and the insert.
            Error::Invalid(_) => Error::not_found("template", new.template_id),
            other => other,
        })?;
        convert::broadcast(model)
    }

    async fn get_broadcast(&self, id: BroadcastId) -> Result<Broadcast> {
        let model = Entity::find_by_id(id)
            .one(self.conn())
            .await
            .map_err(db_err)?
            .ok_or_else(|| Error::not_found("broadcast", id))?;
        convert::broadcast(model)
    }

    /// Newest first (by id); `limit` 0 returns every match.
    async fn list_broadcasts(
        &self,
        statuses: &[BroadcastStatus],
        limit: u64,
    ) -> Result<Vec<Broadcast>> {
        let mut query = Entity::find()
            .order_by_desc(Column::Id)
            .limit(limit_opt(limit));
        if !statuses.is_empty() {
            query = query.filter(Column::Status.is_in(names(statuses)));
        }
        let models = query.all(self.conn()).await.map_err(db_err)?;
        convert::all(models, convert::broadcast)
    }

    #[tracing::instrument(skip(self, change), fields(to = %change.to))]
    async fn change_status(&self, id: BroadcastId, change: StatusChange) -> Result<Broadcast> {
        let to = change.to;
        let at = change.at;
        let probe = change.probe;
        let mut update = Entity::update_many()
            .col_expr(Column::Status, Expr::val(to.as_str()))
            .col_expr(Column::StatusReason, Expr::val(change.reason))
            .col_expr(Column::UpdatedAt, Expr::val(at))
            .col_expr(
                Column::ProbeChannel,
                Expr::val(probe.map(|p| p.channel.as_str())),
            )
            .col_expr(
                Column::ProbeCooldownMs,
                Expr::val(probe.map(|p| i64::try_from(p.cooldown.as_millis()).unwrap_or(i64::MAX))),
            )
            .col_expr(Column::ProbeAt, Expr::val(probe.map(|p| p.at)));
        if to == BroadcastStatus::Running {
            // The first launch sets started_at; a resume keeps it.
            update = update.col_expr(
                Column::StartedAt,
                Func::coalesce([Expr::col(Column::StartedAt), Expr::val(at)]).into(),
            );
        }
        if to.is_final() {
            update = update.col_expr(Column::FinishedAt, Expr::val(at));
        }
        if let Some(content) = &change.freeze {
            let json = convert::to_json("the frozen template", content)?;
            update = update.col_expr(Column::FrozenTemplate, Expr::val(json));
        }
        let update = update
            .filter(Column::Id.eq(id))
            .filter(Column::Status.is_in(names(&change.from)));
        let frozen_media = change.freeze.as_ref().map(|c| c.telegram_media.as_slice());
        let rows = match frozen_media {
            Some(media) if !media.is_empty() => {
                // Freezing media: hold the library entries until the freeze is written.
                let _guard = self.sqlite_write_lock().await;
                let txn = self.begin().await?;
                crate::media::hold_media(&txn, media).await?;
                let rows = update.exec_with_returning(&txn).await.map_err(db_err)?;
                txn.commit().await.map_err(db_err)?;
                rows
            }
            _ => update
                .exec_with_returning(self.conn())
                .await
                .map_err(db_err)?,
        };
        if let Some(model) = rows.into_iter().next() {
            return convert::broadcast(model);
        }
        let current = self.current_status(id).await?;
        let allowed = if change.from.is_empty() {
            "no status".to_owned()
        } else {
            names(&change.from).join(", ")
        };
        Err(Error::Conflict(format!(
            "broadcast {id} is {current}; cannot move it to {to} (only from {allowed})"
        )))
    }

    /// One compare-and-set `UPDATE ... SET probe_at = ? WHERE id = ? AND status = 'paused' AND
    /// probe_at <= ? RETURNING *`: of several workers, the first takes it.
    #[tracing::instrument(skip(self))]
    async fn take_probe(
        &self,
        id: BroadcastId,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<BreakerProbe>> {
        let rows = Entity::update_many()
            .col_expr(Column::ProbeAt, Expr::val(lease_until))
            .filter(Column::Id.eq(id))
            .filter(Column::Status.eq(BroadcastStatus::Paused.as_str()))
            .filter(Column::ProbeChannel.is_not_null())
            .filter(Column::ProbeAt.lte(now))
            .exec_with_returning(self.conn())
            .await
            .map_err(db_err)?;
        match rows.into_iter().next() {
            Some(model) => Ok(convert::broadcast(model)?.probe),
            None => Ok(None),
        }
    }

    #[tracing::instrument(skip(self))]
    async fn set_schedule(
        &self,
        id: BroadcastId,
        at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Broadcast> {
        let status = if at.is_some() {
            BroadcastStatus::Scheduled
        } else {
            BroadcastStatus::Draft
        };

        let rows = Entity::update_many()
            .col_expr(Column::ScheduledAt, Expr::val(at))
            .col_expr(Column::Status, Expr::val(status.as_str()))
            .col_expr(Column::UpdatedAt, Expr::val(now))
            .filter(Column::Id.eq(id))
            .filter(Column::Status.is_in(names(Transition::Schedule.from())))
            .exec_with_returning(self.conn())
            .await
            .map_err(db_err)?;
        if let Some(model) = rows.into_iter().next() {
            return convert::broadcast(model);
        }
        Err(Transition::Schedule.refused(id, self.current_status(id).await?))
    }
}
