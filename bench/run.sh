#!/usr/bin/env bash
# Runs every benchmark row on Burn and on PyTorch, one after the other on this machine, and
# prints the comparison table (bench/RESULTS.md says how to read it).
#
#   bench/run.sh [--quick] [--device flex|ndarray|cuda|wgpu] [--rows "1a 1b ..."]
#
# --quick    every row briefly (under 10 minutes on a 2-core CPU); otherwise medians of 5 runs
# --device   Burn's backend (default flex, the CPU default); cuda and wgpu compare with
#            PyTorch on CUDA
# --rows     a subset of: gemm 1a 1b 2-resnet101 2-lite0 3 4-b32 4-b1 (gemm, a plain square
#            product, gives the machine's peak that the table's "% of peak" columns divide by)
# PYTHON     the Python that has torch (default python3); LITE0_PTH names EfficientNet-Lite0
#            weights for row 2-lite0 on the PyTorch side.
# Each side's JSON lines and the table are kept in artifacts/bench/<date>/.
set -euo pipefail
cd "$(dirname "$0")/.."

quick=""
device="flex"
rows="gemm 1a 1b 2-resnet101 2-lite0 3 4-b32 4-b1"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --quick) quick="--quick"; shift ;;
        --device) device="$2"; shift 2 ;;
        --rows) rows="$2"; shift 2 ;;
        -h|--help) sed -n '2,14p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument $1 (see bench/run.sh --help)" >&2; exit 2 ;;
    esac
done
python="${PYTHON:-python3}"
case "$device" in
    cuda|wgpu) torch_device="cuda"; features="$device" ;;
    flex|ndarray) torch_device="cpu"; features="$device" ;;
    *) echo "unknown device $device: flex, ndarray, cuda or wgpu" >&2; exit 2 ;;
esac
if ! "$python" -c "import torch, torchvision" 2>/dev/null; then
    echo "$python cannot import torch and torchvision: pip install torch torchvision, or set PYTHON" >&2
    exit 1
fi

# A prebuilt binary (BENCH_BIN) is used as it is, e.g. on a machine without the registry.
bin="${BENCH_BIN:-target/release/bench}"
if [[ -z "${BENCH_BIN:-}" ]]; then
    cargo build --release -p captioner-bench --features "$features"
fi

out="artifacts/bench/$(date +%Y%m%d-%H%M%S)-$device${quick:+-quick}"
mkdir -p "$out"
for row in $rows; do
    echo "row $row: burn ($device)" >&2
    "$bin" --row "$row" --device "$device" $quick | tee -a "$out/burn.jsonl" >&2
    echo "row $row: pytorch ($torch_device)" >&2
    "$python" bench/pytorch_reference.py --row "$row" --device "$torch_device" $quick \
        | tee -a "$out/pytorch.jsonl" >&2
done
"$python" bench/table.py "$out/burn.jsonl" "$out/pytorch.jsonl" \
    --commit "$(git rev-parse --short HEAD 2>/dev/null || echo unknown)" | tee "$out/table.md"
echo "saved in $out" >&2
