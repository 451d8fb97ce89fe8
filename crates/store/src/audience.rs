//! [`AudienceStore`] for [`Store`]: users, competitions and registrations, their all-or-nothing
//! import, and the per-recipient template contexts.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use broadcast_domain::{
    AudienceStore, Competition, Error, Holder, ImportReport, NewCompetition, NewRegistration,
    NewUser, Page, Recipient, RecipientContext, Registration, Result, TelegramChatId, User, UserId,
    UserQuery, check_competitions, check_holders, check_registrations, check_users, fold_case,
    unknown_in_import,
};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, Func, LikeExpr};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, EntityTrait,
    IntoActiveModel, PaginatorTrait, QueryFilter, QueryOrder,
};

use crate::Store;
use crate::convert;
use crate::entity::{competitions, registrations, users};
use crate::error::{db_err, unique_or};
use crate::store::{CHUNK, paged};

/// Loads models whose `column` is in `keys`, in chunks.
async fn find_in<E, V>(
    db: &impl ConnectionTrait,
    column: E::Column,
    keys: Vec<V>,
) -> Result<Vec<E::Model>>
where
    E: EntityTrait,
    V: Into<sea_orm::Value> + Clone,
{
    let mut out = Vec::new();
    for chunk in keys.chunks(CHUNK) {
        let models = E::find()
            .filter(column.is_in(chunk.iter().cloned()))
            .all(db)
            .await
            .map_err(db_err)?;
        out.extend(models);
    }
    Ok(out)
}

fn holder(m: &users::Model) -> Holder<'_> {
    Holder {
        id: m.id,
        external_id: m.external_id.as_deref(),
        telegram_chat_id: m.telegram_chat_id,
        email: m.email.as_deref(),
    }
}

/// Sets `column` to `COALESCE(column, at)` (keeps an earlier time), NotFound for unknown users.
async fn mark_user(
    db: &impl ConnectionTrait,
    user: UserId,
    column: users::Column,
    at: DateTime<Utc>,
) -> Result<()> {
    let result = users::Entity::update_many()
        .col_expr(
            column,
            Func::coalesce([Expr::col(column), Expr::val(at)]).into(),
        )
        .col_expr(users::Column::UpdatedAt, Expr::val(at))
        .filter(users::Column::Id.eq(user))
        .exec(db)
        .await
        .map_err(db_err)?;
    if result.rows_affected == 0 {
        return Err(Error::not_found("user", user));
    }
    Ok(())
}

