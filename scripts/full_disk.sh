#!/usr/bin/env bash
# A run whose folder fills up: on a small tmpfs (root: mount), the second epoch's checkpoint does not fit.
# Expect: one `error:` line naming the file and "No space left on device", exit status 2, the first epoch's
# last.ckpt intact (it loads, epoch 0) and no temporary file left. Usage: sudo scripts/full_disk.sh [SIZE]
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
MNT=$(mktemp -d /tmp/vae_lab_full_disk.XXXXXX)
mount -t tmpfs -o "size=${1:-40m}" tmpfs "$MNT" || { echo "cannot mount a tmpfs (needs root)"; exit 1; }
trap 'umount "$MNT"; rmdir "$MNT"' EXIT
# the MLP VAE's checkpoint (weights and Adam's moments) is 16.2 MB: epoch 0 writes best and last (32 MB), and
# epoch 1's better validation loss needs room for a third file while the old ones are still there
PYTHONPATH=$PWD "$PY" -m vae_lab.train net=mlp trainer.max_epochs=2 +trainer.limit_train_batches=5 \
  +trainer.limit_val_batches=2 +trainer.limit_test_batches=2 data.train_subset=2000 eval.enabled=false \
  trainer.enable_progress_bar=false hydra.run.dir="$MNT/run" > "$MNT/stdout" 2> "$MNT/stderr"
echo "exit status: $?"
grep '^error:' "$MNT/stderr" || tail -5 "$MNT/stderr"
ls -la "$MNT/run/checkpoints"
PYTHONPATH=$PWD "$PY" -c "
import sys
from vae_lab.models import read_checkpoint
c = read_checkpoint(sys.argv[1])
print('last.ckpt loads: epoch', c['epoch'], 'global_step', c['global_step'])" "$MNT/run/checkpoints/last.ckpt"
echo "temporary files left: $(find "$MNT" -name '*.tmp' | wc -l)"
