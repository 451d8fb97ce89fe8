//! The tera renderer: compiles each template part once (one tera instance per part, with the
//! escaping of its target), renders per recipient, and validates.

use std::fmt;

use broadcast_domain::{
    CompiledTemplate, EmailMessage, MediaRef, ParseMode, RecipientContext, RenderEnv, Renderer,
    TelegramMessage, TemplateContent, TemplateError, TemplateErrorKind, TemplatePart, UrlButton,
    VariableInfo, check_button_rows,
};
use tera::{EscapeFn, Tera};

use crate::catalogue::{self, Var, VarSet};
use crate::sample::{SAMPLE_UNSUBSCRIBE_URL, sample_env, sample_recipient};
use crate::telegram::{TELEGRAM_CAPTION_LIMIT, TELEGRAM_TEXT_LIMIT, check_markup, telegram_length};
use crate::{escape, links, source};

/// The four parts, in the order problems are reported.
const PARTS: [TemplatePart; 4] = [
    TemplatePart::TelegramText,
    TemplatePart::EmailSubject,
    TemplatePart::EmailHtml,
    TemplatePart::EmailText,
];

fn error(part: TemplatePart, kind: TemplateErrorKind) -> TemplateError {
    TemplateError { part, kind }
}

/// True for the parts written in HTML: e-mail HTML, and the Telegram text in HTML mode.
fn is_html(part: TemplatePart, mode: ParseMode) -> bool {
    match part {
        TemplatePart::EmailHtml => true,
        TemplatePart::TelegramText => mode == ParseMode::Html,
        _ => false,
    }
}

fn missing(part: TemplatePart, what: &str) -> TemplateError {
    error(part, TemplateErrorKind::Missing(what.to_owned()))
}

/// The escaping applied to values printed by `{{ ... }}` in a part; `None`: none.
fn escaping(part: TemplatePart, mode: ParseMode) -> Option<EscapeFn> {
    match (part, mode) {
        (TemplatePart::TelegramText, ParseMode::Html) => Some(escape::telegram_html),
        (TemplatePart::TelegramText, ParseMode::MarkdownV2) => Some(escape::markdown_v2),
        (TemplatePart::TelegramText, ParseMode::Plain) => None,
        (TemplatePart::EmailHtml, _) => Some(escape::email_html),
        // Labels are plain text; URLs are checked once rendered (`| urlencode` a value).
        (
            TemplatePart::EmailSubject | TemplatePart::EmailText | TemplatePart::TelegramButtons,
            _,
        ) => None,
    }
}

/// One compiled part: its own tera instance holding one template named after the part.
#[derive(Debug)]
struct Part {
    part: TemplatePart,
    tera: Tera,
    /// The catalogue variables it uses: only these are put into its context.
    vars: VarSet,
}

