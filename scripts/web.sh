#!/usr/bin/env bash
# Builds the web admin site into web/dist (git-ignored), which the daemon serves: the pages from
# web/src and, from npm (web/package-lock.json, `npm ci`), xterm.js and noVNC bundled by esbuild.
# playwright-core (the browser test's driver) comes along; it never downloads a browser: the test
# drives Debian's chromium. Idempotent: `npm ci` runs only when package-lock.json changed.
set -euo pipefail
cd "$(dirname "$0")/../web"
log() { printf 'web: %s\n' "$*"; }

command -v npm >/dev/null || { echo "web: npm not found (scripts/setup.sh installs nodejs and npm)" >&2; exit 1; }
export PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1
stamp=node_modules/.vine-lock-sha256
want=$(sha256sum package-lock.json | cut -d' ' -f1)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    log "npm ci"
    npm ci --no-audit --no-fund --loglevel=error
    echo "$want" >"$stamp"
fi

rm -rf dist.new
mkdir -p dist.new/vendor
cp src/index.html src/app.js src/style.css dist.new/
cp node_modules/@xterm/xterm/css/xterm.css dist.new/vendor/
node_modules/.bin/esbuild src/vendor.js --bundle --minify --format=iife --target=es2020 \
    --log-level=warning --outfile=dist.new/vendor/vendor.js
rm -rf dist
mv dist.new dist
log "built $(pwd)/dist"
