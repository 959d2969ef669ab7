#!/usr/bin/env bash
# Install Debian's Chromium for the report's headless-browser test (tests/integration/test_report.py).
# Idempotent and quick when already present: nothing is fetched if `chromium` runs.
set -euo pipefail
if command -v chromium >/dev/null 2>&1 && chromium --version >/dev/null 2>&1; then
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
$SUDO apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
chromium --version >/dev/null