impl Part {
    fn compile(part: TemplatePart, src: &str, mode: ParseMode) -> Result<Part, Vec<TemplateError>> {
        let name = part.as_str();
        let mut tera = Tera::new();
        tera.register_filter(
            "urlencode",
            |value: &str, _: tera::Kwargs, _: &tera::State<'_>| escape::urlencode(value),
        );
        match escaping(part, mode) {
            Some(escape_fn) => {
                tera.set_escape_fn(escape_fn);
                tera.autoescape_on([name]);
            }
            None => tera.autoescape_on(Vec::<&'static str>::new()),
        }
        if let Err(e) = tera.add_raw_template(name, src) {
            return Err(compile_errors(part, src, &e));
        }
        let used = tera
            .get_template_variables(name)
            .map_err(|e| vec![error(part, TemplateErrorKind::Render(e.to_string()))])?;
        let mut vars = VarSet::default();
        let mut unknown = Vec::new();
        for name in used {
            match Var::from_name(name) {
                Some(var) => vars.insert(var),
                None => unknown.push(name.to_owned()),
            }
        }
        if !unknown.is_empty() {
            let known = catalogue::known_names();
            let mut errors: Vec<_> = unknown
                .into_iter()
                .map(|name| {
                    let at = source::find_variable(src, &name);
                    TemplateErrorKind::UnknownVariable {
                        line: at.map(|a| a.0),
                        column: at.map(|a| a.1),
                        name,
                        known: known.clone(),
                    }
                })
                .collect();
            errors.sort_by_key(sort_key);
            return Err(errors.into_iter().map(|k| error(part, k)).collect());
        }
        Ok(Part { part, tera, vars })
    }

    fn render(&self, ctx: &tera::Context) -> Result<String, TemplateError> {
        self.tera
            .render(self.part.as_str(), ctx)
            .map_err(|e| error(self.part, render_error(&e)))
    }

    fn context(
        &self,
        vars: VarSet,
        recipient: &RecipientContext,
        env: &RenderEnv,
        unsubscribe_url: Option<&str>,
    ) -> Result<tera::Context, TemplateError> {
        catalogue::context(vars, recipient, env, unsubscribe_url)
            .map_err(|m| error(self.part, TemplateErrorKind::Render(m)))
    }
}

fn sort_key(kind: &TemplateErrorKind) -> (usize, usize, String) {
    match kind {
        TemplateErrorKind::UnknownVariable {
            name, line, column, ..
        } => (
            line.unwrap_or(usize::MAX),
            column.unwrap_or(usize::MAX),
            name.clone(),
        ),
        _ => (0, 0, String::new()),
    }
}

/// Turns tera's compile error into problems with a line and column.
fn compile_errors(part: TemplatePart, src: &str, e: &tera::Error) -> Vec<TemplateError> {
    let syntax = |line, column, message: &str| {
        error(
            part,
            TemplateErrorKind::Syntax {
                line,
                column,
                message: message.to_owned(),
            },
        )
    };
    match e.kind() {
        tera::ErrorKind::SyntaxError(report) => {
            let span = report.span();
            vec![syntax(
                span.start_line,
                span.start_col + 1,
                report.message(),
            )]
        }
        // Unknown filters, tests, functions and included templates come as rendered reports
        // ("error: <message>\n --> <name>:<line>:<column>\n..."), one per problem.
        tera::ErrorKind::Msg(text) => {
            let found = parse_reports(text);
            if found.is_empty() {
                vec![error(part, TemplateErrorKind::Render(text.clone()))]
            } else {
                found
                    .into_iter()
                    .map(|(line, column, message)| syntax(line, column, &message))
                    .collect()
            }
        }
        tera::ErrorKind::MissingParent { parent, .. } => {
            let (line, column) = src
                .find("extends")
                .map_or((1, 1), |at| source::line_col(src, at));
            vec![syntax(
                line,
                column,
                &format!("a template part cannot extend another template (`{parent}`)"),
            )]
        }
        _ => vec![error(part, TemplateErrorKind::Render(e.to_string()))],
    }
}

/// (line, column, message) of each report in a tera message.
fn parse_reports(text: &str) -> Vec<(usize, usize, String)> {
    let mut out = Vec::new();
    let mut message = None;
    for line in text.lines() {
        if let Some(m) = line.strip_prefix("error: ") {
            message = Some(m.to_owned());
        } else if let Some(loc) = line.trim_start().strip_prefix("--> ") {
            let mut nums = loc.rsplitn(3, ':');
            let column = nums.next().and_then(|c| c.parse().ok());
            let line = nums.next().and_then(|l| l.parse().ok());
            if let (Some(line), Some(column), Some(message)) = (line, column, message.take()) {
                out.push((line, column, message));
            }
        }
    }
    out
}

/// Turns tera's rendering error into a message with the line and column.
fn render_error(e: &tera::Error) -> TemplateErrorKind {
    match e.kind() {
        tera::ErrorKind::RenderingError(report) => {
            let span = report.span();
            let hint = if report.message().starts_with("Field `") {
                " (for a value some users lack, write `| default(value=\"\")` after it)"
            } else {
                ""
            };
            TemplateErrorKind::Render(format!(
                "line {}, column {}: {}{hint}",
                span.start_line,
                span.start_col + 1,
                report.message()
            ))
        }
        _ => TemplateErrorKind::Render(e.to_string()),
    }
}

/// Replaces line breaks (and the spaces around them) with one space: a subject is one line.
fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for piece in s
        .split(['\r', '\n'])
        .map(str::trim)
        .filter(|p| !p.is_empty())
    {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(piece);
    }
    out
}

