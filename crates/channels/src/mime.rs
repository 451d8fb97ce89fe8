//! Builds the MIME message of an e-mail, shared by the SMTP channel and the e-mail outbox:
//! `multipart/alternative` (text + HTML) or a single part, a unique `Message-ID` under the
//! sender's domain, and RFC 8058 one-click unsubscribe headers.

use broadcast_domain::{DeliveryError, EmailAddress, EmailMessage, FailureKind};
use lettre::Message;
use lettre::message::header::{Header, HeaderName, HeaderValue};
use lettre::message::{Mailbox, MultiPart, SinglePart};

use crate::error::{Error, Result};

/// Who e-mails come from (`SMTP_FROM_EMAIL`, `SMTP_FROM_NAME`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmailSender {
    /// The `From` address; its domain also names the `Message-ID`s.
    pub email: EmailAddress,
    /// Display name shown beside the address.
    pub name: Option<String>,
}

impl EmailSender {
    /// A sender with an optional display name (an empty name counts as none).
    pub fn new(email: EmailAddress, name: Option<String>) -> Self {
        let name = name.map(|n| n.trim().to_owned()).filter(|n| !n.is_empty());
        Self { email, name }
    }
}

/// The `List-Unsubscribe` header with one URL (RFC 2369), e.g. `<https://x.org/unsubscribe/t>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListUnsubscribe(String);

impl ListUnsubscribe {
    /// The header for an absolute http(s) URL; anything else is refused.
    pub fn new(url: &str) -> Result<Self, String> {
        let parsed =
            url::Url::parse(url).map_err(|e| format!("unsubscribe URL `{url}` is invalid: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(format!("unsubscribe URL `{url}` must be http or https"));
        }
        // The serialised URL is ASCII, percent-encoded, without spaces, `<` or `>`.
        Ok(Self(parsed.as_str().to_owned()))
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.0
    }
}

impl Header for ListUnsubscribe {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let inner = s
            .trim()
            .strip_prefix('<')
            .and_then(|rest| rest.split_once('>'))
            .map(|(url, _)| url)
            .ok_or("List-Unsubscribe must hold a URL in angle brackets")?;
        Ok(Self::new(inner)?)
    }

    fn display(&self) -> HeaderValue {
        let value = format!("<{}>", self.0);
        HeaderValue::dangerous_new_pre_encoded(Self::name(), value.clone(), value)
    }
}

/// The `List-Unsubscribe-Post: List-Unsubscribe=One-Click` header (RFC 8058).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListUnsubscribePost;

impl ListUnsubscribePost {
    /// The only value RFC 8058 defines.
    pub const VALUE: &'static str = "List-Unsubscribe=One-Click";
}

impl Header for ListUnsubscribePost {
    fn name() -> HeaderName {
        HeaderName::new_from_ascii_str("List-Unsubscribe-Post")
    }

    fn parse(s: &str) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        if s.trim() == Self::VALUE {
            Ok(Self)
        } else {
            Err(format!("List-Unsubscribe-Post must be `{}`", Self::VALUE).into())
        }
    }

    fn display(&self) -> HeaderValue {
        HeaderValue::new(Self::name(), Self::VALUE.to_owned())
    }
}

/// Turns rendered e-mails into MIME messages from one sender.
#[derive(Debug, Clone)]
pub(crate) struct Composer {
    from: Mailbox,
    id_domain: String,
}

/// A MIME message ready to send and its `Message-ID` (with angle brackets).
#[derive(Debug)]
pub(crate) struct Composed {
    pub(crate) message: Message,
    pub(crate) message_id: String,
}

impl Composer {
    pub(crate) fn new(sender: &EmailSender) -> Result<Self> {
        let address = sender.email.as_ref().parse().map_err(|e| {
            Error::config(format!(
                "the sender address `{}` is not usable: {e}",
                sender.email
            ))
        })?;
        let id_domain = sender
            .email
            .as_ref()
            .rsplit_once('@')
            .map(|(_, domain)| domain.to_owned())
            .unwrap_or_else(|| "localhost".to_owned());
        Ok(Self {
            from: Mailbox::new(sender.name.clone(), address),
            id_domain,
        })
    }

    pub(crate) fn from(&self) -> &Mailbox {
        &self.from
    }

