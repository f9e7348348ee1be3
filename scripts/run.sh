#!/usr/bin/env bash
# make run's last step: train the default model when the registry holds none,
# then serve in the foreground. Ctrl-C stops the daemon cleanly.
set -euo pipefail
cd "$(dirname "$0")/.."
VAED=${VAED_BIN:-build/vaed}
DATA_DIR=${VAED_DATA_DIR:-var}
LISTEN=${VAED_LISTEN:-127.0.0.1:8080}
EPOCHS=${VAED_EPOCHS:-5}
MODEL=${VAED_MODEL:-digits}

# Only a registry that reads as empty (or is not there yet) means "train
# first". list refuses (exit 1) a registry at another schema version without
# migrating it; vaed serve below migrates an older one, or says why not.
if models=$("$VAED" registry list --data-dir "$DATA_DIR" 2>/dev/null) && [ -z "$models" ]; then
    echo "run: the registry in $DATA_DIR/ is empty: training the default model ($MODEL, 784-400-20, $EPOCHS epochs on MNIST)"
    "$VAED" train --data mnist --epochs "$EPOCHS" --register "$MODEL" --data-dir "$DATA_DIR"
fi
echo
echo "run: serving on http://$LISTEN  (Ctrl-C stops it). Try, in another shell:"
echo "    curl -X POST 'localhost:${LISTEN##*:}/sample?n=16' -o samples.png"
echo "    curl localhost:${LISTEN##*:}/healthz"
echo
exec "$VAED" serve --listen "$LISTEN" --data-dir "$DATA_DIR"
