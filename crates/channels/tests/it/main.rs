//! Integration tests of the channels over real sockets: the fake Telegram Bot API server and
//! the SMTP sink from `broadcast-testkit`, and the outbox files on disk.

mod email;
mod media;
mod outbox;
mod telegram;
mod unsubscribe;

use broadcast_domain::{
    EmailAddress, EmailMessage, MessageBody, OutgoingMessage, ParseMode, TelegramChatId,
    TelegramMessage,
};

/// A Telegram message as the orchestrator would hand it over.
pub(crate) fn telegram(chat: i64, text: &str, parse_mode: ParseMode) -> OutgoingMessage {
    OutgoingMessage {
        broadcast_id: Some(7),
        recipient_id: Some(chat.abs()),
        user_id: Some(chat.abs()),
        body: MessageBody::Chat {
            to: TelegramChatId::new(chat).unwrap().to_string(),
            message: TelegramMessage {
                text: text.to_owned(),
                parse_mode,
                link_preview: false,
                media: Vec::new(),
                buttons: Vec::new(),
            },
        },
    }
}

/// An e-mail as the orchestrator would hand it over.
pub(crate) fn email(
    to: &str,
    text: Option<&str>,
    html: Option<&str>,
    unsubscribe_url: Option<&str>,
) -> OutgoingMessage {
    OutgoingMessage {
        broadcast_id: Some(7),
        recipient_id: Some(1),
        user_id: Some(1),
        body: MessageBody::Email {
            to: EmailAddress::parse(to).unwrap(),
            to_name: Some("Ann Lee".to_owned()),
            message: EmailMessage {
                subject: "Registration closes tomorrow".to_owned(),
                html: html.map(str::to_owned),
                text: text.map(str::to_owned),
            },
            unsubscribe_url: unsubscribe_url.map(str::to_owned),
        },
    }
}

/// A port on 127.0.0.1 where nothing listens.
pub(crate) async fn closed_port() -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().port()
}
