//! Previews and test sends: a broadcast's (or a template's) messages rendered for sample
//! recipients, and one message sent to an address of the operator's choice.

use super::*;

impl Orchestrator {
    /// Renders a broadcast's template for up to `limit` recipients of its audience.
    pub async fn preview(&self, id: BroadcastId, limit: u64) -> Result<Vec<Preview>> {
        let b = self.ports.broadcasts.get_broadcast(id).await?;
        let content = self.content_of(&b).await?;
        self.preview_content(&content, &b.name, &b.filter, limit)
            .await
    }

    /// Renders a template for up to `limit` users of an audience, without sending anything.
    pub async fn preview_content(
        &self,
        content: &TemplateContent,
        broadcast_name: &str,
        filter: &AudienceFilter,
        limit: u64,
    ) -> Result<Vec<Preview>> {
        let compiled = self.ports.renderer.compile(content)?;
        let env = self.env(broadcast_name);
        let samples = self.ports.source.sample(filter, limit).await?;
        Ok(samples
            .iter()
            .map(|ctx| {
                let url = self.unsubscribe_url(ctx.user.id);
                render_preview(content, &*compiled, ctx, &env, url.as_deref())
            })
            .collect())
    }

    /// Renders a template for one chosen user, with the registration `filter` would match
    /// (see [`recipient_context`](Self::recipient_context)); also says which registration
    /// that is. An unknown user is [`Error::NotFound`].
    pub async fn preview_for_user(
        &self,
        content: &TemplateContent,
        broadcast_name: &str,
        user: UserId,
        filter: &AudienceFilter,
    ) -> Result<(Preview, String)> {
        let compiled = self.ports.renderer.compile(content)?;
        let (ctx, picked) = self.recipient_context(user, filter).await?;
        let env = self.env(broadcast_name);
        let url = self.unsubscribe_url(ctx.user.id);
        Ok((
            render_preview(content, &*compiled, &ctx, &env, url.as_deref()),
            picked,
        ))
    }

    /// Renders a template for a recipient the caller makes up (a sample), with the values and
    /// unsubscribe link it gives, without touching the audience.
    pub fn preview_sample(
        &self,
        content: &TemplateContent,
        ctx: &RecipientContext,
        env: &RenderEnv,
        unsubscribe_url: Option<&str>,
    ) -> Result<Preview> {
        let compiled = self.ports.renderer.compile(content)?;
        Ok(render_preview(
            content,
            &*compiled,
            ctx,
            env,
            unsubscribe_url,
        ))
    }

    /// What a template can use for a chosen user: the user, and of their registrations the
    /// first that `filter` matches (the first one when it matches none); with a sentence for
    /// people saying which registration that is, or that there is none.
    pub async fn recipient_context(
        &self,
        user: UserId,
        filter: &AudienceFilter,
    ) -> Result<(RecipientContext, String)> {
        let user = self.ports.audience.get_user(user).await?;
        let mut regs = self.ports.audience.registrations_of(user.id).await?;
        let matching = regs.iter().position(|(r, _)| {
            (filter.competition_ids.is_empty()
                || filter.competition_ids.contains(&r.competition_id))
                && (filter.roles.is_empty() || filter.roles.contains(&r.role))
                && (filter.registration_statuses.is_empty()
                    || filter.registration_statuses.contains(&r.status))
        });
        let count = regs.len();
        let name = user.full_name();
        if regs.is_empty() {
            let picked =
                format!("{name} has no registration: the competition, role and status are empty.");
            let ctx = RecipientContext {
                user,
                competition: None,
                registration: None,
            };
            return Ok((ctx, picked));
        }
        let (registration, competition) = regs.swap_remove(matching.unwrap_or(0));
        let which = format!(
            "{} ({}, {})",
            competition.name, registration.role, registration.status
        );
        let constrained = !(filter.competition_ids.is_empty()
            && filter.roles.is_empty()
            && filter.registration_statuses.is_empty());
        let picked = match (count, matching) {
            (1, _) => format!("With {name}'s registration for {which}."),
            (n, _) if !constrained => {
                format!("With {name}'s registration for {which}, the first of {n}.")
            }
            (n, Some(_)) => format!(
                "With {name}'s registration for {which}, the first of {n} that the audience \
                 filter matches."
            ),
            (n, None) => format!(
                "With {name}'s registration for {which}, the first of {n}: the audience \
                 filter matches none of them."
            ),
        };
        let ctx = RecipientContext {
            user,
            competition: Some(competition),
            registration: Some(registration),
        };
        Ok((ctx, picked))
    }

