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
                Preview {
                    user_id: ctx.user.id,
                    full_name: ctx.user.full_name(),
                    telegram: content.supports(MessageFormat::Chat).then(|| {
                        compiled
                            .render_telegram(ctx, &env, url.as_deref())
                            .map_err(|e| e.to_string())
                    }),
                    email: content.supports(MessageFormat::Email).then(|| {
                        compiled
                            .render_email(ctx, &env, url.as_deref())
                            .map_err(|e| e.to_string())
                    }),
                }
            })
            .collect())
    }

    /// Sends the broadcast's message once, now, to a test target, without touching the
    /// broadcast's ledger or statistics. Returns one result per channel tried.
    pub async fn test_send(
        &self,
        id: BroadcastId,
        target: TestTarget,
    ) -> Result<Vec<(ChannelKind, std::result::Result<Delivered, DeliveryError>)>> {
        let b = self.ports.broadcasts.get_broadcast(id).await?;
        let content = self.content_of(&b).await?;
        let compiled = self.ports.renderer.compile(&content)?;
        let env = self.env(&b.name);
        let context = match &target {
            TestTarget::User(user) => {
                let user = self.ports.audience.get_user(*user).await?;
                // The registration the broadcast's filter would match, else the first one.
                let f = &b.filter;
                let mut regs = self.ports.audience.registrations_of(user.id).await?;
                let pick = regs
                    .iter()
                    .position(|(r, _)| {
                        (f.competition_ids.is_empty()
                            || f.competition_ids.contains(&r.competition_id))
                            && (f.roles.is_empty() || f.roles.contains(&r.role))
                            && (f.registration_statuses.is_empty()
                                || f.registration_statuses.contains(&r.status))
                    })
                    .unwrap_or(0);
                let (registration, competition) = if regs.is_empty() {
                    (None, None)
                } else {
                    let (r, c) = regs.swap_remove(pick);
                    (Some(r), Some(c))
                };
                RecipientContext {
                    user,
                    competition,
                    registration,
                }
            }
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
