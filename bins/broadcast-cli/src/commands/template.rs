//! `template`: create, update, list, show, validate, preview and delete message templates, and
//! the JSON template files they can be read from.

use super::*;
use broadcast_domain::{MediaRef, MessageFormat, UrlButton};

/// The JSON form of a template file (see fixtures/README.md).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TemplateFile {
    pub(crate) name: Option<String>,
    #[serde(default)]
    pub(crate) description: Option<String>,
    pub(crate) telegram_text: Option<String>,
    pub(crate) parse_mode: Option<String>,
    pub(crate) link_preview: Option<bool>,
    /// Names of media in the library; `[]` takes them away.
    pub(crate) telegram_media: Option<Vec<String>>,
    /// Rows of `{"text", "url"}` buttons; `[]` takes them away.
    pub(crate) telegram_buttons: Option<Vec<Vec<UrlButton>>>,
    pub(crate) email_subject: Option<String>,
    pub(crate) email_html: Option<String>,
    pub(crate) email_text: Option<String>,
}

impl TemplateFile {
    pub(crate) fn parse(text: &str, origin: &str) -> CliResult<Self> {
        serde_json::from_str(text).map_err(|e| invalid(format!("{origin}: {e}")))
    }

    pub(crate) fn into_new(self, base: Option<&MessageTemplate>) -> CliResult<NewTemplate> {
        let name = match (self.name, base) {
            (Some(n), _) => TemplateName::parse(&n).map_err(|e| invalid(e.0))?,
            (None, Some(b)) => b.name.clone(),
            (None, None) => return Err(invalid("a template needs a name (--name)")),
        };
        let old = base.map(|b| b.content.clone());
        let keep = |new: Option<String>, old: Option<String>| match new {
            Some(s) if s.is_empty() => None,
            Some(s) => Some(s),
            None => old,
        };
        let parse_mode = match self.parse_mode {
            Some(p) => p.parse::<ParseMode>().map_err(|e| invalid(e.0))?,
            None => old.as_ref().map_or(ParseMode::Html, |o| o.parse_mode),
        };
        let content = TemplateContent {
            telegram_text: keep(
                self.telegram_text,
                old.as_ref().and_then(|o| o.telegram_text.clone()),
            ),
            parse_mode,
            link_preview: self
                .link_preview
                .unwrap_or_else(|| old.as_ref().is_some_and(|o| o.link_preview)),
            telegram_media: match self.telegram_media {
                Some(names) => names.into_iter().map(MediaRef::named).collect(),
                None => old
                    .as_ref()
                    .map(|o| o.telegram_media.clone())
                    .unwrap_or_default(),
            },
            telegram_buttons: match self.telegram_buttons {
                Some(rows) => rows,
                None => old
                    .as_ref()
                    .map(|o| o.telegram_buttons.clone())
                    .unwrap_or_default(),
            },
            email_subject: keep(
                self.email_subject,
                old.as_ref().and_then(|o| o.email_subject.clone()),
            ),
            email_html: keep(
                self.email_html,
                old.as_ref().and_then(|o| o.email_html.clone()),
            ),
            email_text: keep(
                self.email_text,
                old.as_ref().and_then(|o| o.email_text.clone()),
            ),
        };
        if sends_nothing(&content) {
            return Err(invalid(
                "a template needs at least a Telegram text or an e-mail subject and body",
            ));
        }
        Ok(NewTemplate {
            name,
            description: self
                .description
                .or_else(|| base.map(|b| b.description.clone()))
                .unwrap_or_default(),
            content,
        })
    }
}

pub(crate) fn sends_nothing(c: &TemplateContent) -> bool {
    !c.supports(MessageFormat::Chat) && !c.supports(MessageFormat::Email)
}

pub(crate) fn read_file(path: &Path) -> CliResult<String> {
    std::fs::read_to_string(path)
        .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))
}