    /// Sends the broadcast's message once, now, to a test target (see
    /// [`test_send`](Self::test_send), which audits it).
    pub(super) async fn send_test(
        &self,
        id: BroadcastId,
        target: TestTarget,
    ) -> Result<Vec<(ChannelKind, std::result::Result<Delivered, DeliveryError>)>> {
        let b = self.ports.broadcasts.get_broadcast(id).await?;
        let content = self.content_of(&b).await?;
        let compiled = self.ports.renderer.compile(&content)?;
        let env = self.env(&b.name);
        let context = match &target {
            TestTarget::User(user) => self.recipient_context(*user, &b.filter).await?.0,
            TestTarget::Chat(_) | TestTarget::Email(_) | TestTarget::Address(..) => {
                let mut sample = self.ports.source.sample(&b.filter, 1).await?;
                sample.pop().ok_or_else(|| {
                    Error::Invalid(format!(
                        "broadcast {id} has an empty audience; test with --user to pick the data"
                    ))
                })?
            }
        };
        let mut bodies = Vec::new();
        for kind in b.channel_policy.channels() {
            let Some(spec) = self.ports.channels.spec(*kind) else {
                continue;
            };
            let to = match &target {
                TestTarget::User(_) => spec.reach.address_of(&context.user).ok(),
                TestTarget::Chat(chat) if *kind == ChannelKind::TELEGRAM => Some(chat.to_string()),
                TestTarget::Email(to) if *kind == ChannelKind::EMAIL => Some(to.to_string()),
                TestTarget::Address(channel, to) if channel == kind => Some(to.clone()),
                _ => None,
            };
            let Some(to) = to.filter(|_| content.supports(spec.format)) else {
                continue;
            };
            let body = self
                .body(spec.format, &to, &context, &*compiled, &env)
                .map_err(|e| match e {
                    BodyError::Render(e) => Error::from(e),
                    BodyError::Address(e) => Error::Invalid(e.0),
                })?;
            bodies.push((*kind, body));
        }
        if bodies.is_empty() {
            return Err(Error::Invalid(format!(
                "nothing to send: the target has no address on the channels of policy `{}`",
                b.channel_policy
            )));
        }
        let mut results = Vec::new();
        for (kind, body) in bodies {
            let channel = self.channel(kind)?;
            let message = OutgoingMessage {
                broadcast_id: None,
                recipient_id: None,
                user_id: Some(context.user.id),
                body,
            };
            results.push((kind, channel.send(&message).await));
        }
        Ok(results)
    }
}

/// The messages of a template for one recipient, each part's error as text.
fn render_preview(
    content: &TemplateContent,
    compiled: &dyn CompiledTemplate,
    ctx: &RecipientContext,
    env: &RenderEnv,
    unsubscribe_url: Option<&str>,
) -> Preview {
    Preview {
        user_id: ctx.user.id,
        full_name: ctx.user.full_name(),
        telegram: content.supports(MessageFormat::Chat).then(|| {
            compiled
                .render_telegram(ctx, env, unsubscribe_url)
                .map_err(|e| e.to_string())
        }),
        email: content.supports(MessageFormat::Email).then(|| {
            compiled
                .render_email(ctx, env, unsubscribe_url)
                .map_err(|e| e.to_string())
        }),
    }
}
