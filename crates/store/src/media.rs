//! [`MediaStore`] for [`Store`]: the media library, names in `media`, bytes once per content in
//! `media_blobs` (see migration 14 for why the bytes are in the database).

use async_trait::async_trait;
use broadcast_domain::{
    BroadcastStatus, Error, MediaId, MediaKind, MediaRef, MediaStore, Medium, NewMedium, Result,
    TemplateContent, check_still_held, name_taken, refuse_if_used,
};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{OnConflict, Query};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction,
    EntityTrait, QueryFilter, QueryOrder, QuerySelect,
};

use crate::entity::{broadcasts, media, media_blobs, message_templates, telegram_files};
use crate::error::{db_err, is_unique_violation};
use crate::{Store, convert};

fn medium(m: media::Model) -> Result<Medium> {
    let kind = MediaKind::parse(&m.kind)
        .ok_or_else(|| Error::Internal(format!("medium {}: unknown kind `{}`", m.id, m.kind)))?;
    Ok(Medium {
        id: m.id,
        name: m.name,
        content_type: m.content_type,
        kind,
        size: u64::try_from(m.size).unwrap_or(0),
        sha256: m.sha256,
        created_by: m.created_by,
        created_at: m.created_at,
        updated_at: m.updated_at,
    })
}

/// Keeps `bytes` under their SHA-256 unless they are kept already.
async fn keep_blob(txn: &DatabaseTransaction, new: &NewMedium, now: DateTime<Utc>) -> Result<()> {
    let insert = Query::insert()
        .into_table(media_blobs::Entity)
        .columns([
            media_blobs::Column::Sha256,
            media_blobs::Column::Size,
            media_blobs::Column::Bytes,
            media_blobs::Column::CreatedAt,
        ])
        .values_panic([
            new.sha256.clone().into(),
            (new.bytes.len() as i64).into(),
            new.bytes.clone().into(),
            now.into(),
        ])
        .on_conflict(
            OnConflict::column(media_blobs::Column::Sha256)
                .do_nothing()
                .to_owned(),
        )
        .to_owned();
    txn.execute(&insert).await.map_err(db_err)?;
    Ok(())
}

/// The media frozen into broadcasts that have not finished: (id, name, media) of each.
async fn frozen_uses(txn: &DatabaseTransaction) -> Result<Vec<(i64, String, Vec<MediaRef>)>> {
    let finals: Vec<&str> = BroadcastStatus::ALL
        .iter()
        .filter(|s| s.is_final())
        .map(|s| s.as_str())
        .collect();
    let rows: Vec<(i64, String, Option<serde_json::Value>)> = broadcasts::Entity::find()
        .select_only()
        .columns([
            broadcasts::Column::Id,
            broadcasts::Column::Name,
            broadcasts::Column::FrozenTemplate,
        ])
        .filter(broadcasts::Column::Status.is_not_in(finals))
        .filter(broadcasts::Column::FrozenTemplate.is_not_null())
        .into_tuple()
        .all(txn)
        .await
        .map_err(db_err)?;
    let mut uses = Vec::new();
    for (id, name, frozen) in rows {
        let Some(frozen) = frozen else { continue };
        let content: TemplateContent =
            convert::from_json("broadcasts", "frozen_template", id, frozen)?;
        if !content.telegram_media.is_empty() {
            uses.push((id, name, content.telegram_media));
        }
    }
    Ok(uses)
}

/// The templates showing medium `id`, by name.
async fn templates_using(txn: &DatabaseTransaction, id: MediaId) -> Result<Vec<String>> {
    let rows: Vec<(i64, String, Option<serde_json::Value>)> = message_templates::Entity::find()
        .select_only()
        .columns([
            message_templates::Column::Id,
            message_templates::Column::Name,
            message_templates::Column::TelegramMedia,
        ])
        .filter(message_templates::Column::TelegramMedia.is_not_null())
        .order_by_asc(message_templates::Column::Name)
        .into_tuple()
        .all(txn)
        .await
        .map_err(db_err)?;
    let mut names = Vec::new();
    for (template, name, media) in rows {
        let Some(media) = media else { continue };
        let media: Vec<MediaRef> =
            convert::from_json("message_templates", "telegram_media", template, media)?;
        if media.iter().any(|m| m.medium == id) {
            names.push(name);
        }
    }
    Ok(names)
}