pub(crate) fn template_file(args: TemplateArgs) -> CliResult<TemplateFile> {
    let mut file = match &args.from_json {
        Some(p) => TemplateFile::parse(&read_file(p)?, &p.display().to_string())?,
        None => TemplateFile::default(),
    };
    let pick = |inline: Option<String>, path: Option<&Path>| -> CliResult<Option<String>> {
        match (inline, path) {
            (Some(s), _) => Ok(Some(s)),
            (None, Some(p)) => read_file(p).map(Some),
            (None, None) => Ok(None),
        }
    };
    if args.name.is_some() {
        file.name = args.name;
    }
    if args.description.is_some() {
        file.description = args.description;
    }
    if let Some(t) = pick(args.telegram_text, args.telegram_file.as_deref())? {
        file.telegram_text = Some(t);
    }
    if args.parse_mode.is_some() {
        file.parse_mode = args.parse_mode;
    }
    if args.link_preview.is_some() {
        file.link_preview = args.link_preview;
    }
    if let Some(name) = args.medium {
        let name = name.trim().to_owned();
        file.telegram_media = Some(if name.is_empty() { vec![] } else { vec![name] });
    }
    if args.subject.is_some() {
        file.email_subject = args.subject;
    }
    if let Some(h) = pick(args.html, args.html_file.as_deref())? {
        file.email_html = Some(h);
    }
    if let Some(t) = pick(args.text, args.text_file.as_deref())? {
        file.email_text = Some(t);
    }
    Ok(file)
}

/// Finds a template by id or by name.
pub(crate) async fn find_template(app: &App, key: &str) -> CliResult<MessageTemplate> {
    if let Ok(id) = key.parse::<i64>() {
        return Ok(app.store.get_template(id).await?);
    }
    let name = TemplateName::parse(key).map_err(|e| invalid(e.0))?;
    app.store.find_template(&name).await?.ok_or_else(|| {
        invalid(format!(
            "template `{key}` not found; `template list` shows them"
        ))
    })
}

pub(crate) fn validate(app: &App, content: &TemplateContent) -> CliResult<()> {
    let errors = app.orchestrator.ports().renderer.validate(content);
    if errors.is_empty() {
        return Ok(());
    }
    let all: Vec<String> = errors.iter().map(ToString::to_string).collect();
    Err(invalid(format!(
        "the template is not valid: {}",
        all.join("; ")
    )))
}

pub(crate) async fn template(app: &App, cmd: TemplateCmd, j: bool) -> CliResult<()> {
    match cmd {
        TemplateCmd::Create(args) => {
            let new = template_file(args)?.into_new(None)?;
            validate(app, &new.content)?;
            let t = app.orchestrator.create_template(&app.actor, new).await?;
            print_template(&t, j)?;
        }
        TemplateCmd::Update { template, args } => {
            let base = find_template(app, &template).await?;
            let new = template_file(args)?.into_new(Some(&base))?;
            validate(app, &new.content)?;
            let t = app
                .orchestrator
                .update_template(&app.actor, base.id, new)
                .await?;
            print_template(&t, j)?;
        }
        TemplateCmd::List => {
            let list = app.store.list_templates().await?;
            if j {
                json(&documents::all::<_, TemplateDoc>(&list))?;
            } else {
                let mut t = Table::new(&["id", "name", "version", "channels", "description"]);
                for tpl in &list {
                    t.row(vec![
                        tpl.id.to_string(),
                        tpl.name.to_string(),
                        tpl.version.to_string(),
                        channels_of(&tpl.content),
                        tpl.description.clone(),
                    ]);
                }
                t.print();
            }
        }
        TemplateCmd::Show { template } => {
            let t = find_template(app, &template).await?;
            print_template(&t, j)?;
        }
        TemplateCmd::Validate { template, file } => {
            let content = match (template, file) {
                (Some(key), _) => find_template(app, &key).await?.content,
                (None, Some(path)) => {
                    let f = TemplateFile::parse(&read_file(&path)?, &path.display().to_string())?;
                    f.into_new(None)?.content
                }
                (None, None) => return Err(invalid("give a template id or name, or --file")),
            };
            validate(app, &content)?;
            if j {
                json(&serde_json::json!({ "valid": true }))?;
            } else {
                println!("template is valid ({})", channels_of(&content));
            }
        }
        TemplateCmd::Preview {
            template,
            filter,
            limit,
        } => {
            let t = find_template(app, &template).await?;
            let filter = build_filter(app, &filter).await?;
            let previews = app
                .orchestrator
                .preview_content(
                    &t.content,
                    &format!("Preview of {}", t.name),
                    &filter,
                    limit,
                )
                .await?;
            print_previews(&previews, j)?;
        }
        TemplateCmd::Delete { template } => {
            let t = find_template(app, &template).await?;
            app.orchestrator.delete_template(&app.actor, t.id).await?;
            if j {
                json(&serde_json::json!({ "deleted": t.id }))?;
            } else {
                println!("deleted template {} ({})", t.id, t.name);
            }
        }
    }
    Ok(())
}

