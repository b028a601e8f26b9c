#!/usr/bin/env bash
# Reproduce checkpoints/starter.safetensors and print its scores on the held-out split.
#
# Stage 1 trains the Transformer decoder with cross-entropy on frozen EfficientNet-Lite0
# features; stage 2 fine-tunes it with self-critical training on CIDEr-D. Flickr8k
# images are sorted by name. Every tenth one at offset 0 is held out for scoring and
# never trained on. Every tenth one at offset 5 forms the validation split, which
# picks beam size and length penalty. Takes about 20 minutes on two CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-.venv/bin/python}
data=../shared/datasets
splits=(--exclude-every 10 --exclude-offset 0 --val-every 10 --val-offset 5)
sources=(
  --captions-csv "$data/flickr8k-900/captions.csv" --images "$data/flickr8k-900/images"
  --coco-json "$data/coco-mini/captions_train2017.json" --coco-images "$data/coco-mini/train2017"
)

"$python" -m ml.train "${sources[@]}" "${splits[@]}" \
  --output var/train/starter-xe.safetensors

"$python" -m ml.train "${sources[@]}" "${splits[@]}" \
  --objective scst --init-from var/train/starter-xe.safetensors \
  --epochs 10 --lr 2e-5 --warmup-steps 0 --batch-size 32 --ema-decay 0 \
  --output checkpoints/starter.safetensors

"$python" -m ml.evaluate --checkpoint checkpoints/starter.safetensors \
  --captions-csv "$data/flickr8k-900/captions.csv" --images "$data/flickr8k-900/images" \
  --select-every 10 --select-offset 0 --samples var/train/starter-samples.csv
