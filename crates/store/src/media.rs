//! [`MediaStore`] for [`Store`]: the media library, names in `media`, bytes once per content in
//! `media_blobs` (see migration 14 for why the bytes are in the database).

use async_trait::async_trait;
use broadcast_domain::{
    Error, MediaId, MediaKind, MediaStore, Medium, NewMedium, Result, name_taken,
};
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{OnConflict, Query};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseTransaction,
    EntityTrait, PaginatorTrait, QueryFilter, QueryOrder, QuerySelect,
};

use crate::Store;
use crate::entity::{media, media_blobs};
use crate::error::{db_err, is_unique_violation};

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

/// Removes the bytes under `sha256` when no medium names them any more.
async fn drop_blob_if_unused(txn: &DatabaseTransaction, sha256: &str) -> Result<()> {
    let users = media::Entity::find()
        .filter(media::Column::Sha256.eq(sha256))
        .count(txn)
        .await
        .map_err(db_err)?;
    if users == 0 {
        media_blobs::Entity::delete_by_id(sha256.to_owned())
            .exec(txn)
            .await
            .map_err(db_err)?;
    }
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
                    drop_blob_if_unused(&txn, &previous).await?;
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
        let model = media::Entity::find_by_id(id)
            .one(&txn)
            .await
            .map_err(db_err)?
            .ok_or_else(|| Error::not_found("medium", id))?;
        media::Entity::delete_by_id(id)
            .exec(&txn)
            .await
            .map_err(db_err)?;
        drop_blob_if_unused(&txn, &model.sha256).await?;
        txn.commit().await.map_err(db_err)?;
        medium(model)
    }
}
