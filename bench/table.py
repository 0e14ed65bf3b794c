"""Turns the JSON lines of `bench` (Burn) and `pytorch_reference.py` into the markdown table
of bench/RESULTS.md: one row per benchmark row, `speed ratio` = Burn's throughput over
PyTorch's (above 1: Burn is faster; for the latency row, PyTorch's time over Burn's)."""

import argparse
import json
import os
import platform

WHAT = {
    "1a": "decoder train step, 14x14x2048, vocab 10000",
    "1b": "decoder train step, 7x7x1280, vocab 1755",
    "2-resnet101": "encoder forward, ResNet-101, 224px",
    "2-lite0": "encoder forward, EfficientNet-Lite0, 224px",
    "3": "fine-tune step, ResNet-101 layers 2-4 + decoder (a)",
    "4-b32": "beam search K=3, batch 32, 7x7x1280",
    "4-b1": "beam search K=3, batch 1 (latency)",
}


def read(path):
    rows = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                record = json.loads(line)
                rows[record["row"]] = record
    return rows


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def figure(record):
    if record is None:
        return "-"
    if "skipped" in record:
        return "n/a"
    return f"{record['median']:.3g}"


def memory(record):
    if record is None or record.get("peak_mem_mb") is None:
        return "-"
    return f"{record['peak_mem_mb']:.0f}"


def main():
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("burn", help="JSON lines of target/release/bench")
    p.add_argument("pytorch", help="JSON lines of bench/pytorch_reference.py")
    p.add_argument("--commit", default="unknown", help="the commit measured")
    args = p.parse_args()
    burn, torch = read(args.burn), read(args.pytorch)
    backend = next((r["device"] for r in burn.values() if "device" in r), "?")
    torch_device = next((r["device"] for r in torch.values() if "device" in r), "?")
    threads = next((r["threads"] for r in torch.values() if "threads" in r), "?")
    print(f"Machine: {cpu_name()}, {os.cpu_count()} logical CPUs (PyTorch threads: {threads}); "
          f"commit {args.commit}; Burn `{backend}`, PyTorch `{torch_device}`.")
    print()
    print("| row | what | unit | Burn | PyTorch | speed ratio | Burn peak MB | PyTorch peak MB |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for row in WHAT:
        b, t = burn.get(row), torch.get(row)
        if b is None and t is None:
            continue
        unit = (b or t).get("unit", "")
        ratio = "-"
        if b and t and "median" in b and "median" in t and b["median"] > 0 and t["median"] > 0:
            r = t["median"] / b["median"] if unit.startswith("ms") else b["median"] / t["median"]
            ratio = f"{r:.2f}"
        why = " ".join(x["skipped"] for x in (b, t) if x and "skipped" in x)
        what = WHAT[row] + (f" ({why})" if why else "")
        print(f"| {row} | {what} | {unit} | {figure(b)} | {figure(t)} | {ratio} "
              f"| {memory(b)} | {memory(t)} |")


if __name__ == "__main__":
    main()