pub(crate) fn channels_of(c: &TemplateContent) -> String {
    let mut v = Vec::new();
    if c.supports(MessageFormat::Chat) {
        v.push(format!("telegram ({})", c.parse_mode));
    }
    if c.supports(MessageFormat::Email) {
        v.push("email".to_owned());
    }
    v.join(", ")
}

pub(crate) fn print_template(t: &MessageTemplate, j: bool) -> CliResult<()> {
    if j {
        return Ok(json(&TemplateDoc::from(t))?);
    }
    println!("template {} `{}` (version {})", t.id, t.name, t.version);
    if !t.description.is_empty() {
        println!("description: {}", t.description);
    }
    let c = &t.content;
    println!("parse mode:  {}", c.parse_mode);
    for m in &c.telegram_media {
        println!(
            "medium:      {} ({}, {}, {}); the Telegram text is its caption",
            m.name,
            m.kind,
            m.content_type,
            broadcast_domain::human_size(m.size)
        );
    }
    for (r, row) in c.telegram_buttons.iter().enumerate() {
        let row: Vec<String> = row
            .iter()
            .map(|b| format!("[{}]({})", b.text, b.url))
            .collect();
        println!("buttons {}:   {}", r + 1, row.join(" "));
    }
    for (label, part) in [
        ("telegram text", &c.telegram_text),
        ("e-mail subject", &c.email_subject),
        ("e-mail html", &c.email_html),
        ("e-mail text", &c.email_text),
    ] {
        if let Some(p) = part {
            println!("--- {label} ---\n{p}");
        }
    }
    Ok(())
}

pub(crate) fn print_previews(previews: &[Preview], j: bool) -> CliResult<()> {
    if j {
        // `{"error": "..."}` instead of a message, so scripts need no Rust `Result` shape.
        fn part<T: Serialize>(p: &Option<Result<T, String>>) -> serde_json::Value {
            match p {
                None => serde_json::Value::Null,
                Some(Ok(m)) => serde_json::to_value(m).unwrap_or_default(),
                Some(Err(e)) => serde_json::json!({ "error": e }),
            }
        }
        let doc: Vec<_> = previews
            .iter()
            .map(|p| {
                serde_json::json!({
                    "user_id": p.user_id,
                    "full_name": p.full_name,
                    "telegram": part(&p.telegram),
                    "email": part(&p.email),
                })
            })
            .collect();
        return Ok(json(&doc)?);
    }
    if previews.is_empty() {
        println!("the audience is empty: nothing to preview");
    }
    for p in previews {
        println!("=== user {} ({}) ===", p.user_id, p.full_name);
        match &p.telegram {
            Some(Ok(m)) => println!("--- telegram ({}) ---\n{}", m.parse_mode, m.text),
            Some(Err(e)) => println!("--- telegram: ERROR {e}"),
            None => {}
        }
        match &p.email {
            Some(Ok(m)) => {
                println!("--- e-mail subject ---\n{}", m.subject);
                if let Some(t) = &m.text {
                    println!("--- e-mail text ---\n{t}");
                }
                if let Some(h) = &m.html {
                    println!("--- e-mail html ---\n{h}");
                }
            }
            Some(Err(e)) => println!("--- e-mail: ERROR {e}"),
            None => {}
        }
    }
    Ok(())
}
