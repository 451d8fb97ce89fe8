//! Renders of the demo template (`fixtures/templates/registration-reminder.json`), one per
//! iteration: the Telegram text, the e-mail (subject, HTML and text parts), and both, as the
//! engine does for a recipient of a `both` broadcast.
//!
//! `cargo bench -p broadcast-render --bench render`; `just bench` reads the medians from
//! `target/criterion/render/*/new/estimates.json` and reports renders/s per core (the bench runs
//! on one thread).

use std::hint::black_box;

use broadcast_domain::{ParseMode, Renderer, TemplateContent};
use broadcast_render::{SAMPLE_UNSUBSCRIBE_URL, TeraRenderer, sample_env, sample_recipient};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const DEMO: &str = include_str!("../../../fixtures/templates/registration-reminder.json");

/// The demo template's four parts.
fn demo() -> TemplateContent {
    let json: serde_json::Value = serde_json::from_str(DEMO).expect("the demo template is JSON");
    let part = |name: &str| json[name].as_str().map(str::to_owned);
    TemplateContent {
        telegram_text: part("telegram_text"),
        parse_mode: ParseMode::Html,
        link_preview: false,
        telegram_media: Vec::new(),
        telegram_buttons: Vec::new(),
        email_subject: part("email_subject"),
        email_html: part("email_html"),
        email_text: part("email_text"),
    }
}

fn render(c: &mut Criterion) {
    let template = TeraRenderer::new()
        .compile(&demo())
        .expect("the demo template compiles");
    let (recipient, env) = (sample_recipient(), sample_env());
    let url = Some(SAMPLE_UNSUBSCRIBE_URL);

    let mut group = c.benchmark_group("render");
    group.throughput(Throughput::Elements(1));
    group.bench_function("telegram", |b| {
        b.iter(|| {
            template
                .render_telegram(black_box(&recipient), &env, url)
                .expect("renders")
        });
    });
    group.bench_function("email", |b| {
        b.iter(|| {
            template
                .render_email(black_box(&recipient), &env, url)
                .expect("renders")
        });
    });
    group.bench_function("both", |b| {
        b.iter(|| {
            let telegram = template
                .render_telegram(black_box(&recipient), &env, url)
                .expect("renders");
            let email = template
                .render_email(black_box(&recipient), &env, url)
                .expect("renders");
            (telegram, email)
        });
    });
    group.finish();
}

criterion_group!(benches, render);
criterion_main!(benches);
