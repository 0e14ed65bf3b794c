#!/usr/bin/env bash
# Builds the GPU check's package here, for a GPU machine with no Rust toolchain:
#
#   bench/gpu_pack.sh [--out artifacts/gpu-pack]
#
# `train`, `infer`, `eval` and `bench` built with the cuda and wgpu backends (release),
# stripped, in one tar.xz compressed with a window larger than a binary, so that the code the
# four binaries share is stored about once. Then the package is checked as the GPU machine
# will see it: unpacked into an empty folder and each binary's `--help` run there with an
# empty environment, and the libraries they load named (`ldd`: the C library's only).
# Prints the package's size; it and the working tree must stay under the 64 MiB that the
# device tool carries. docs/gpu.md says how to run the check with it.
set -euo pipefail
cd "$(dirname "$0")/.."

out="artifacts/gpu-pack"
while [[ $# -gt 0 ]]; do
    case "$1" in
        --out) out="$2"; shift 2 ;;
        -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "unknown argument $1 (see bench/gpu_pack.sh --help)" >&2; exit 2 ;;
    esac
done
bins=(train infer eval bench)

cargo build --release --workspace --features captioner/cuda,captioner/wgpu \
    --bin train --bin infer --bin eval --bin bench
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/bin" "$out"
for b in "${bins[@]}"; do
    strip -o "$stage/bin/$b" "target/release/$b"
done
pack="$out/captioner-gpu.tar.xz"
# xz's window (dict) must span the four binaries for their shared code to be stored once;
# unpacking it takes that much memory (Python's tarfile does it where xz is missing).
tar -C "$stage" -cf - bin | xz -9 --lzma2=preset=9,dict=512MiB -T1 >"$pack.tmp"
mv "$pack.tmp" "$pack"

echo "Binaries, stripped:"
(cd "$stage/bin" && du -m "${bins[@]}" | awk '{printf "  %-6s %4d MiB\n", $2, $1}')
echo "Package: $pack, $(du -m "$pack" | cut -f1) MiB ($(stat -c %s "$pack") bytes)"
echo "Working tree that travels with it: $(git ls-files -z | xargs -0 du -cb | tail -n 1 | awk '{printf "%.1f", $1 / 1048576}') MiB"

# The package as the GPU machine gets it.
check="$(mktemp -d)"
trap 'rm -rf "$stage" "$check"' EXIT
python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' \
    "$pack" "$check"
for b in "${bins[@]}"; do
    (cd "$check" && env -i "bin/$b" --help >/dev/null) \
        || { echo "FAILED: $b --help from the unpacked package" >&2; exit 1; }
done
echo "Unpacked into an empty folder: each binary's --help runs with an empty environment"
echo "Libraries they load (ldd bin/train):"
ldd "$check/bin/train" | awk '{print "  " $1}'
