# Recipes for newcomers. `just --list` shows them. Install just with `cargo install just`.

# Send a demo broadcast end to end (SQLite + outbox files under data/).
demo *ARGS:
    cargo run --release -p broadcast-cli -- demo {{ARGS}}

# Run every test (PostgreSQL tests skip loudly when no server answers on 127.0.0.1:5432).
test:
    cargo test --workspace

# Formatting and lints, as CI checks them.
lint:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# Apply migrations (DATABASE_URL or sqlite://data/broadcast.db), then show their status.
migrate *ARGS:
    cargo run -p broadcast-migrate -- up {{ARGS}}
    cargo run -p broadcast-migrate -- status {{ARGS}}

# The admin panel on ADMIN_BIND (needs ADMIN_SECRET_KEY; create a login with
# `cargo run -p broadcast-cli -- admin create-user NAME`).
web:
    cargo run --release -p broadcast-admin-web

# Headless Chromium for the browser tests (Debian packages).
browser:
    bash scripts/install-browser.sh

# Exactly what CI runs.
ci:
    bash .ci/run

# Benchmarks of docs/performance.md on this machine, one table at the end: `just bench` (every
# scenario at full size, about 12 minutes after the build) or `just bench quick` (smaller N, about 3 minutes).
# Extra arguments go to the driver, e.g. `just bench quick --only engine,email`. Binaries and
# the JSON go to `$CARGO_TARGET_DIR` when it is set, `target/` otherwise.
bench MODE="full" *ARGS:
    cargo build --release -p broadcast-cli -p broadcast-testkit -p broadcast-bench --bins
    -cargo build --release -p broadcast-admin-web
    cargo bench -p broadcast-render --bench render --no-run
    "${CARGO_TARGET_DIR:-target}/release/bench" {{MODE}} --json "${CARGO_TARGET_DIR:-target}/bench-{{MODE}}.json" {{ARGS}}
