//! The frozen templates, compiled once per broadcast and worker, and the progress events.

use super::*;

impl Orchestrator {
    pub(super) async fn content_of(&self, b: &Broadcast) -> Result<TemplateContent> {
        if let Some(frozen) = &b.frozen_template {
            return Ok(frozen.clone());
        }
        match b.template_id {
            Some(t) => Ok(self.ports.templates.get_template(t).await?.content),
            None => Err(Error::Invalid(format!(
                "broadcast {} has no template (it was deleted before launch)",
                b.id
            ))),
        }
    }

    pub(super) async fn compiled_for(&self, id: BroadcastId) -> Result<Arc<Compiled>> {
        if let Some(c) = self
            .compiled
            .lock()
            .expect("compiled cache poisoned")
            .get(&id)
        {
            return Ok(c.clone());
        }
        let b = self.ports.broadcasts.get_broadcast(id).await?;
        let content = self.content_of(&b).await?;
        let compiled = Arc::new(Compiled {
            template: self.ports.renderer.compile(&content)?,
            broadcast_name: b.name,
            policy: b.channel_policy,
        });
        self.compiled
            .lock()
            .expect("compiled cache poisoned")
            .insert(id, compiled.clone());
        Ok(compiled)
    }

    #[inline]
    pub(super) fn is_compiled(&self, id: BroadcastId) -> bool {
        self.compiled
            .lock()
            .expect("compiled cache poisoned")
            .contains_key(&id)
    }

    pub(super) fn forget(&self, id: BroadcastId) {
        self.compiled
            .lock()
            .expect("compiled cache poisoned")
            .remove(&id);
        self.published
            .lock()
            .expect("publish times poisoned")
            .remove(&id);
    }

    /// Sends a progress event to the subscribers, if any: always when `force`, otherwise at
    /// most once per [`PUBLISH_EVERY`] per broadcast (each event reads the statistics).
    pub(super) async fn publish(&self, id: BroadcastId, force: bool) -> Result<()> {
        if self.events.receiver_count() == 0 {
            return Ok(());
        }
        {
            let now = std::time::Instant::now();
            let mut last = self.published.lock().expect("publish times poisoned");
            if !force && last.get(&id).is_some_and(|t| now < *t + PUBLISH_EVERY) {
                return Ok(());
            }
            last.insert(id, now);
        }
        let progress = self.progress(id).await?;
        // No receiver left is not an error: nobody is watching.
        let _ = self.events.send(progress);
        Ok(())
    }
}
