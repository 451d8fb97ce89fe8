//! [`TemplateStore`] for [`Store`]: named, versioned message templates.

use async_trait::async_trait;
use broadcast_domain::{
    Error, MessageTemplate, NewTemplate, Result, TemplateId, TemplateName, TemplateStore,
};
use chrono::Utc;
use sea_orm::sea_query::{Expr, ExprTrait};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, EntityTrait, QueryFilter, QueryOrder,
};

use crate::Store;
use crate::convert;
use crate::entity::message_templates::{self, Column, Entity};
use crate::error::{db_err, unique_or};

fn taken(name: &TemplateName) -> impl FnOnce() -> String + '_ {
    move || format!("a template named `{name}` already exists")
}

#[async_trait]
impl TemplateStore for Store {
    #[tracing::instrument(skip(self, new), fields(name = %new.name))]
    async fn create_template(&self, new: NewTemplate) -> Result<MessageTemplate> {
        let now = Utc::now();
        let c = new.content;
        let media = convert::list_json("the template's media", &c.telegram_media)?;
        let buttons = convert::list_json("the template's buttons", &c.telegram_buttons)?;
        let model = message_templates::ActiveModel {
            name: Set(new.name.as_ref().to_owned()),
            description: Set(new.description),
            telegram_text: Set(c.telegram_text),
            parse_mode: Set(c.parse_mode.as_str().to_owned()),
            link_preview: Set(c.link_preview),
            telegram_media: Set(media),
            telegram_buttons: Set(buttons),
            email_subject: Set(c.email_subject),
            email_html: Set(c.email_html),
            email_text: Set(c.email_text),
            version: Set(1),
            created_at: Set(now),
            updated_at: Set(now),
            ..Default::default()
        }
        .insert(self.conn())
        .await
        .map_err(|e| unique_or(e, taken(&new.name)))?;
        convert::template(model)
    }

    #[tracing::instrument(skip(self, update), fields(name = %update.name))]
    async fn update_template(
        &self,
        id: TemplateId,
        update: NewTemplate,
    ) -> Result<MessageTemplate> {
        let c = update.content;
        let media = convert::list_json("the template's media", &c.telegram_media)?;
        let buttons = convert::list_json("the template's buttons", &c.telegram_buttons)?;
        let rows = Entity::update_many()
            .col_expr(Column::Name, Expr::val(update.name.as_ref()))
            .col_expr(Column::Description, Expr::val(update.description))
            .col_expr(Column::TelegramText, Expr::val(c.telegram_text))
            .col_expr(Column::ParseMode, Expr::val(c.parse_mode.as_str()))
            .col_expr(Column::LinkPreview, Expr::val(c.link_preview))
            .col_expr(Column::TelegramMedia, Expr::val(media))
            .col_expr(Column::TelegramButtons, Expr::val(buttons))
            .col_expr(Column::EmailSubject, Expr::val(c.email_subject))
            .col_expr(Column::EmailHtml, Expr::val(c.email_html))
            .col_expr(Column::EmailText, Expr::val(c.email_text))
            .col_expr(Column::Version, Expr::col(Column::Version).add(1))
            .col_expr(Column::UpdatedAt, Expr::val(Utc::now()))
            .filter(Column::Id.eq(id))
            .exec_with_returning(self.conn())
            .await
            .map_err(|e| unique_or(e, taken(&update.name)))?;
        let model = rows
            .into_iter()
            .next()
            .ok_or_else(|| Error::not_found("template", id))?;
        convert::template(model)
    }

    async fn get_template(&self, id: TemplateId) -> Result<MessageTemplate> {
        let model = Entity::find_by_id(id)
            .one(self.conn())
            .await
            .map_err(db_err)?
            .ok_or_else(|| Error::not_found("template", id))?;
        convert::template(model)
    }

    async fn find_template(&self, name: &TemplateName) -> Result<Option<MessageTemplate>> {
        Entity::find()
            .filter(Column::Name.eq(name.as_ref()))
            .one(self.conn())
            .await
            .map_err(db_err)?
            .map(convert::template)
            .transpose()
    }

    async fn list_templates(&self) -> Result<Vec<MessageTemplate>> {
        let models = Entity::find()
            .order_by_asc(Column::Name)
            .all(self.conn())
            .await
            .map_err(db_err)?;
        convert::all(models, convert::template)
    }

    #[tracing::instrument(skip(self))]
    async fn delete_template(&self, id: TemplateId) -> Result<()> {
        let result = Entity::delete_by_id(id)
            .exec(self.conn())
            .await
            .map_err(db_err)?;
        if result.rows_affected == 0 {
            return Err(Error::not_found("template", id));
        }
        Ok(())
    }
}
