#!/usr/bin/env bash
# Installs Debian's headless-capable Chromium for the `browser` tests (tests/test_report_browser.py).
# Idempotent: does nothing when a chromium binary is already on PATH. Needs root (CI runs as root)
# or passwordless sudo; otherwise it says what to run and exits non-zero.
set -euo pipefail

for candidate in chromium chromium-browser; do
  if command -v "$candidate" >/dev/null 2>&1; then
    echo "setup_browser: $(command -v "$candidate") is already installed"
    exit 0
  fi
done

if [ "$(id -u)" -eq 0 ]; then
  SUDO=""
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  SUDO="sudo -n"
else
  echo "setup_browser: chromium is missing and this user cannot install packages;" >&2
  echo "  run as root: apt-get update && apt-get install -y chromium" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update
$SUDO apt-get install -y --no-install-recommends chromium fonts-dejavu-core
echo "setup_browser: installed $(command -v chromium)"
