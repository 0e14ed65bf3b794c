"""Turns the JSON lines of `bench` (Burn) and `pytorch_reference.py` into the markdown table
of bench/RESULTS.md: one row per benchmark row, `speed ratio` = Burn's throughput over
PyTorch's (above 1: Burn is faster; for the latency row, PyTorch's time over Burn's).

The machine line names the CPU, the flags of its vector instruction sets and the capability
PyTorch's kernels use. Where both sides ran row `gemm` (a plain square product), each row also
shows its GFLOP per item (PyTorch's count, the same products on both sides) and the share of
the machine's peak that each side reaches, the peak being the faster side's gemm."""

import argparse
import json
import os
import platform

WHAT = {
    "gemm": "plain product [2048,2048] x [2048,2048]",
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


def cpu_flags():
    """The flags of /proc/cpuinfo that decide which kernels run: AVX2, FMA, AVX-512."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    wanted = ["avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_vnni",
                              "avx512_bf16", "amx_tile"]
                    shown = [w for w in wanted if w in flags]
                    return " ".join(shown) + ("" if "avx512f" in flags else ", no avx512f")
    except OSError:
        pass
    return "flags unknown"


def rate(record, flops):
    """GFLOP/s of a row's median, from its FLOPs per item."""
    if record is None or "median" not in record or not flops or record["median"] <= 0:
        return None
    per_second = 1000 / record["median"] if record["unit"].startswith("ms") else record["median"]
    return per_second * flops / 1e9


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
    version = next((r["torch"] for r in torch.values() if "torch" in r), "?")
    capability = next((r["cpu_capability"] for r in torch.values() if "cpu_capability" in r), "?")
    print(f"Machine: {cpu_name()} ({cpu_flags()}), {os.cpu_count()} logical CPUs; "
          f"PyTorch {version}, CPU capability {capability}, {threads} threads; "
          f"commit {args.commit}; Burn `{backend}`, PyTorch `{torch_device}`.")
    print()
    peaks = [r["median"] for r in (burn.get("gemm"), torch.get("gemm")) if r and "median" in r]
    peak = max(peaks) if len(peaks) == 2 else None

    def share(record, flops):
        value = rate(record, flops)
        return "-" if value is None or peak is None else f"{100 * value / peak:.0f}%"

    print("| row | what | unit | Burn | PyTorch | speed ratio | GFLOP per item "
          "| Burn % of peak | PyTorch % of peak | Burn peak MB | PyTorch peak MB |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|")
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
        flops = (t or {}).get("flops_per_item")
        per_item = f"{flops / 1e9:.3g}" if flops else "-"
        print(f"| {row} | {what} | {unit} | {figure(b)} | {figure(t)} | {ratio} | {per_item} "
              f"| {share(b, flops)} | {share(t, flops)} | {memory(b)} | {memory(t)} |")


if __name__ == "__main__":
    main()
