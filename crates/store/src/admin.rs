//! [`AdminStore`] and [`AuditLog`] for [`Store`]: administrators and the audit trail.

use async_trait::async_trait;
use broadcast_domain::{
    AdminSession, AdminStore, AdminUser, AuditEntry, AuditLog, AuditQuery, Error, Result,
};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Condition, Expr, ExprTrait, Func, LikeExpr};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
};

use crate::Store;
use crate::convert;
use crate::entity::{admin_sessions, admin_users, audit_log};
use crate::error::{db_err, unique_or};
use crate::store::paged;

impl Store {
    /// Updates one column of an administrator, NotFound when the name is unknown.
    async fn update_admin(
        &self,
        username: &str,
        column: admin_users::Column,
        value: Expr,
    ) -> Result<()> {
        let result = admin_users::Entity::update_many()
            .col_expr(column, value)
            .filter(admin_users::Column::Username.eq(username))
            .exec(self.conn())
            .await
            .map_err(db_err)?;
        if result.rows_affected == 0 {
            return Err(Error::not_found("administrator", username));
        }
        Ok(())
    }
}

fn check_hash(password_hash: &str) -> Result<()> {
    if password_hash.trim().is_empty() {
        return Err(Error::Invalid("a password hash must not be empty".into()));
    }
    Ok(())
}

#[async_trait]
impl AdminStore for Store {
    #[tracing::instrument(skip(self, password_hash))]
    async fn create_admin(
        &self,
        username: &str,
        password_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<AdminUser> {
        if username.trim().is_empty() || username.trim() != username {
            return Err(Error::Invalid(format!(
                "administrator name `{username}` must not be empty or start or end with spaces"
            )));
        }
        check_hash(password_hash)?;
        let model = admin_users::ActiveModel {
            username: Set(username.to_owned()),
            password_hash: Set(password_hash.to_owned()),
            created_at: Set(now),
            last_login_at: Set(None),
            ..Default::default()
        }
        .insert(self.conn())
        .await
        .map_err(|e| {
            unique_or(e, || {
                format!("an administrator named `{username}` already exists")
            })
        })?;
        Ok(convert::admin(model))
    }

    /// Case-sensitive: `Alice` and `alice` are different administrators.
    async fn find_admin(&self, username: &str) -> Result<Option<AdminUser>> {
        Ok(admin_users::Entity::find()
            .filter(admin_users::Column::Username.eq(username))
            .one(self.conn())
            .await
            .map_err(db_err)?
            .map(convert::admin))
    }

    /// One transaction: the new hash, and no session of the administrator left.
    #[tracing::instrument(skip(self, password_hash))]
    async fn set_admin_password(&self, username: &str, password_hash: &str) -> Result<()> {
        check_hash(password_hash)?;
        let _guard = self.sqlite_write_lock().await;
        let txn = self.begin().await?;
        let changed = admin_users::Entity::update_many()
            .col_expr(admin_users::Column::PasswordHash, Expr::val(password_hash))
            .filter(admin_users::Column::Username.eq(username))
            .exec(&txn)
            .await
            .map_err(db_err)?;
        if changed.rows_affected == 0 {
            return Err(Error::not_found("administrator", username));
        }
        admin_sessions::Entity::delete_many()
            .filter(admin_sessions::Column::Username.eq(username))
            .exec(&txn)
            .await
            .map_err(db_err)?;
        txn.commit().await.map_err(db_err)
    }

    async fn create_session(&self, session: AdminSession) -> Result<()> {
        admin_sessions::ActiveModel {
            id_hash: Set(session.id_hash),
            username: Set(session.username),
            created_at: Set(session.created_at),
            expires_at: Set(session.expires_at),
        }
        .insert(self.conn())
        .await
        .map_err(|e| unique_or(e, || "that session already exists".to_owned()))?;
        Ok(())
    }

    async fn find_session(
        &self,
        id_hash: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<AdminSession>> {
        Ok(admin_sessions::Entity::find_by_id(id_hash.to_owned())
            .filter(admin_sessions::Column::ExpiresAt.gt(now))
            .one(self.conn())
            .await
            .map_err(db_err)?
            .map(|m| AdminSession {
                id_hash: m.id_hash,
                username: m.username,
                created_at: m.created_at,
                expires_at: m.expires_at,
            }))
    }

    async fn end_session(&self, id_hash: &str) -> Result<()> {
        admin_sessions::Entity::delete_by_id(id_hash.to_owned())
            .exec(self.conn())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn end_sessions(&self, username: &str, now: DateTime<Utc>) -> Result<u64> {
        let ended = admin_sessions::Entity::delete_many()
            .filter(admin_sessions::Column::Username.eq(username))
            .exec(self.conn())
            .await
            .map_err(db_err)?
            .rows_affected;
        admin_sessions::Entity::delete_many()
            .filter(admin_sessions::Column::ExpiresAt.lte(now))
            .exec(self.conn())
            .await
            .map_err(db_err)?;
        Ok(ended)
    }

    async fn record_login(&self, username: &str, at: DateTime<Utc>) -> Result<()> {
        self.update_admin(username, admin_users::Column::LastLoginAt, Expr::val(at))
            .await
    }

    async fn list_admins(&self) -> Result<Vec<AdminUser>> {
        Ok(admin_users::Entity::find()
            .order_by_asc(admin_users::Column::Username)
            .all(self.conn())
            .await
            .map_err(db_err)?
            .into_iter()
            .map(convert::admin)
            .collect())
    }
}

#[async_trait]
impl AuditLog for Store {
    /// Stores the entry under a new id (the entry's own `id` is ignored).
    async fn record(&self, entry: AuditEntry) -> Result<()> {
        audit_log::ActiveModel {
            actor: Set(entry.actor),
            action: Set(entry.action),
            target_type: Set(entry.target_type),
            target_id: Set(entry.target_id),
            details: Set(entry.details),
            at: Set(entry.at),
            ..Default::default()
        }
        .insert(self.conn())
        .await
        .map_err(db_err)?;
        Ok(())
    }

    /// Newest first (by time, then id). Actor and action match with `LOWER(...) LIKE` and
    /// escaped wildcards, the rest with `=`, `>=` and `<`.
    async fn search(&self, q: &AuditQuery) -> Result<Vec<AuditEntry>> {
        use audit_log::Column as A;
        let like = |column: A, pattern: String| {
            Expr::expr(Func::lower(Expr::col(column))).like(LikeExpr::new(pattern).escape('\\'))
        };
        let escaped = |text: &str| {
            text.to_ascii_lowercase()
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_")
        };
        let mut cond = Condition::all();
        if let Some(actor) = &q.actor {
            cond = cond.add(like(A::Actor, format!("%{}%", escaped(actor))));
        }
        if let Some(action) = &q.action {
            cond = cond.add(like(A::Action, format!("{}%", escaped(action))));
        }
        if let Some(target_type) = &q.target_type {
            cond = cond.add(A::TargetType.eq(target_type.as_str()));
        }
        if let Some(id) = q.target_id {
            cond = cond.add(A::TargetId.eq(id));
        }
        if let Some(from) = q.from {
            cond = cond.add(A::At.gte(from));
        }
        if let Some(until) = q.until {
            cond = cond.add(A::At.lt(until));
        }
        let select = audit_log::Entity::find()
            .filter(cond)
            .order_by_desc(audit_log::Column::At)
            .order_by_desc(audit_log::Column::Id);
        Ok(paged(select, q.offset, q.limit)
            .all(self.conn())
            .await
            .map_err(db_err)?
            .into_iter()
            .map(convert::audit)
            .collect())
    }
}
