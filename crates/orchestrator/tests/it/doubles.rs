//! Test doubles: a manual clock, a string-substituting renderer and a scripted channel.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, TimeZone, Utc};

use broadcast_domain::*;

/// A clock that moves only when told to.
#[derive(Debug, Clone)]
pub(crate) struct ManualClock(Arc<Mutex<DateTime<Utc>>>);

impl ManualClock {
    pub(crate) fn new() -> Self {
        Self(Arc::new(Mutex::new(
            Utc.with_ymd_and_hms(2027, 3, 1, 9, 0, 0).unwrap(),
        )))
    }

    pub(crate) fn advance(&self, d: Duration) {
        let mut t = self.0.lock().unwrap();
        *t += chrono::Duration::from_std(d).unwrap();
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.0.lock().unwrap()
    }
}

/// Replaces `{{ first_name }}` and `{{ broadcast_name }}`; `{{ oops }}` is an unknown variable.
#[derive(Debug, Default)]
pub(crate) struct SubstRenderer;

#[derive(Debug)]
struct SubstCompiled(TemplateContent);

fn subst(src: &str, ctx: &RecipientContext, env: &RenderEnv) -> String {
    src.replace("{{ first_name }}", &ctx.user.first_name)
        .replace("{{ broadcast_name }}", &env.broadcast_name)
}

impl CompiledTemplate for SubstCompiled {
    fn render_telegram(
        &self,
        ctx: &RecipientContext,
        env: &RenderEnv,
        _url: Option<&str>,
    ) -> Result<TelegramMessage, TemplateError> {
        let text = subst(
            self.0.telegram_text.as_deref().unwrap_or_default(),
            ctx,
            env,
        );
        if text.chars().count() > 4096 {
            return Err(TemplateError {
                part: TemplatePart::TelegramText,
                kind: TemplateErrorKind::TooLong {
                    length: text.chars().count(),
                    limit: 4096,
                },
            });
        }
        Ok(TelegramMessage {
            text,
            parse_mode: self.0.parse_mode,
            link_preview: false,
            media: self.0.telegram_media.clone(),
            buttons: Vec::new(),
        })
    }

    fn render_email(
        &self,
        ctx: &RecipientContext,
        env: &RenderEnv,
        _url: Option<&str>,
    ) -> Result<EmailMessage, TemplateError> {
        Ok(EmailMessage {
            subject: subst(
                self.0.email_subject.as_deref().unwrap_or_default(),
                ctx,
                env,
            ),
            html: self.0.email_html.as_deref().map(|h| subst(h, ctx, env)),
            text: self.0.email_text.as_deref().map(|h| subst(h, ctx, env)),
        })
    }
}

impl Renderer for SubstRenderer {
    fn compile(
        &self,
        content: &TemplateContent,
    ) -> Result<Box<dyn CompiledTemplate>, TemplateError> {
        match self.validate(content).into_iter().next() {
            Some(e) => Err(e),
            None => Ok(Box::new(SubstCompiled(content.clone()))),
        }
    }

    fn validate(&self, content: &TemplateContent) -> Vec<TemplateError> {
        TemplatePart::ALL
            .iter()
            .filter(|p| content.part(**p).is_some_and(|s| s.contains("{{ oops }}")))
            .map(|p| TemplateError {
                part: *p,
                kind: TemplateErrorKind::UnknownVariable {
                    name: "oops".into(),
                    line: Some(1),
                    column: None,
                    known: vec!["first_name".into()],
                },
            })
            .collect()
    }

    fn variables(&self) -> Vec<VariableInfo> {
        Vec::new()
    }
}

/// A channel that records what it sends and fails as scripted per address.
#[derive(Debug)]
pub(crate) struct ScriptedChannel {
    kind: ChannelKind,
    pub(crate) sent: Mutex<Vec<OutgoingMessage>>,
    script: Mutex<HashMap<String, VecDeque<FailureKind>>>,
    always: Mutex<HashMap<String, FailureKind>>,
    /// When set, every send waits for a permit of this gate before it goes out.
    gate: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
    /// Sends that have started (including those waiting at the gate).
    pub(crate) started: std::sync::atomic::AtomicUsize,
}

impl ScriptedChannel {
    pub(crate) fn new(kind: ChannelKind) -> Arc<Self> {
        Arc::new(Self {
            kind,
            sent: Mutex::default(),
            script: Mutex::default(),
            always: Mutex::default(),
            gate: Mutex::default(),
            started: std::sync::atomic::AtomicUsize::new(0),
        })
    }

    /// From now on every send waits at a closed gate; add permits to the returned semaphore
    /// to let sends through, one per permit.
    pub(crate) fn close_gate(&self) -> Arc<tokio::sync::Semaphore> {
        let gate = Arc::new(tokio::sync::Semaphore::new(0));
        *self.gate.lock().unwrap() = Some(gate.clone());
        gate
    }

    /// The next sends to `address` fail with these kinds, in order; then they succeed.
    pub(crate) fn fail_next(&self, address: &str, kinds: &[FailureKind]) {
        self.script
            .lock()
            .unwrap()
            .entry(address.to_owned())
            .or_default()
            .extend(kinds);
    }

    /// Every send to `address` fails with `kind`.
    pub(crate) fn fail_always(&self, address: &str, kind: FailureKind) {
        self.always.lock().unwrap().insert(address.to_owned(), kind);
    }

    /// Sends to `address` succeed again.
    pub(crate) fn clear(&self, address: &str) {
        self.script.lock().unwrap().remove(address);
        self.always.lock().unwrap().remove(address);
    }

    pub(crate) fn sent_to(&self) -> Vec<String> {
        self.sent
            .lock()
            .unwrap()
            .iter()
            .map(|m| m.body.to())
            .collect()
    }
}

#[async_trait]
impl Channel for ScriptedChannel {
    fn kind(&self) -> ChannelKind {
        self.kind
    }

    fn describe(&self) -> String {
        format!("scripted {}", self.kind)
    }

    async fn send(&self, message: &OutgoingMessage) -> Result<Delivered, DeliveryError> {
        self.started
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let gate = self.gate.lock().unwrap().clone();
        if let Some(gate) = gate {
            gate.acquire().await.expect("gate closed").forget();
        }
        let address = message.body.to();
        let scripted = self
            .script
            .lock()
            .unwrap()
            .get_mut(&address)
            .and_then(VecDeque::pop_front);
        let failure = scripted.or_else(|| self.always.lock().unwrap().get(&address).copied());
        if let Some(kind) = failure {
            return Err(DeliveryError::new(kind, format!("scripted {kind:?}")));
        }
        let mut sent = self.sent.lock().unwrap();
        sent.push(message.clone());
        Ok(Delivered {
            provider_message_id: Some(format!("m{}", sent.len())),
            migrated_to: None,
        })
    }
}
