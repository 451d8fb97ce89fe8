//! Renders a small template many times and prints the rate, per part:
//! `cargo run --release -p broadcast-render --example render_bench [renders]`.

use std::time::Instant;

use broadcast_domain::{ParseMode, Renderer, TemplateContent};
use broadcast_render::{TeraRenderer, sample_env, sample_recipient};

fn main() {
    let n: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(500_000);
    let content = TemplateContent {
        telegram_text: Some(
            "Hi <b>{{ first_name }}</b>! {{ competition_name }} starts on {{ competition_date }} \
             in {{ city }}. You are registered as {{ role }}."
                .to_owned(),
        ),
        parse_mode: ParseMode::Html,
        link_preview: false,
        telegram_media: Vec::new(),
        telegram_buttons: Vec::new(),
        email_subject: Some("{{ competition_name }}: see you, {{ first_name }}".to_owned()),
        email_html: Some("<p>Dear {{ full_name }},</p><p>{{ competition_date }}</p>".to_owned()),
        email_text: Some("Dear {{ full_name }},\n{{ competition_date }}".to_owned()),
    };
    let template = TeraRenderer::new()
        .compile(&content)
        .expect("the bench template compiles");
    let (recipient, env) = (sample_recipient(), sample_env());

    let start = Instant::now();
    let mut bytes = 0;
    for _ in 0..n {
        let m = template
            .render_telegram(&recipient, &env, None)
            .expect("renders");
        bytes += m.text.len();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "telegram: {n} renders in {secs:.3}s = {:.0} renders/s ({bytes} bytes)",
        f64::from(n) / secs
    );

    let start = Instant::now();
    for _ in 0..n {
        let m = template
            .render_email(&recipient, &env, Some("https://example.org/u/1"))
            .expect("renders");
        bytes += m.subject.len();
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "email (subject + html + text): {n} renders in {secs:.3}s = {:.0} renders/s ({bytes} \
         bytes in all)",
        f64::from(n) / secs
    );
}
