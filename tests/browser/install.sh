#!/usr/bin/env bash
# Install Debian's Chromium for the report's headless-browser test (tests/integration/test_report.py).
# Idempotent and quick when already present: nothing is fetched if the packages are installed.
set -euo pipefail
PACKAGES="chromium fonts-dejavu-core fonts-noto-color-emoji"
# shellcheck disable=SC2086
if dpkg -s $PACKAGES >/dev/null 2>&1 && chromium --version >/dev/null 2>&1; then
    exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
    SUDO=sudo
else
    SUDO=
fi
export DEBIAN_FRONTEND=noninteractive
# Another apt run (an agent, unattended-upgrades) may hold the lock: wait for it instead of failing.
$SUDO apt-get -o DPkg::Lock::Timeout=600 update -qq
# shellcheck disable=SC2086
$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends $PACKAGES >/dev/null
chromium --version >/dev/null
