#!/usr/bin/env bash
# Installs the ONNX Runtime reference's one npm package (onnxruntime-node, the
# exact version package-lock.json pins) into scripts/onnx/node_modules, once:
# nothing is fetched when that version is there already. Its CPU binaries ship
# inside the npm package; ONNXRUNTIME_NODE_INSTALL=skip stops its install
# script from downloading the GPU ones (which this benchmark never uses and
# which are not on the npm registry).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
lock=$here/package-lock.json
if ! node -e '
    const want = require(process.argv[1]).packages["node_modules/onnxruntime-node"].version;
    let have = "";
    try { have = require(process.argv[2]).version; } catch (e) {}
    process.exit(have === want ? 0 : 1);' "$lock" "$here/node_modules/onnxruntime-node/package.json"; then
    echo "scripts/onnx: installing onnxruntime-node as $lock pins it (npm ci)" >&2
    ONNXRUNTIME_NODE_INSTALL=skip npm ci --prefix "$here" --no-audit --no-fund --loglevel=error >&2
fi
# The binding must load from what the package shipped, with nothing fetched.
node -e 'const ort = require(process.argv[1]); console.log(ort.env.versions.node)' \
    "$here/node_modules/onnxruntime-node"
