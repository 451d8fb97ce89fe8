//! The audited calls around a broadcast and the audience that change nothing in a broadcast's
//! lifecycle: a test send, a recount, an export, an unsubscribe. Each checks its rule once and
//! writes one audit entry naming the actor, whichever front-end calls it.

use serde_json::json;

use broadcast_domain::RecipientQuery;

use super::*;

impl TestTarget {
    /// The target as the audit log records it.
    fn describe(&self) -> serde_json::Value {
        match self {
            Self::User(id) => json!({ "user": id }),
            Self::Chat(chat) => json!({ "chat": chat }),
            Self::Email(to) => json!({ "email": to }),
            Self::Address(channel, to) => json!({ "channel": channel, "to": to }),
        }
    }
}

impl Orchestrator {
    /// Sends the broadcast's message once, now, to a test target, without touching the
    /// broadcast's ledger or statistics (`broadcast.test_send`, with the target and each
    /// channel's result). Returns one result per channel tried.
    pub async fn test_send(
        &self,
        actor: &Actor,
        id: BroadcastId,
        target: TestTarget,
    ) -> Result<Vec<(ChannelKind, std::result::Result<Delivered, DeliveryError>)>> {
        let described = target.describe();
        let results = self.send_test(id, target).await?;
        let outcome: Vec<serde_json::Value> = results
            .iter()
            .map(|(channel, r)| match r {
                Ok(d) => json!({ "channel": channel, "ok": true, "id": d.provider_message_id }),
                Err(e) => json!({ "channel": channel, "ok": false, "error": e.to_string() }),
            })
            .collect();
        self.audit_broadcast(
            actor,
            "broadcast.test_send",
            id,
            json!({ "target": described, "results": outcome }),
        )
        .await;
        Ok(results)
    }

    /// Rebuilds a broadcast's statistics from its ledger rows, a repair after rows were
    /// changed outside the store (`broadcast.recount`). Refused while the broadcast runs: a
    /// worker's write during the recount could be counted twice or not at all.
    pub async fn recount(&self, actor: &Actor, id: BroadcastId) -> Result<DeliveryStats> {
        let b = self.ports.broadcasts.get_broadcast(id).await?;
        if b.status == BroadcastStatus::Running {
            return Err(Error::Conflict(format!(
                "broadcast {id} is running; pause it before recounting, and resume it after"
            )));
        }
        self.ports.deliveries.recount(id).await?;
        self.audit_broadcast(actor, "broadcast.recount", id, json!({}))
            .await;
        self.ports.deliveries.stats(id).await
    }

    /// Records that `actor` exports the rows of a broadcast that `query` selects
    /// (`broadcast.export`), after checking that the broadcast exists; the front-end then reads
    /// the rows page by page ([`DeliveryStore::list_recipients_after`]).
    pub async fn export(
        &self,
        actor: &Actor,
        id: BroadcastId,
        query: &RecipientQuery,
    ) -> Result<()> {
        self.ports.broadcasts.get_broadcast(id).await?;
        self.audit_broadcast(
            actor,
            "broadcast.export",
            id,
            json!({
                "status": query.status, "channel": query.channel, "error_kind": query.error_kind,
            }),
        )
        .await;
        Ok(())
    }

    /// Stops e-mail to a user (`audience.unsubscribe`, with how: `link`, `panel`, ...). Nothing
    /// changes, and nothing is recorded, for a user who already unsubscribed. Returns true
    /// when the user was unsubscribed now.
    pub async fn unsubscribe_email(&self, actor: &Actor, user: UserId, via: &str) -> Result<bool> {
        let u = self.ports.audience.get_user(user).await?;
        if u.email_unsubscribed_at.is_some() {
            return Ok(false);
        }
        let now = self.ports.clock.now();
        self.ports
            .audience
            .mark_email_unsubscribed(user, now)
            .await?;
        self.audit(
            actor,
            "audience.unsubscribe",
            ("user", Some(user)),
            json!({ "via": via }),
        )
        .await;
        Ok(true)
    }
}

impl Orchestrator {
    fn admins(&self) -> Result<&Arc<dyn AdminStore>> {
        self.ports.admins.as_ref().ok_or_else(|| {
            Error::Invalid("this program keeps no administrators (Ports::admins is None)".into())
        })
    }