/// Locks the library entries a launch freezes (`FOR SHARE` on PostgreSQL, so that replacing or
/// removing one waits for the launch to commit and then sees the broadcast holding the bytes;
/// on SQLite the caller holds the write lock) and checks they still hold the frozen bytes.
pub(crate) async fn hold_media(txn: &DatabaseTransaction, frozen: &[MediaRef]) -> Result<()> {
    for r in frozen {
        let current: Option<String> = media::Entity::find_by_id(r.medium)
            .select_only()
            .column(media::Column::Sha256)
            .lock_shared()
            .into_tuple()
            .one(txn)
            .await
            .map_err(db_err)?;
        check_still_held(r, current.as_deref())?;
    }
    Ok(())
}

/// Removes the bytes no medium names and no unfinished broadcast launched with: those a replace
/// or removal just let go, and those a broadcast held until it finished.
async fn sweep_blobs(txn: &DatabaseTransaction) -> Result<()> {
    let frozen: Vec<String> = frozen_uses(txn)
        .await?
        .into_iter()
        .flat_map(|(_, _, media)| media.into_iter().map(|m| m.sha256))
        .collect();
    let named = Query::select()
        .column(media::Column::Sha256)
        .from(media::Entity)
        .to_owned();
    let mut sweep = media_blobs::Entity::delete_many()
        .filter(media_blobs::Column::Sha256.not_in_subquery(named));
    if !frozen.is_empty() {
        sweep = sweep.filter(media_blobs::Column::Sha256.is_not_in(frozen));
    }
    sweep.exec(txn).await.map_err(db_err)?;
    Ok(())
}

#[async_trait]
impl MediaStore for Store {
    #[tracing::instrument(skip(self, new), fields(name = %new.name, size = new.bytes.len()))]
    async fn add_medium(
        &self,
        new: NewMedium,
        replace: bool,
        now: DateTime<Utc>,
    ) -> Result<Medium> {
        let _guard = self.sqlite_write_lock().await;
        let txn = self.begin().await?;
        keep_blob(&txn, &new, now).await?;
        let existing = media::Entity::find()
            .filter(media::Column::Name.eq(new.name.as_str()))
            .one(&txn)
            .await
            .map_err(db_err)?;
        let model = match existing {
            Some(old) if replace => {
                let previous = old.sha256.clone();
                let mut active: media::ActiveModel = old.into();
                active.content_type = Set(new.content_type.clone());
                active.kind = Set(new.kind.as_str().to_owned());
                active.size = Set(new.bytes.len() as i64);
                active.sha256 = Set(new.sha256.clone());
                active.created_by = Set(new.created_by.clone());
                active.updated_at = Set(now);
                let model = active.update(&txn).await.map_err(db_err)?;
                if previous != new.sha256 {
                    sweep_blobs(&txn).await?;
                }
                model
            }
            Some(_) => return Err(name_taken(&new.name)),
            None => media::ActiveModel {
                name: Set(new.name.clone()),
                content_type: Set(new.content_type.clone()),
                kind: Set(new.kind.as_str().to_owned()),
                size: Set(new.bytes.len() as i64),
                sha256: Set(new.sha256.clone()),
                created_by: Set(new.created_by.clone()),
                created_at: Set(now),
                updated_at: Set(now),
                ..Default::default()
            }
            .insert(&txn)
            .await
            .map_err(|e| match is_unique_violation(&e) {
                true => name_taken(&new.name),
                false => db_err(e),
            })?,
        };
        txn.commit().await.map_err(db_err)?;
        medium(model)
    }

    async fn list_media(&self) -> Result<Vec<Medium>> {
        media::Entity::find()
            .order_by_asc(media::Column::Name)
            .all(self.conn())
            .await
            .map_err(db_err)?
            .into_iter()
            .map(medium)
            .collect()
    }