impl Store {
    async fn import_users_in(
        db: &impl ConnectionTrait,
        rows: Vec<NewUser>,
        now: DateTime<Utc>,
    ) -> Result<ImportReport> {
        check_users(&rows)?;

        let ext_ids: Vec<String> = rows.iter().map(|r| r.external_id.clone()).collect();
        let existing: HashMap<String, users::Model> =
            find_in::<users::Entity, _>(db, users::Column::ExternalId, ext_ids)
                .await?
                .into_iter()
                .filter_map(|m| Some((m.external_id.clone()?, m)))
                .collect();
        let in_batch: HashSet<&str> = rows.iter().map(|r| r.external_id.as_str()).collect();

        // Chat ids and e-mail addresses held by users that this import does not rewrite.
        let chats: Vec<i64> = rows
            .iter()
            .filter_map(|r| r.telegram_chat_id.map(TelegramChatId::get))
            .collect();
        let chat_holders =
            find_in::<users::Entity, _>(db, users::Column::TelegramChatId, chats).await?;
        let emails: Vec<String> = rows
            .iter()
            .filter_map(|r| r.email.as_ref().map(|e| fold_case(e.as_ref())))
            .collect();
        let email_holders =
            find_in::<users::Entity, _>(db, users::Column::EmailKey, emails).await?;
        check_holders(&rows, chat_holders.iter().chain(&email_holders).map(holder))?;
        // Holders rewritten by this import: if one gives its chat id to another row, the id is
        // released first so that the unique index never sees it twice.
        let mut release: Vec<i64> = chat_holders
            .iter()
            .filter(|h| {
                h.external_id
                    .as_deref()
                    .is_some_and(|e| in_batch.contains(e))
            })
            .map(|h| h.id)
            .collect();

        // Release only the chat ids that change hands inside the batch.
        let new_chat: HashMap<&str, Option<i64>> = rows
            .iter()
            .map(|r| {
                (
                    r.external_id.as_str(),
                    r.telegram_chat_id.map(TelegramChatId::get),
                )
            })
            .collect();
        release.retain(|id| {
            chat_holders.iter().any(|h| {
                h.id == *id
                    && h.external_id
                        .as_deref()
                        .and_then(|e| new_chat.get(e))
                        .is_some_and(|new| *new != h.telegram_chat_id)
            })
        });
        for chunk in release.chunks(CHUNK) {
            users::Entity::update_many()
                .col_expr(
                    users::Column::TelegramChatId,
                    Expr::val(Option::<i64>::None),
                )
                .filter(users::Column::Id.is_in(chunk.iter().copied()))
                .exec(db)
                .await
                .map_err(db_err)?;
        }

        let mut report = ImportReport::default();
        let mut inserts = Vec::new();
        for row in rows {
            let flag = |set: bool, current: Option<DateTime<Utc>>| match current {
                Some(t) => Some(t),
                None => set.then_some(now),
            };
            match existing.get(&row.external_id) {
                Some(old) => {
                    let mut m = old.clone().into_active_model();
                    m.country_key = Set(row.country.as_deref().map(fold_case));
                    m.city_key = Set(row.city.as_deref().map(fold_case));
                    m.email_key = Set(row.email.as_ref().map(|e| fold_case(e.as_ref())));
                    m.telegram_chat_id = Set(row.telegram_chat_id.map(TelegramChatId::get));
                    m.email = Set(row.email.map(|e| e.as_ref().to_owned()));
                    m.first_name = Set(row.first_name);
                    m.last_name = Set(row.last_name);
                    m.username = Set(row.username);
                    m.language = Set(row.language);
                    m.country = Set(row.country);
                    m.city = Set(row.city);
                    m.attributes = Set(serde_json::Value::Object(row.attributes));
                    m.telegram_blocked_at =
                        Set(flag(row.telegram_blocked, old.telegram_blocked_at));
                    m.email_unsubscribed_at =
                        Set(flag(row.email_unsubscribed, old.email_unsubscribed_at));
                    m.updated_at = Set(now);
                    m.update(db).await.map_err(db_err)?;
                    report.updated += 1;
                }
                None => {
                    inserts.push(users::ActiveModel {
                        country_key: Set(row.country.as_deref().map(fold_case)),
                        city_key: Set(row.city.as_deref().map(fold_case)),
                        email_key: Set(row.email.as_ref().map(|e| fold_case(e.as_ref()))),
                        external_id: Set(Some(row.external_id)),
                        telegram_chat_id: Set(row.telegram_chat_id.map(TelegramChatId::get)),
                        email: Set(row.email.map(|e| e.as_ref().to_owned())),
                        first_name: Set(row.first_name),
                        last_name: Set(row.last_name),
                        username: Set(row.username),
                        language: Set(row.language),
                        country: Set(row.country),
                        city: Set(row.city),
                        attributes: Set(serde_json::Value::Object(row.attributes)),
                        telegram_blocked_at: Set(flag(row.telegram_blocked, None)),
                        email_unsubscribed_at: Set(flag(row.email_unsubscribed, None)),
                        email_bounced_at: Set(None),
                        created_at: Set(now),
                        updated_at: Set(now),
                        ..Default::default()
                    });
                }
            }
        }
        report.inserted = inserts.len() as u64;
        insert_chunked(db, inserts).await?;
        Ok(report)
    }

    async fn import_competitions_in(
        db: &impl ConnectionTrait,
        rows: Vec<NewCompetition>,
        now: DateTime<Utc>,
    ) -> Result<ImportReport> {
        check_competitions(&rows)?;
        let slugs: Vec<String> = rows.iter().map(|r| r.slug.clone()).collect();
        let existing: HashMap<String, competitions::Model> =
            find_in::<competitions::Entity, _>(db, competitions::Column::Slug, slugs)
                .await?
                .into_iter()
                .map(|m| (m.slug.clone(), m))
                .collect();
        let mut report = ImportReport::default();
        let mut inserts = Vec::new();
        for row in rows {
            match existing.get(&row.slug) {
                Some(old) => {
                    let mut m = old.clone().into_active_model();
                    m.name = Set(row.name);
                    m.starts_on = Set(row.starts_on);
                    m.city = Set(row.city);
                    m.country = Set(row.country);
                    m.update(db).await.map_err(db_err)?;
                    report.updated += 1;
                }
                None => inserts.push(competitions::ActiveModel {
                    slug: Set(row.slug),
                    name: Set(row.name),
                    starts_on: Set(row.starts_on),
                    city: Set(row.city),
                    country: Set(row.country),
                    created_at: Set(now),
                    ..Default::default()
                }),
            }
        }
        report.inserted = inserts.len() as u64;
        insert_chunked(db, inserts).await?;
        Ok(report)
    }