    /// Builds the message; a recipient lettre cannot address is `InvalidAddress`, a message
    /// without any body or with a bad unsubscribe URL is `Permanent`.
    pub(crate) fn compose(
        &self,
        to: &EmailAddress,
        to_name: Option<&str>,
        email: &EmailMessage,
        unsubscribe_url: Option<&str>,
    ) -> Result<Composed, DeliveryError> {
        let address = to.as_ref().parse().map_err(|e| {
            DeliveryError::new(
                FailureKind::InvalidAddress,
                format!("cannot address `{to}`: {e}"),
            )
        })?;
        let to_name = to_name.map(str::trim).filter(|n| !n.is_empty());
        let message_id = format!("<{}@{}>", uuid::Uuid::new_v4(), self.id_domain);
        let mut builder = Message::builder()
            .from(self.from.clone())
            .to(Mailbox::new(to_name.map(str::to_owned), address))
            .subject(email.subject.clone())
            .message_id(Some(message_id.clone()));
        if let Some(url) = unsubscribe_url {
            let header = ListUnsubscribe::new(url).map_err(DeliveryError::permanent)?;
            builder = builder.header(header).header(ListUnsubscribePost);
        }
        let built = match (&email.text, &email.html) {
            (Some(text), Some(html)) => builder.multipart(MultiPart::alternative_plain_html(
                text.clone(),
                html.clone(),
            )),
            (Some(text), None) => builder.singlepart(SinglePart::plain(text.clone())),
            (None, Some(html)) => builder.singlepart(SinglePart::html(html.clone())),
            (None, None) => {
                return Err(DeliveryError::permanent(
                    "the e-mail has neither a plain-text nor an HTML body",
                ));
            }
        };
        let message =
            built.map_err(|e| DeliveryError::permanent(format!("cannot build the e-mail: {e}")))?;
        Ok(Composed {
            message,
            message_id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn composer() -> Composer {
        Composer::new(&EmailSender::new(
            EmailAddress::parse("news@example.org").unwrap(),
            Some("Example News".into()),
        ))
        .unwrap()
    }

    fn email(text: Option<&str>, html: Option<&str>) -> EmailMessage {
        EmailMessage {
            subject: "Heat starts at 14:00 – Grüße".into(),
            text: text.map(str::to_owned),
            html: html.map(str::to_owned),
        }
    }

    #[test]
    fn both_parts_make_a_multipart_alternative_with_unsubscribe_headers() {
        let to = EmailAddress::parse("ann@example.com").unwrap();
        let composed = composer()
            .compose(
                &to,
                Some("Ann Lee"),
                &email(Some("plain body"), Some("<p>html body</p>")),
                Some("https://b.example.org/unsubscribe/abc"),
            )
            .unwrap();
        let raw = String::from_utf8(composed.message.formatted()).unwrap();
        assert!(raw.contains("multipart/alternative"), "{raw}");
        assert!(
            raw.contains("text/plain") && raw.contains("text/html"),
            "{raw}"
        );
        assert!(
            raw.contains("From: \"Example News\" <news@example.org>"),
            "{raw}"
        );
        assert!(raw.contains("To: \"Ann Lee\" <ann@example.com>"), "{raw}");
        assert!(raw.contains("List-Unsubscribe: <https://b.example.org/unsubscribe/abc>\r\n"));
        assert!(raw.contains("List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"));
        assert!(raw.contains(&format!("Message-ID: {}\r\n", composed.message_id)));
        assert!(composed.message_id.ends_with("@example.org>"));
        assert!(
            raw.contains("Subject: Heat starts at 14:00 =?utf-8?b?"),
            "{raw}"
        );
    }

    #[test]
    fn single_parts_and_missing_bodies() {
        let to = EmailAddress::parse("ann@example.com").unwrap();
        let c = composer();
        let text = c
            .compose(&to, None, &email(Some("only text"), None), None)
            .unwrap();
        let raw = String::from_utf8(text.message.formatted()).unwrap();
        assert!(raw.contains("Content-Type: text/plain") && !raw.contains("multipart"));
        assert!(!raw.contains("List-Unsubscribe"));
        let html = c
            .compose(&to, None, &email(None, Some("<b>x</b>")), None)
            .unwrap();
        assert!(
            String::from_utf8(html.message.formatted())
                .unwrap()
                .contains("text/html")
        );
        let err = c.compose(&to, None, &email(None, None), None).unwrap_err();
        assert_eq!(err.kind, FailureKind::Permanent);
        let err = c
            .compose(
                &to,
                None,
                &email(Some("x"), None),
                Some("javascript:alert(1)"),
            )
            .unwrap_err();
        assert!(err.message.contains("http or https"), "{err}");
        let other = c.compose(&to, None, &email(Some("x"), None), None).unwrap();
        assert_ne!(other.message_id, text.message_id);
    }

    #[test]
    fn headers_parse_back() {
        let h = <ListUnsubscribe as Header>::parse("<https://x.org/u/1>").unwrap();
        assert_eq!(h.url(), "https://x.org/u/1");
        assert!(<ListUnsubscribe as Header>::parse("https://x.org").is_err());
        assert!(<ListUnsubscribePost as Header>::parse("List-Unsubscribe=One-Click").is_ok());
        assert!(<ListUnsubscribePost as Header>::parse("other").is_err());
    }
}
