//! [`AdminStore`] and [`AuditLog`] for [`Store`]: administrators and the audit trail.

use async_trait::async_trait;
use broadcast_domain::{AdminStore, AdminUser, AuditEntry, AuditLog, Error, Result};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
};

use crate::Store;
use crate::convert;
use crate::entity::{admin_users, audit_log};
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

    #[tracing::instrument(skip(self, password_hash))]
    async fn set_admin_password(&self, username: &str, password_hash: &str) -> Result<()> {
        check_hash(password_hash)?;
        self.update_admin(
            username,
            admin_users::Column::PasswordHash,
            Expr::val(password_hash),
        )
        .await
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

    /// Newest first (by time, then id); `limit` 0 returns every entry after `offset`.
    async fn recent(&self, limit: u64, offset: u64) -> Result<Vec<AuditEntry>> {
        let select = audit_log::Entity::find()
            .order_by_desc(audit_log::Column::At)
            .order_by_desc(audit_log::Column::Id);
        Ok(paged(select, offset, limit)
            .all(self.conn())
            .await
            .map_err(db_err)?
            .into_iter()
            .map(convert::audit)
            .collect())
    }
}
