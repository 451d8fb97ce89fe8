//! Integration tests of `broadcast-render` through the domain's `Renderer` port: what operators
//! and the orchestrator see.

mod buttons;
mod escaping;
mod limits;
mod rendering;
mod validation;

use broadcast_domain::{
    Attributes, CompiledTemplate, ParseMode, RecipientContext, RenderEnv, Renderer,
    TemplateContent, TemplateError, User,
};
use broadcast_render::{TeraRenderer, sample_env, sample_recipient};

/// A template with only a Telegram text.
fn telegram(text: &str, mode: ParseMode) -> TemplateContent {
    TemplateContent {
        telegram_text: Some(text.to_owned()),
        parse_mode: mode,
        link_preview: false,
        telegram_media: Vec::new(),
        telegram_buttons: Vec::new(),
        email_subject: None,
        email_html: None,
        email_text: None,
    }
}

/// A template with only e-mail parts.
fn email(subject: &str, html: Option<&str>, text: Option<&str>) -> TemplateContent {
    TemplateContent {
        telegram_text: None,
        parse_mode: ParseMode::Html,
        link_preview: false,
        telegram_media: Vec::new(),
        telegram_buttons: Vec::new(),
        email_subject: Some(subject.to_owned()),
        email_html: html.map(str::to_owned),
        email_text: text.map(str::to_owned),
    }
}

fn compile(content: &TemplateContent) -> Box<dyn CompiledTemplate> {
    TeraRenderer::new()
        .compile(content)
        .unwrap_or_else(|e| panic!("template should compile: {e}"))
}

/// The sample recipient with another first name.
fn named(first_name: &str) -> RecipientContext {
    let mut r = sample_recipient();
    r.user.first_name = first_name.to_owned();
    r
}

/// A recipient without any optional value: no registration, no competition, no contact data.
fn bare_recipient() -> RecipientContext {
    let full = sample_recipient();
    RecipientContext {
        user: User {
            telegram_chat_id: None,
            email: None,
            first_name: "Bo".to_owned(),
            last_name: String::new(),
            username: None,
            language: None,
            country: None,
            city: None,
            attributes: Attributes::new(),
            ..full.user
        },
        competition: None,
        registration: None,
    }
}

fn env() -> RenderEnv {
    sample_env()
}

fn render_telegram(
    content: &TemplateContent,
    r: &RecipientContext,
) -> Result<String, TemplateError> {
    compile(content)
        .render_telegram(r, &env(), Some("https://example.org/u/1"))
        .map(|m| m.text)
}

/// Problems as their display lines.
fn problems(content: &TemplateContent) -> String {
    TeraRenderer::new()
        .validate(content)
        .iter()
        .map(|p| format!("{p}\n"))
        .collect()
}