    async fn get_medium(&self, id: MediaId) -> Result<Medium> {
        media::Entity::find_by_id(id)
            .one(self.conn())
            .await
            .map_err(db_err)?
            .ok_or_else(|| Error::not_found("medium", id))
            .and_then(medium)
    }

    async fn find_medium(&self, name: &str) -> Result<Option<Medium>> {
        media::Entity::find()
            .filter(media::Column::Name.eq(name))
            .one(self.conn())
            .await
            .map_err(db_err)?
            .map(medium)
            .transpose()
    }

    async fn medium_bytes(&self, sha256: &str) -> Result<Vec<u8>> {
        media_blobs::Entity::find_by_id(sha256.to_owned())
            .select_only()
            .column(media_blobs::Column::Bytes)
            .into_tuple::<Vec<u8>>()
            .one(self.conn())
            .await
            .map_err(db_err)?
            .ok_or_else(|| Error::not_found("media bytes", sha256))
    }

    #[tracing::instrument(skip(self))]
    async fn remove_medium(&self, id: MediaId) -> Result<Medium> {
        let _guard = self.sqlite_write_lock().await;
        let txn = self.begin().await?;
        // Locked first (`FOR UPDATE` on PostgreSQL): a launch freezing this medium holds the row
        // `FOR SHARE` until it commits, so the uses read below include it, and a launch that
        // comes later finds the row gone (`hold_media`).
        let model = media::Entity::find_by_id(id)
            .lock_exclusive()
            .one(&txn)
            .await
            .map_err(db_err)?
            .ok_or_else(|| Error::not_found("medium", id))?;
        let templates = templates_using(&txn, id).await?;
        let broadcasts: Vec<(i64, String)> = frozen_uses(&txn)
            .await?
            .into_iter()
            .filter(|(_, _, media)| media.iter().any(|m| m.medium == id))
            .map(|(b, name, _)| (b, name))
            .collect();
        refuse_if_used(&model.name, &templates, &broadcasts)?;
        media::Entity::delete_by_id(id)
            .exec(&txn)
            .await
            .map_err(db_err)?;
        sweep_blobs(&txn).await?;
        txn.commit().await.map_err(db_err)?;
        medium(model)
    }

    async fn telegram_file_id(&self, bot: i64, sha256: &str) -> Result<Option<String>> {
        telegram_files::Entity::find_by_id((bot, sha256.to_owned()))
            .select_only()
            .column(telegram_files::Column::FileId)
            .into_tuple()
            .one(self.conn())
            .await
            .map_err(db_err)
    }

    async fn keep_telegram_file_id(
        &self,
        bot: i64,
        sha256: &str,
        kind: MediaKind,
        file_id: &str,
        now: DateTime<Utc>,
    ) -> Result<()> {
        let row = telegram_files::ActiveModel {
            bot_id: Set(bot),
            sha256: Set(sha256.to_owned()),
            kind: Set(kind.as_str().to_owned()),
            file_id: Set(file_id.to_owned()),
            created_at: Set(now),
        };
        telegram_files::Entity::insert(row)
            .on_conflict(
                OnConflict::columns([
                    telegram_files::Column::BotId,
                    telegram_files::Column::Sha256,
                ])
                .update_columns([
                    telegram_files::Column::Kind,
                    telegram_files::Column::FileId,
                    telegram_files::Column::CreatedAt,
                ])
                .to_owned(),
            )
            .exec(self.conn())
            .await
            .map_err(db_err)?;
        Ok(())
    }

    async fn forget_telegram_file_id(&self, bot: i64, sha256: &str, file_id: &str) -> Result<()> {
        telegram_files::Entity::delete_many()
            .filter(telegram_files::Column::BotId.eq(bot))
            .filter(telegram_files::Column::Sha256.eq(sha256))
            .filter(telegram_files::Column::FileId.eq(file_id))
            .exec(self.conn())
            .await
            .map_err(db_err)?;
        Ok(())
    }
}