/// Checks a rendered Telegram text: not empty, not over the limit (the caption limit when it is
/// the caption of a medium).
fn check_telegram_text(text: &str, mode: ParseMode, caption: bool) -> Result<(), TemplateError> {
    let length = telegram_length(text, mode);
    if caption && length > TELEGRAM_CAPTION_LIMIT {
        return Err(error(
            TemplatePart::TelegramText,
            TemplateErrorKind::CaptionTooLong {
                length,
                limit: TELEGRAM_CAPTION_LIMIT,
            },
        ));
    }
    if length > TELEGRAM_TEXT_LIMIT {
        return Err(error(
            TemplatePart::TelegramText,
            TemplateErrorKind::TooLong {
                length,
                limit: TELEGRAM_TEXT_LIMIT,
            },
        ));
    }
    if text.trim().is_empty() || length == 0 {
        return Err(error(
            TemplatePart::TelegramText,
            TemplateErrorKind::Render(
                "the rendered text is empty, and Telegram refuses empty messages".to_owned(),
            ),
        ));
    }
    Ok(())
}

/// One URL button, its label and its URL compiled.
#[derive(Debug)]
struct ButtonParts {
    text: Part,
    url: Part,
}

/// A problem of button `column` of `row` (0-based), `what` being its label or its URL, said so.
fn in_button(row: usize, column: usize, what: &str, problem: &impl fmt::Display) -> TemplateError {
    error(
        TemplatePart::TelegramButtons,
        TemplateErrorKind::Render(format!(
            "row {}, button {}, {what}: {problem}",
            row + 1,
            column + 1
        )),
    )
}

/// A template compiled once (per broadcast) and rendered per recipient.
pub struct TeraTemplate {
    parse_mode: ParseMode,
    link_preview: bool,
    media: Vec<MediaRef>,
    /// Rows of URL buttons.
    buttons: Vec<Vec<ButtonParts>>,
    telegram: Option<Part>,
    subject: Option<Part>,
    html: Option<Part>,
    text: Option<Part>,
}

impl fmt::Debug for TeraTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<_> = self.parts().map(|p| p.part.as_str()).collect();
        f.debug_struct("TeraTemplate")
            .field("parse_mode", &self.parse_mode)
            .field("link_preview", &self.link_preview)
            .field("parts", &parts)
            .finish()
    }
}

impl TeraTemplate {
    fn parts(&self) -> impl Iterator<Item = &Part> {
        [&self.telegram, &self.subject, &self.html, &self.text]
            .into_iter()
            .flatten()
            .chain(
                self.buttons
                    .iter()
                    .flatten()
                    .flat_map(|b| [&b.text, &b.url]),
            )
    }

    /// The buttons rendered with `ctx`, each checked ([`UrlButton::check`]).
    fn render_buttons(&self, ctx: &tera::Context) -> Result<Vec<Vec<UrlButton>>, TemplateError> {
        let mut rows = Vec::with_capacity(self.buttons.len());
        for (r, row) in self.buttons.iter().enumerate() {
            let mut rendered = Vec::with_capacity(row.len());
            for (b, button) in row.iter().enumerate() {
                let text = button
                    .text
                    .render(ctx)
                    .map_err(|e| in_button(r, b, "label", &e.kind))?;
                let url = button
                    .url
                    .render(ctx)
                    .map_err(|e| in_button(r, b, "URL", &e.kind))?;
                let button = UrlButton {
                    text: text.trim().to_owned(),
                    url: url.trim().to_owned(),
                };
                button
                    .check()
                    .map_err(|problem| in_button(r, b, "once rendered", &problem))?;
                rendered.push(button);
            }
            rows.push(rendered);
        }
        Ok(rows)
    }

    fn get(&self, part: TemplatePart) -> Option<&Part> {
        match part {
            TemplatePart::TelegramText => self.telegram.as_ref(),
            TemplatePart::EmailSubject => self.subject.as_ref(),
            TemplatePart::EmailHtml => self.html.as_ref(),
            TemplatePart::EmailText => self.text.as_ref(),
            TemplatePart::TelegramButtons => None,
        }
    }