    pub(super) fn media(&self) -> Result<&Arc<dyn MediaStore>> {
        self.ports.media.as_ref().ok_or_else(|| {
            Error::Invalid("this program keeps no media library (Ports::media is None)".into())
        })
    }

    /// Adds a file to the media library (`media.add`), or with `replace` gives the medium of
    /// that name these bytes (`media.replace`). The upload is checked first
    /// ([`NewMedium::check`]): a file whose bytes are not what its name says, an empty one or
    /// one too large for Telegram is refused with what is wrong, and nothing is written.
    pub async fn add_medium(
        &self,
        actor: &Actor,
        name: &str,
        bytes: Vec<u8>,
        replace: bool,
    ) -> Result<Medium> {
        let media = self.media()?;
        let new = NewMedium::check(name, bytes, actor.as_str())?;
        let replacing = match replace {
            true => media.find_medium(&new.name).await?,
            false => None,
        };
        let medium = media
            .add_medium(new, replace, self.ports.clock.now())
            .await?;
        let mut details = json!({
            "name": medium.name,
            "content_type": medium.content_type,
            "kind": medium.kind,
            "size": medium.size,
            "sha256": medium.sha256,
        });
        let action = match replacing {
            Some(old) => {
                details["replaced_sha256"] = json!(old.sha256);
                "media.replace"
            }
            None => "media.add",
        };
        self.audit(actor, action, ("medium", Some(medium.id)), details)
            .await;
        Ok(medium)
    }

    /// Removes a medium from the library (`media.remove`); its bytes go when no other medium
    /// has the same.
    pub async fn remove_medium(&self, actor: &Actor, id: MediaId) -> Result<Medium> {
        let medium = self.media()?.remove_medium(id).await?;
        self.audit(
            actor,
            "media.remove",
            ("medium", Some(medium.id)),
            json!({ "name": medium.name, "sha256": medium.sha256 }),
        )
        .await;
        Ok(medium)
    }

    /// The media library, by name.
    pub async fn list_media(&self) -> Result<Vec<Medium>> {
        self.media()?.list_media().await
    }

    /// A medium by id, or by name when `key` is not a number.
    pub async fn medium(&self, key: &str) -> Result<Medium> {
        let media = self.media()?;
        if let Ok(id) = key.trim().parse::<MediaId>() {
            return media.get_medium(id).await;
        }
        media
            .find_medium(key)
            .await?
            .ok_or_else(|| Error::not_found("medium", format!("`{key}`")))
    }

    /// A medium's bytes.
    pub async fn medium_bytes(&self, medium: &Medium) -> Result<Vec<u8>> {
        self.media()?.medium_bytes(&medium.sha256).await
    }

    /// Creates an administrator of the panel with a password hash (PHC string) made by the
    /// caller (`admin.create_user`). A name already taken is a conflict that says how to change
    /// that administrator's password instead.
    pub async fn create_admin(
        &self,
        actor: &Actor,
        username: &str,
        password_hash: &str,
    ) -> Result<AdminUser> {
        let admins = self.admins()?;
        if admins.find_admin(username).await?.is_some() {
            return Err(Error::Conflict(format!(
                "an administrator named `{username}` already exists; set a new password for \
                 `{username}` instead"
            )));
        }
        let admin = admins
            .create_admin(username, password_hash, self.ports.clock.now())
            .await?;
        self.audit(
            actor,
            "admin.create_user",
            ("admin_user", Some(admin.id)),
            json!({ "username": admin.username }),
        )
        .await;
        Ok(admin)
    }

    /// Gives an administrator a new password hash (PHC string) made by the caller, which ends
    /// every session of theirs (`admin.set_password`, with where the change came from).
    pub async fn set_admin_password(
        &self,
        actor: &Actor,
        username: &str,
        password_hash: &str,
        from: &str,
    ) -> Result<AdminUser> {
        let admins = self.admins()?;
        let admin = admins
            .find_admin(username)
            .await?
            .ok_or_else(|| Error::not_found("administrator", format!("`{username}`")))?;
        admins.set_admin_password(username, password_hash).await?;
        self.audit(
            actor,
            "admin.set_password",
            ("admin_user", Some(admin.id)),
            json!({ "username": admin.username, "from": from, "other_sessions_ended": true }),
        )
        .await;
        Ok(admin)
    }
}
