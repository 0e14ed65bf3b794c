#!/usr/bin/env bash
# Runs the fuzz targets one after the other, each for MINUTES minutes (default 10), from the
# committed seeds (fuzz/seeds/) and the corpus earlier runs grew (fuzz/corpus/, not
# committed). A crash stops the run and leaves its input in fuzz/artifacts/<target>/.
#
#   fuzz/run.sh [MINUTES] [TARGET...]      targets: dataset_files caption_text pth_layouts pictures
#
# Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`); see docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")"
minutes=${1:-10}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(dataset_files caption_text pth_layouts pictures)
fi
cargo +nightly fuzz build
mkdir -p logs
for target in "${targets[@]}"; do
    mkdir -p "corpus/$target"
    dict=()
    case "$target" in
        dataset_files | caption_text) dict=(-dict=dicts/dataset_files.dict) ;;
    esac
    echo "== $target: $minutes min (log: fuzz/logs/$target.log)"
    if ! cargo +nightly fuzz run "$target" "corpus/$target" "seeds/$target" -- \
        -max_total_time=$((minutes * 60)) -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 \
        "${dict[@]}" >"logs/$target.log" 2>&1; then
        tail -n 40 "logs/$target.log" >&2
        echo "$target found a crash: its input is in fuzz/artifacts/$target/" >&2
        exit 1
    fi
    grep -E "^Done|stat::number_of_executed_units|stat::new_units_added|cov: " "logs/$target.log" | tail -n 3
done
