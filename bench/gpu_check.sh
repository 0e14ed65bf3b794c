#!/usr/bin/env bash
# The GPU check: one command on a machine with an NVIDIA GPU, with binaries built beforehand
# (no registry or compiler needed there). Either the package that bench/gpu_pack.sh makes
# (what the device tool carries; docs/gpu.md), or a build on the machine itself:
#
#   bench/gpu_check.sh --pack artifacts/gpu-pack/captioner-gpu.tar.xz [--backends "cuda wgpu"]
#   bench/gpu_check.sh [--bin target/release] [--backends "cuda wgpu"]
#
# For each backend: `train` on the shapes dataset (2 epochs of 1000 scenes) through
# bench/compile_counts.py, which counts the kernels CubeCL compiles and the keys it tunes per
# phase (the second epoch should compile and tune nothing) and dumps every thread's stack
# with gdb if no progress line comes for 60 s; `--device auto` must pick cuda; `eval` and
# `infer` with the trained run on this backend and on flex must agree. Then bench rows 1b and
# 4-b32 on cuda, beside PyTorch on CUDA when `python3 -c "import torch, torchvision"` works.
# Everything lands in artifacts/gpu-check/<date>/, with summary.md to paste into
# bench/RESULTS.md. Meant to finish in under 8 minutes on one H100/H200.
set -uo pipefail
cd "$(dirname "$0")/.."

bin="target/release"
pack=""
backends="cuda wgpu"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --bin) bin="$2"; shift 2 ;;
        --pack) pack="$2"; shift 2 ;;
        --backends) backends="$2"; shift 2 ;;
        -h|--help) sed -n '2,19p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument $1 (see bench/gpu_check.sh --help)" >&2; exit 2 ;;
    esac
done
if [[ -n "$pack" ]]; then
    unpacked="$(mktemp -d)"
    python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
        "$pack" "$unpacked" || { echo "cannot unpack $pack" >&2; exit 2; }
    bin="$unpacked/bin"
fi
bin="$(cd "$bin" && pwd)"
# CubeCL compiles CUDA kernels with NVRTC at run time: where the loader does not find it,
# take CUDA's own or the one PyTorch's wheels bring.
if ! ldconfig -p 2>/dev/null | grep -q libnvrtc; then
    for dir in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib \
        $(python3 -c 'import nvidia, os; [print(os.path.join(p, d, "lib")) for p in nvidia.__path__ for d in os.listdir(p)]' 2>/dev/null); do
        ls "$dir"/libnvrtc.so* >/dev/null 2>&1 && export LD_LIBRARY_PATH="$dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    done
fi
out="artifacts/gpu-check/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
summary="$out/summary.md"
status=0
say() { echo "$*" | tee -a "$summary"; }
fail() { say "FAILED: $*"; status=1; }

say "# GPU check, $(date -u +%Y-%m-%dT%H:%MZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
say ""
say '```'
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 | tee -a "$summary"
say '```'

pictures=(datasets/tests/fixtures/*.png datasets/tests/fixtures/*.jpg)
for backend in $backends; do
    say ""
    say "## $backend"
    run="$out/$backend"
    timeout 300 python3 bench/compile_counts.py --out "$run" --bin "$bin" --stall 60 -- \
        --device "$backend" --epochs 2 --train-images 1000 --valid-images 100 \
        --test-images 200 >"$out/$backend-train.txt" 2>&1
    code=$?
    [[ $code -eq 0 ]] || fail "$backend training exited with $code (see $out/$backend-train.txt)"
    say '```'
    [[ -f "$run/counts.json" ]] && cat "$run/counts.json" | tee -a "$summary" >/dev/null
    grep -E "^\[(train|valid)\] epoch [0-9]+/[0-9]+ ([0-9]+)/\2" "$out/$backend-train.txt" \
        | tail -n 4 | tee -a "$summary" >/dev/null
    grep -E "all right|BLEU-1..4" "$out/$backend-train.txt" | tee -a "$summary" >/dev/null
    say '```'
    ls "$run"/stall-*.txt >/dev/null 2>&1 && fail "$backend stalled: stacks in $run/stall-*.txt"
    [[ -f "$run/run/model.mpk" ]] || continue
    for device in "$backend" flex; do
        timeout 120 "$bin/eval" model --model "$run/run" --device "$device" --json \
            >"$out/$backend-eval-$device.json" 2>"$out/$backend-eval-$device.err" \
            || fail "eval on $device of the $backend run"
        timeout 120 "$bin/infer" --model "$run/run" --device "$device" "${pictures[@]}" \
            >"$out/$backend-infer-$device.txt" 2>"$out/$backend-infer-$device.err" \
            || fail "infer on $device of the $backend run"
    done
    if cmp -s "$out/$backend-eval-$backend.json" "$out/$backend-eval-flex.json"; then
        say "eval: the same scores on $backend and flex"
    else
        fail "eval scores differ between $backend and flex (see $out/$backend-eval-*.json)"
    fi
    if cmp -s "$out/$backend-infer-$backend.txt" "$out/$backend-infer-flex.txt"; then
        say "infer: the same captions on $backend and flex"
    else
        fail "infer captions differ between $backend and flex (see $out/$backend-infer-*.txt)"
    fi
done

# `--device auto` (the default) picks the first GPU backend that starts.
for run in "$out"/*/run; do
    "$bin/infer" --model "$run" "${pictures[@]}" >/dev/null 2>"$out/auto.err"
    say ""
    say "auto: $(head -n 1 "$out/auto.err")"
    head -n 1 "$out/auto.err" | grep -q "^Device: cuda" || fail "--device auto did not pick cuda"
    break
done

if [[ " $backends " == *" cuda "* && -x "$bin/bench" ]]; then
    say ""
    say "## bench rows 1b and 4-b32 on cuda"
    say '```'
    for row in 1b 4-b32; do
        timeout 120 "$bin/bench" --row "$row" --device cuda 2>/dev/null | tee -a "$summary"
        if python3 -c "import torch, torchvision" 2>/dev/null; then
            timeout 120 python3 bench/pytorch_reference.py --row "$row" --device cuda \
                2>/dev/null | tee -a "$summary"
        fi
    done
    say '```'
fi
say ""
say "Files: $out"
# On the device tool's machine, the summary comes back through $OUT.
[[ -n "${OUT:-}" && -d "${OUT:-}" ]] && cp "$summary" "$OUT/gpu-check-summary.md"
exit $status