    async fn import_registrations_in(
        db: &impl ConnectionTrait,
        rows: Vec<NewRegistration>,
        now: DateTime<Utc>,
    ) -> Result<ImportReport> {
        check_registrations(&rows)?;
        let ext_ids: Vec<String> = rows.iter().map(|r| r.user_external_id.clone()).collect();
        let user_ids: HashMap<String, i64> =
            find_in::<users::Entity, _>(db, users::Column::ExternalId, ext_ids)
                .await?
                .into_iter()
                .filter_map(|m| Some((m.external_id?, m.id)))
                .collect();
        let slugs: Vec<String> = rows.iter().map(|r| r.competition_slug.clone()).collect();
        let competition_ids: HashMap<String, i64> =
            find_in::<competitions::Entity, _>(db, competitions::Column::Slug, slugs)
                .await?
                .into_iter()
                .map(|m| (m.slug, m.id))
                .collect();
        let mut resolved = Vec::with_capacity(rows.len());
        for (i, row) in rows.into_iter().enumerate() {
            let Some(&user) = user_ids.get(&row.user_external_id) else {
                return Err(unknown_in_import(
                    row.line,
                    i,
                    "user",
                    &row.user_external_id,
                ));
            };
            let Some(&competition) = competition_ids.get(&row.competition_slug) else {
                return Err(unknown_in_import(
                    row.line,
                    i,
                    "competition",
                    &row.competition_slug,
                ));
            };
            resolved.push((user, competition, row));
        }
        let users: Vec<i64> = resolved.iter().map(|(u, _, _)| *u).collect();
        let existing: HashMap<(i64, i64), registrations::Model> =
            find_in::<registrations::Entity, _>(db, registrations::Column::UserId, users)
                .await?
                .into_iter()
                .map(|m| ((m.user_id, m.competition_id), m))
                .collect();
        let mut report = ImportReport::default();
        let mut inserts = Vec::new();
        for (user, competition, row) in resolved {
            match existing.get(&(user, competition)) {
                Some(old) => {
                    let mut m = old.clone().into_active_model();
                    m.role = Set(row.role.as_str().to_owned());
                    m.status = Set(row.status.as_str().to_owned());
                    m.updated_at = Set(now);
                    m.update(db).await.map_err(db_err)?;
                    report.updated += 1;
                }
                None => inserts.push(registrations::ActiveModel {
                    user_id: Set(user),
                    competition_id: Set(competition),
                    role: Set(row.role.as_str().to_owned()),
                    status: Set(row.status.as_str().to_owned()),
                    created_at: Set(now),
                    updated_at: Set(now),
                    ..Default::default()
                }),
            }
        }
        report.inserted = inserts.len() as u64;
        insert_chunked(db, inserts).await?;
        Ok(report)
    }

    /// Runs one import in a transaction: all rows or none.
    async fn import_in_transaction<R, F>(
        &self,
        rows: Vec<R>,
        now: DateTime<Utc>,
        f: F,
    ) -> Result<ImportReport>
    where
        R: Send,
        F: AsyncFnOnce(
            &sea_orm::DatabaseTransaction,
            Vec<R>,
            DateTime<Utc>,
        ) -> Result<ImportReport>,
    {
        if rows.is_empty() {
            return Ok(ImportReport::default());
        }
        let _guard = self.sqlite_write_lock().await;
        let txn = self.begin().await?;
        let report = f(&txn, rows, now).await?;
        txn.commit().await.map_err(db_err)?;
        Ok(report)
    }
}

