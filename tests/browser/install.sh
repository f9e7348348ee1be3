#!/usr/bin/env bash
# Installs the browser tests' one npm package (playwright-core, the exact
# version package-lock.json pins) into tests/browser/node_modules, once:
# nothing is fetched when that version is there already. The browser is
# Debian's /usr/bin/chromium (scripts/install-deps.sh); playwright-core never
# downloads one (its install scripts are not run).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
want=$(node -e 'console.log(require(process.argv[1]).packages["node_modules/playwright-core"].version)' \
    "$here/package-lock.json")
have=$(node -e 'try { console.log(require(process.argv[1]).version) } catch (e) { console.log("") }' \
    "$here/node_modules/playwright-core/package.json")
if [ "$have" = "$want" ]; then
    exit 0
fi
echo "tests/browser: installing playwright-core $want (npm ci)"
npm ci --prefix "$here" --no-audit --no-fund --ignore-scripts --loglevel=error