    fn slot(&mut self, part: TemplatePart) -> &mut Option<Part> {
        match part {
            TemplatePart::TelegramText => &mut self.telegram,
            TemplatePart::EmailSubject => &mut self.subject,
            TemplatePart::EmailHtml => &mut self.html,
            TemplatePart::EmailText => &mut self.text,
            TemplatePart::TelegramButtons => unreachable!("buttons are not one part"),
        }
    }

    /// Compiles every present part; the parts that compiled and the problems of the others.
    fn compile_parts(content: &TemplateContent) -> (TeraTemplate, Vec<TemplateError>) {
        let mut template = TeraTemplate {
            parse_mode: content.parse_mode,
            link_preview: content.link_preview,
            media: content.telegram_media.clone(),
            buttons: Vec::new(),
            telegram: None,
            subject: None,
            html: None,
            text: None,
        };
        let mut problems = Vec::new();
        for part in PARTS {
            let Some(src) = content.part(part) else {
                continue;
            };
            match Part::compile(part, src, content.parse_mode) {
                Ok(compiled) => *template.slot(part) = Some(compiled),
                Err(errors) => problems.extend(errors),
            }
        }
        if let Err(shape) = check_button_rows(&content.telegram_buttons) {
            problems.push(error(
                TemplatePart::TelegramButtons,
                TemplateErrorKind::Render(shape),
            ));
        }
        for (r, row) in content.telegram_buttons.iter().enumerate() {
            let mut compiled = Vec::with_capacity(row.len());
            for (b, button) in row.iter().enumerate() {
                let compile = |what: &str, src: &str| {
                    Part::compile(TemplatePart::TelegramButtons, src, ParseMode::Plain).map_err(
                        |errors| {
                            errors
                                .iter()
                                .map(|e| in_button(r, b, what, &e.kind))
                                .collect::<Vec<_>>()
                        },
                    )
                };
                match (compile("label", &button.text), compile("URL", &button.url)) {
                    (Ok(text), Ok(url)) => compiled.push(ButtonParts { text, url }),
                    (text, url) => {
                        problems.extend(text.err().into_iter().flatten());
                        problems.extend(url.err().into_iter().flatten());
                    }
                }
            }
            template.buttons.push(compiled);
        }
        (template, problems)
    }

    /// Names of the catalogue variables the template uses, in catalogue order.
    pub fn used_variables(&self) -> Vec<&'static str> {
        let all = self
            .parts()
            .fold(VarSet::default(), |acc, p| acc.union(p.vars));
        all.iter().map(Var::name).collect()
    }

    /// The e-mail subject for one recipient, on one line, values not escaped.
    fn render_subject(&self, subject: &Part, ctx: &tera::Context) -> Result<String, TemplateError> {
        subject.render(ctx).map(|s| one_line(&s))
    }
}

impl CompiledTemplate for TeraTemplate {
    fn render_telegram(
        &self,
        recipient: &RecipientContext,
        env: &RenderEnv,
        unsubscribe_url: Option<&str>,
    ) -> Result<TelegramMessage, TemplateError> {
        let part = self.telegram.as_ref().ok_or_else(|| {
            missing(
                TemplatePart::TelegramText,
                "the template has no Telegram text",
            )
        })?;
        let vars = self
            .buttons
            .iter()
            .flatten()
            .fold(part.vars, |acc, b| acc.union(b.text.vars).union(b.url.vars));
        let ctx = part.context(vars, recipient, env, unsubscribe_url)?;
        let text = part.render(&ctx)?;
        check_telegram_text(&text, self.parse_mode, !self.media.is_empty())?;
        Ok(TelegramMessage {
            text,
            parse_mode: self.parse_mode,
            link_preview: self.link_preview,
            media: self.media.clone(),
            buttons: self.render_buttons(&ctx)?,
        })
    }