/// Inserts new rows in multi-row `INSERT`s.
async fn insert_chunked<A>(db: &impl ConnectionTrait, models: Vec<A>) -> Result<()>
where
    A: sea_orm::ActiveModelTrait + Send,
{
    // Up to 16 columns per row: 100 rows stay far below the bound-parameter limits.
    let mut models = models.into_iter().peekable();
    while models.peek().is_some() {
        let chunk: Vec<A> = models.by_ref().take(100).collect();
        A::Entity::insert_many(chunk)
            .exec_without_returning(db)
            .await
            .map_err(db_err)?;
    }
    Ok(())
}

#[async_trait]
impl AudienceStore for Store {
    /// Upserts by external id. Every column of the file replaces the stored value (an empty cell
    /// clears it), except `telegram_blocked` / `email_unsubscribed`: `true` sets the timestamp to
    /// `now` when it is not set yet, `false` leaves it alone. A chat id or e-mail address that
    /// another user holds (in the database or earlier in the batch) is an error naming the line.
    #[tracing::instrument(skip(self, rows), fields(rows = rows.len()))]
    async fn import_users(&self, rows: Vec<NewUser>, now: DateTime<Utc>) -> Result<ImportReport> {
        self.import_in_transaction(rows, now, async |txn, rows, now| {
            Store::import_users_in(txn, rows, now).await
        })
        .await
    }

    /// Upserts by slug (name, start date, city and country are replaced).
    #[tracing::instrument(skip(self, rows), fields(rows = rows.len()))]
    async fn import_competitions(
        &self,
        rows: Vec<NewCompetition>,
        now: DateTime<Utc>,
    ) -> Result<ImportReport> {
        self.import_in_transaction(rows, now, async |txn, rows, now| {
            Store::import_competitions_in(txn, rows, now).await
        })
        .await
    }

    /// Upserts by (user, competition) (role and status are replaced).
    #[tracing::instrument(skip(self, rows), fields(rows = rows.len()))]
    async fn import_registrations(
        &self,
        rows: Vec<NewRegistration>,
        now: DateTime<Utc>,
    ) -> Result<ImportReport> {
        self.import_in_transaction(rows, now, async |txn, rows, now| {
            Store::import_registrations_in(txn, rows, now).await
        })
        .await
    }

    async fn get_user(&self, id: UserId) -> Result<User> {
        let model = users::Entity::find_by_id(id)
            .one(self.conn())
            .await
            .map_err(db_err)?
            .ok_or_else(|| Error::not_found("user", id))?;
        convert::user(model)
    }

