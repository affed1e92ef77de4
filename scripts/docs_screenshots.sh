#!/usr/bin/env bash
# docs/img/tensorboard_*.png: TensorBoard's tabs on a tiny two-run sweep, shot by headless Chromium
# (`make docs-screenshots`; needs `chromium`: apt-get install -y chromium). Usage: scripts/docs_screenshots.sh [PYTHON]
set -euo pipefail
PY=${1:-.venv/bin/python}
OUT=docs/img
WORK=$(mktemp -d)
PORT=${TB_PORT:-6126}
trap 'kill "$TB_PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT
TB_PID=

# Two short runs, the recommended CVAE and a β-VAE, with a small end-of-training evaluation.
"$PY" -m vae_lab.train -m model=cvae,beta_vae trainer.max_epochs=2 +trainer.limit_train_batches=30 \
  +trainer.limit_val_batches=4 trainer.log_every_n_steps=5 trainer.enable_progress_bar=false \
  callbacks.images.every_n_epochs=1 data.train_subset=4000 ++eval.max_test_images=1000 ++eval.fid_samples=1000 \
  ++eval.iwae_samples=8 hydra.sweep.dir="$WORK/sweep" > "$WORK/train.log" 2>&1

"$PY" -m tensorboard.main --logdir "$WORK/sweep" --host 127.0.0.1 --port "$PORT" > "$WORK/tb.log" 2>&1 &
TB_PID=$!
for _ in $(seq 60); do curl -sf "http://127.0.0.1:$PORT/data/runs" > /dev/null && break; sleep 1; done

shot() {  # shot NAME FRAGMENT: one tab at 1400×1000, then shrunk to a small palette PNG
  chromium --headless --no-sandbox --disable-gpu --disable-background-networking --disable-component-update \
    --disable-sync --no-first-run --user-data-dir="$(mktemp -d -p "$WORK")" --virtual-time-budget=20000 \
    --window-size=1400,1000 --screenshot="$WORK/$1.png" "http://127.0.0.1:$PORT/?forceSVG=true#$2" > /dev/null 2>&1
  "$PY" - "$WORK/$1.png" "$OUT/tensorboard_$1.png" <<'PYEOF'
import sys
from PIL import Image
image = Image.open(sys.argv[1]).convert("RGB")
image = image.resize((1050, 750), Image.LANCZOS).quantize(colors=64, method=Image.Quantize.MEDIANCUT)
image.save(sys.argv[2], optimize=True)
PYEOF
  echo "wrote $OUT/tensorboard_$1.png ($(stat -c %s "$OUT/tensorboard_$1.png") bytes)"
}
mkdir -p "$OUT"
shot timeseries timeseries
shot hparams hparams
shot images images
