//! `render`: the criterion bench of `broadcast-render`, read from its estimates.

use std::process::{Command, Stdio};

use serde_json::Value;

use crate::report::Row;
use crate::setup::Env;
use crate::{Plan, Res, err};

pub(crate) fn scenario_render(env: &Env, _plan: &Plan) -> Res<Vec<Row>> {
    let status = Command::new("cargo")
        .args(["bench", "-p", "broadcast-render", "--bench", "render", "--"])
        .args(["--warm-up-time", "1", "--measurement-time", "3"])
        .current_dir(&env.root)
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run cargo bench: {e}"))?;
    if !status.success() {
        return Err("cargo bench -p broadcast-render failed".into());
    }
    let mut rows = Vec::new();
    for (part, what) in [
        ("telegram", "Telegram text"),
        ("email", "e-mail: subject + HTML + text"),
        ("both", "Telegram + e-mail"),
    ] {
        // Criterion writes under cargo's target directory (`CARGO_TARGET_DIR` when set), the
        // parent of this binary's `release/`.
        let path = env
            .exe_dir
            .join(format!("../criterion/render/{part}/new/estimates.json"));
        let text =
            std::fs::read_to_string(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let v: Value = serde_json::from_str(&text).map_err(err)?;
        let ns = v["median"]["point_estimate"].as_f64().unwrap_or(f64::NAN);
        let rate = 1e9 / ns;
        let mut row = Row::new(
            format!("render demo template, {what} (criterion, 1 thread)"),
            1,
        );
        row.rate = Some(rate);
        row.unit = "renders/s/core";
        row.target = "≥ 200,000 renders/s/core".into();
        row.met = Some(rate >= 200_000.0);
        row.note = format!("median {:.2} µs per render", ns / 1000.0);
        rows.push(row);
    }
    Ok(rows)
}