    fn render_email(
        &self,
        recipient: &RecipientContext,
        env: &RenderEnv,
        unsubscribe_url: Option<&str>,
    ) -> Result<EmailMessage, TemplateError> {
        let subject = self.subject.as_ref().ok_or_else(|| {
            missing(
                TemplatePart::EmailSubject,
                "the template has no e-mail subject",
            )
        })?;
        if self.html.is_none() && self.text.is_none() {
            return Err(missing(
                TemplatePart::EmailText,
                "the template has no e-mail body (neither HTML nor plain text)",
            ));
        }
        let vars = [&self.html, &self.text]
            .into_iter()
            .flatten()
            .fold(subject.vars, |acc, p| acc.union(p.vars));
        let ctx = subject.context(vars, recipient, env, unsubscribe_url)?;
        Ok(EmailMessage {
            subject: self.render_subject(subject, &ctx)?,
            html: self.html.as_ref().map(|p| p.render(&ctx)).transpose()?,
            text: self.text.as_ref().map(|p| p.render(&ctx)).transpose()?,
        })
    }
}

/// The [`Renderer`] port implemented with tera 2.
///
/// ```
/// use broadcast_domain::{CompiledTemplate, ParseMode, Renderer, TemplateContent};
/// use broadcast_render::{TeraRenderer, sample_env, sample_recipient};
///
/// let content = TemplateContent {
///     telegram_text: Some("Hi <b>{{ first_name }}</b>, see you at {{ competition_name }}!".into()),
///     parse_mode: ParseMode::Html,
///     link_preview: false,
///     telegram_media: Vec::new(),
///     telegram_buttons: Vec::new(),
///     email_subject: None,
///     email_html: None,
///     email_text: None,
/// };
/// let renderer = TeraRenderer::new();
/// assert!(renderer.validate(&content).is_empty());
/// let template = renderer.compile(&content).unwrap();
/// let message = template.render_telegram(&sample_recipient(), &sample_env(), None).unwrap();
/// assert_eq!(message.text, "Hi <b>Anna</b>, see you at Spring Open 2026!");
/// ```
#[derive(Debug, Clone, Default)]
pub struct TeraRenderer {
    _private: (),
}

impl TeraRenderer {
    /// A renderer with the standard variable catalogue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Compiles every present part, returning the concrete template (the [`Renderer::compile`]
    /// of this type boxes it). Fails with the first syntax error or unknown variable.
    pub fn compile_template(
        &self,
        content: &TemplateContent,
    ) -> Result<TeraTemplate, TemplateError> {
        let (template, problems) = TeraTemplate::compile_parts(content);
        match problems.into_iter().next() {
            Some(first) => Err(first),
            None => Ok(template),
        }
    }

    /// Every problem of the template when rendered for `recipient` in `env`: what
    /// [`Renderer::validate`] reports for the sample recipient, for a real one (say, the first
    /// recipients of a broadcast before launch).
    pub fn validate_with(
        &self,
        content: &TemplateContent,
        recipient: &RecipientContext,
        env: &RenderEnv,
    ) -> Vec<TemplateError> {
        let mut problems = Vec::new();
        let has = |part| content.part(part).is_some();
        let email_started = has(TemplatePart::EmailSubject)
            || has(TemplatePart::EmailHtml)
            || has(TemplatePart::EmailText);
        if !has(TemplatePart::TelegramText) && !email_started {
            problems.push(missing(
                TemplatePart::TelegramText,
                "the template is empty: write a Telegram text, an e-mail subject and body, or both",
            ));
        } else if email_started && !has(TemplatePart::EmailSubject) {
            problems.push(missing(
                TemplatePart::EmailSubject,
                "the template has an e-mail body but no subject",
            ));
        } else if email_started && !has(TemplatePart::EmailHtml) && !has(TemplatePart::EmailText) {
            problems.push(missing(
                TemplatePart::EmailText,
                "the template has an e-mail subject but no body (neither HTML nor plain text)",
            ));
        }

        let (template, compile_problems) = TeraTemplate::compile_parts(content);
        for part in PARTS {
            problems.extend(compile_problems.iter().filter(|p| p.part == part).cloned());
            let html = is_html(part, content.parse_mode);
            let mut markup = Vec::new();
            if let Some(src) = content.part(part) {
                if part == TemplatePart::TelegramText {
                    markup.extend(check_markup(src, content.parse_mode));
                }
                if html {
                    markup.extend(links::check_links(src));
                }
            }
            let source_has_problems = !markup.is_empty();
            problems.extend(markup.into_iter().map(|p| {
                error(
                    part,
                    TemplateErrorKind::Syntax {
                        line: p.line,
                        column: p.column,
                        message: p.message,
                    },
                )
            }));
            let Some(compiled) = template.get(part) else {
                continue;
            };
            let rendered = compiled
                .context(compiled.vars, recipient, env, Some(SAMPLE_UNSUBSCRIBE_URL))
                .and_then(|ctx| compiled.render(&ctx));
            // A link whose target comes from a value is checked once rendered (the source's
            // own links were checked above).
            if let Ok(text) = &rendered
                && html
                && !source_has_problems
            {
                problems.extend(links::check_links(text).into_iter().map(|p| {
                    error(
                        part,
                        TemplateErrorKind::Render(format!(
                            "line {}, column {} of the text rendered for the recipient: {}",
                            p.line, p.column, p.message
                        )),
                    )
                }));
            }
            let checked = match rendered {
                Ok(text) if part == TemplatePart::TelegramText => check_telegram_text(
                    &text,
                    content.parse_mode,
                    !content.telegram_media.is_empty(),
                ),
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            };
            problems.extend(checked.err());
        }
        problems.extend(
            compile_problems
                .iter()
                .filter(|p| p.part == TemplatePart::TelegramButtons)
                .cloned(),
        );
        let buttons_compiled = !compile_problems
            .iter()
            .any(|p| p.part == TemplatePart::TelegramButtons);
        if buttons_compiled && !template.buttons.is_empty() {
            let vars = template
                .parts()
                .fold(VarSet::default(), |acc, p| acc.union(p.vars));
            let sample = template.buttons.iter().flatten().next().map(|b| &b.text);
            if let Some(part) = sample {
                let rendered = part
                    .context(vars, recipient, env, Some(SAMPLE_UNSUBSCRIBE_URL))
                    .and_then(|ctx| template.render_buttons(&ctx));
                problems.extend(rendered.err());
            }
        }
        problems
    }
}

