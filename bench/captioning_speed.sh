#!/usr/bin/env bash
# Latency of `infer` and throughput of `serve` on this machine: the figures of
# "Captioning people's own photos" in bench/RESULTS.md.
#
#   bench/captioning_speed.sh MODEL_DIR PICTURES_DIR [SECONDS]
#
# MODEL_DIR     a run folder written by `train`
# PICTURES_DIR  a folder of at least 100 JPEG photos (e.g. Flickr8k's dev photos)
# SECONDS       how long the load on `serve` lasts (default 30)
#
# Prints, at beam 3: infer on 1 picture (5 runs), on a folder of 100 at --batch-size 1 and at
# the default batch, then `serve` under `wrk` (apt install wrk) from a second process on
# loopback with 1, 4 and 16 connections posting one fixed photo, with latency percentiles.
# Uses target/release/{infer,serve}: build them first (cargo build --release).
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:?usage: bench/captioning_speed.sh MODEL_DIR PICTURES_DIR [SECONDS]}"
pictures="${2:?usage: bench/captioning_speed.sh MODEL_DIR PICTURES_DIR [SECONDS]}"
seconds="${3:-30}"
infer=target/release/infer
serve=target/release/serve
work="$(mktemp -d)"
trap 'kill "${server:-}" 2>/dev/null || true; rm -rf "$work"' EXIT

mkdir -p "$work/100"
find "$pictures" -maxdepth 1 -iname '*.jpg' | sort | head -100 | while read -r p; do
    ln -s "$(realpath "$p")" "$work/100/"
done
one="$(find "$work/100" -name '*.jpg' | sort | head -1)"

echo "== infer, beam 3, model $model"
for run in 1 2 3 4 5; do
    "$infer" --model "$model" --beam-size 3 "$one" 2>&1 >/dev/null | grep '^Captioned' || true
done
echo "-- 100 pictures, --batch-size 1"
"$infer" --model "$model" --beam-size 3 --batch-size 1 "$work/100" 2>&1 >/dev/null | grep '^Captioned'
echo "-- 100 pictures, default batch"
"$infer" --model "$model" --beam-size 3 "$work/100" 2>&1 >/dev/null | grep '^Captioned'

echo "== serve under wrk, ${seconds}s a load"
"$serve" --model "$model" --port 18080 --beam-size 3 2>"$work/serve.log" &
server=$!
for _ in $(seq 600); do
    grep -q "Listening" "$work/serve.log" 2>/dev/null && break
    sleep 0.5
done
cat > "$work/post.lua" <<EOF
wrk.method = "POST"
local f = io.open("$one", "rb")
wrk.body = f:read("*all")
f:close()
wrk.headers["Content-Type"] = "image/jpeg"
EOF
for connections in 1 4 16; do
    echo "-- $connections connections"
    wrk -t1 -c"$connections" -d"${seconds}s" --timeout 30s --latency -s "$work/post.lua" \
        http://127.0.0.1:18080/caption | grep -E 'Latency|50%|90%|99%|Requests/sec|Non-2xx|requests in'
done
