//! [`TemplateStore`]: templates by id and name, versioned on update.

use async_trait::async_trait;
use broadcast_domain::*;
use chrono::Utc;

use super::MemoryStore;

#[async_trait]
impl TemplateStore for MemoryStore {
    async fn create_template(&self, new: NewTemplate) -> Result<MessageTemplate> {
        let mut s = self.lock();
        if s.templates.values().any(|t| t.name == new.name) {
            return Err(Error::Conflict(format!(
                "a template named `{}` already exists",
                new.name
            )));
        }
        let now = Utc::now();
        let t = MessageTemplate {
            id: s.id(),
            name: new.name,
            description: new.description,
            content: new.content,
            version: 1,
            created_at: now,
            updated_at: now,
        };
        s.templates.insert(t.id, t.clone());
        Ok(t)
    }

    async fn update_template(
        &self,
        id: TemplateId,
        update: NewTemplate,
    ) -> Result<MessageTemplate> {
        let mut s = self.lock();
        if s.templates
            .values()
            .any(|t| t.name == update.name && t.id != id)
        {
            return Err(Error::Conflict(format!(
                "a template named `{}` already exists",
                update.name
            )));
        }
        let t = s
            .templates
            .get_mut(&id)
            .ok_or_else(|| Error::not_found("template", id))?;
        t.name = update.name;
        t.description = update.description;
        t.content = update.content;
        t.version += 1;
        t.updated_at = Utc::now();
        Ok(t.clone())
    }

    async fn get_template(&self, id: TemplateId) -> Result<MessageTemplate> {
        self.lock()
            .templates
            .get(&id)
            .cloned()
            .ok_or_else(|| Error::not_found("template", id))
    }

    async fn find_template(&self, name: &TemplateName) -> Result<Option<MessageTemplate>> {
        Ok(self
            .lock()
            .templates
            .values()
            .find(|t| &t.name == name)
            .cloned())
    }

    async fn list_templates(&self) -> Result<Vec<MessageTemplate>> {
        let mut v: Vec<_> = self.lock().templates.values().cloned().collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(v)
    }

    async fn delete_template(&self, id: TemplateId) -> Result<()> {
        let mut s = self.lock();
        s.templates
            .remove(&id)
            .ok_or_else(|| Error::not_found("template", id))?;
        for b in s.broadcasts.values_mut() {
            if b.template_id == Some(id) {
                b.template_id = None;
            }
        }
        Ok(())
    }
}