impl Renderer for TeraRenderer {
    fn compile(
        &self,
        content: &TemplateContent,
    ) -> Result<Box<dyn CompiledTemplate>, TemplateError> {
        Ok(Box::new(self.compile_template(content)?))
    }

    /// Every problem, each naming its part: missing parts, syntax errors, unknown variables,
    /// Telegram markup that Telegram would refuse, and what goes wrong when rendering for the
    /// sample recipient, such as a Telegram text over 4096 characters.
    ///
    /// Which users have which attribute keys is unknown here, so every key the template names
    /// is given to the sample: first as the text `sample`, and when that fails to render, as the
    /// number 1 (for arithmetic); the attempt with fewer problems is reported.
    fn validate(&self, content: &TemplateContent) -> Vec<TemplateError> {
        let keys: Vec<String> = PARTS
            .into_iter()
            .filter_map(|part| content.part(part))
            .flat_map(source::attribute_keys)
            .collect();
        let with_attributes = |value: serde_json::Value| {
            let mut recipient = sample_recipient();
            for key in &keys {
                recipient
                    .user
                    .attributes
                    .entry(key.clone())
                    .or_insert_with(|| value.clone());
            }
            self.validate_with(content, &recipient, &sample_env())
        };
        let as_text = with_attributes("sample".into());
        let render_failed = as_text
            .iter()
            .any(|p| matches!(p.kind, TemplateErrorKind::Render(_)));
        if keys.is_empty() || !render_failed {
            return as_text;
        }
        let as_number = with_attributes(1.into());
        if as_number.len() < as_text.len() {
            as_number
        } else {
            as_text
        }
    }

    fn variables(&self) -> Vec<VariableInfo> {
        catalogue::variable_infos()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subjects_become_one_line() {
        assert_eq!(one_line("  Hello\r\n  Anna \n\n!"), "Hello Anna !");
        assert_eq!(one_line("plain"), "plain");
    }

    #[test]
    fn tera_reports_are_parsed_into_locations() {
        let text = "error: Unknown filter `uper`\n --> telegram_text:1:17\n  |\n1 | {{ x | uper }}\n  |                 ^^^^\n\nerror: Unknown function `f`\n  --> telegram_text:12:4\n";
        assert_eq!(
            parse_reports(text),
            [
                (1, 17, "Unknown filter `uper`".to_owned()),
                (12, 4, "Unknown function `f`".to_owned())
            ]
        );
    }
}
