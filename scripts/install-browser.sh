#!/usr/bin/env bash
# Installs headless Chromium from the distribution's packages (Debian: `chromium`) for the admin
# panel's browser tests (`cargo test -p broadcast-admin-web`, run with REQUIRE_BROWSER=1 in CI).
#
# Idempotent: does nothing when /usr/bin/chromium already runs. Needs root (or sudo) and apt-get;
# nothing is downloaded from outside the distribution's mirrors. Also installs the fonts that make
# screenshots readable.
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ] && "$CHROMIUM" --version >/dev/null 2>&1; then
    echo "install-browser: $("$CHROMIUM" --version) is already installed"
    exit 0
fi

if ! command -v apt-get >/dev/null; then
    echo "install-browser: apt-get not found; install Chromium at $CHROMIUM with your package manager" >&2
    exit 1
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null; then
        SUDO="sudo"
    else
        echo "install-browser: run as root (or install sudo) to install packages" >&2
        exit 1
    fi
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null

if ! "$CHROMIUM" --version >/dev/null 2>&1; then
    echo "install-browser: $CHROMIUM does not run after installation" >&2
    exit 1
fi
echo "install-browser: installed $("$CHROMIUM" --version)"