    /// `search` matches case-insensitively anywhere in the first, last or full name, the e-mail
    /// address, the user name or the external id. Ordered by id; `limit` 0 returns every match.
    async fn list_users(&self, query: &UserQuery) -> Result<Page<User>> {
        let mut cond = Condition::all();
        if let Some(search) = query
            .search
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let escaped: String = search
                .to_lowercase()
                .chars()
                .flat_map(|c| match c {
                    '\\' | '%' | '_' => vec!['\\', c],
                    c => vec![c],
                })
                .collect();
            let pattern = || LikeExpr::new(format!("%{escaped}%")).escape('\\');
            let mut any = Condition::any()
                .add(Expr::cust("LOWER(first_name || ' ' || last_name)").like(pattern()));
            for column in [
                users::Column::FirstName,
                users::Column::LastName,
                users::Column::Email,
                users::Column::Username,
                users::Column::ExternalId,
            ] {
                any = any.add(Expr::expr(Func::lower(Expr::col(column))).like(pattern()));
            }
            cond = cond.add(any);
        }
        let total = users::Entity::find()
            .filter(cond.clone())
            .count(self.conn())
            .await
            .map_err(db_err)?;
        let select = users::Entity::find()
            .filter(cond)
            .order_by_asc(users::Column::Id);
        let models = paged(select, query.offset, query.limit)
            .all(self.conn())
            .await
            .map_err(db_err)?;
        Ok(Page {
            items: convert::all(models, convert::user)?,
            total,
        })
    }

    /// By start date (undated last), then id.
    async fn list_competitions(&self) -> Result<Vec<Competition>> {
        let models = competitions::Entity::find()
            .order_by_asc(Expr::col(competitions::Column::StartsOn).is_null())
            .order_by_asc(competitions::Column::StartsOn)
            .order_by_asc(competitions::Column::Id)
            .all(self.conn())
            .await
            .map_err(db_err)?;
        Ok(models.into_iter().map(convert::competition).collect())
    }

    async fn registrations_of(&self, user: UserId) -> Result<Vec<(Registration, Competition)>> {
        let rows = registrations::Entity::find()
            .find_also_related(competitions::Entity)
            .filter(registrations::Column::UserId.eq(user))
            .order_by_asc(registrations::Column::Id)
            .all(self.conn())
            .await
            .map_err(db_err)?;
        if rows.is_empty() {
            self.get_user(user).await?;
        }
        rows.into_iter()
            .map(|(reg, comp)| {
                let id = reg.id;
                let comp = comp.ok_or_else(|| {
                    Error::Internal(format!("registration {id} has no competition"))
                })?;
                Ok((convert::registration(reg)?, convert::competition(comp)))
            })
            .collect()
    }

    /// Three queries whatever the number of recipients: users, registrations, competitions.
    async fn contexts(&self, recipients: &[Recipient]) -> Result<Vec<RecipientContext>> {
        if recipients.is_empty() {
            return Ok(Vec::new());
        }
        let mut user_ids: Vec<i64> = recipients.iter().map(|r| r.user_id).collect();
        user_ids.sort_unstable();
        user_ids.dedup();
        let users: HashMap<i64, User> =
            find_in::<users::Entity, _>(self.conn(), users::Column::Id, user_ids)
                .await?
                .into_iter()
                .map(|m| convert::user(m).map(|u| (u.id, u)))
                .collect::<Result<_>>()?;
        let mut reg_ids: Vec<i64> = recipients
            .iter()
            .filter_map(|r| r.registration_id)
            .collect();
        reg_ids.sort_unstable();
        reg_ids.dedup();
        let registrations: HashMap<i64, Registration> =
            find_in::<registrations::Entity, _>(self.conn(), registrations::Column::Id, reg_ids)
                .await?
                .into_iter()
                .map(|m| convert::registration(m).map(|r| (r.id, r)))
                .collect::<Result<_>>()?;
        let mut comp_ids: Vec<i64> = registrations.values().map(|r| r.competition_id).collect();
        comp_ids.sort_unstable();
        comp_ids.dedup();
        let competitions: HashMap<i64, Competition> =
            find_in::<competitions::Entity, _>(self.conn(), competitions::Column::Id, comp_ids)
                .await?
                .into_iter()
                .map(|m| (m.id, convert::competition(m)))
                .collect();
        recipients
            .iter()
            .map(|r| {
                let user = users
                    .get(&r.user_id)
                    .cloned()
                    .ok_or_else(|| Error::not_found("user", r.user_id))?;
                let registration = r
                    .registration_id
                    .and_then(|id| registrations.get(&id))
                    .cloned();
                let competition = registration
                    .as_ref()
                    .and_then(|reg| competitions.get(&reg.competition_id))
                    .cloned();
                Ok(RecipientContext {
                    user,
                    competition,
                    registration,
                })
            })
            .collect()
    }

    /// Keeps the first time when it is already recorded.
    async fn mark_telegram_blocked(&self, user: UserId, at: DateTime<Utc>) -> Result<()> {
        mark_user(self.conn(), user, users::Column::TelegramBlockedAt, at).await
    }

    /// Keeps the first time when it is already recorded.
    async fn mark_email_unsubscribed(&self, user: UserId, at: DateTime<Utc>) -> Result<()> {
        mark_user(self.conn(), user, users::Column::EmailUnsubscribedAt, at).await
    }

    /// Keeps the first time when it is already recorded.
    async fn mark_email_bounced(&self, user: UserId, at: DateTime<Utc>) -> Result<()> {
        mark_user(self.conn(), user, users::Column::EmailBouncedAt, at).await
    }

    async fn update_chat_id(&self, user: UserId, chat_id: TelegramChatId) -> Result<()> {
        let result = users::Entity::update_many()
            .col_expr(users::Column::TelegramChatId, Expr::val(chat_id.get()))
            .col_expr(users::Column::UpdatedAt, Expr::val(Utc::now()))
            .filter(users::Column::Id.eq(user))
            .exec(self.conn())
            .await
            .map_err(|e| {
                unique_or(e, || {
                    format!("telegram chat id {chat_id} already belongs to another user")
                })
            })?;
        if result.rows_affected == 0 {
            return Err(Error::not_found("user", user));
        }
        Ok(())
    }
}
