#!/usr/bin/env python3
"""Runs `train` on a GPU backend and counts the kernels CubeCL compiles and the keys it tunes,
phase by phase, from CubeCL's own logs.

    python3 bench/compile_counts.py --out DIR [--bin target/release] [--stall 60] -- \
        --device wgpu --epochs 2 --train-images 128 ...

A `cubecl.toml` in DIR (the run's working directory) sends the compilation log ("[Compiling
kernel] ..." per kernel) and the autotune log ("Fastest result ..." per key) to files there,
with a fresh autotune cache. Every log line and every line `train` prints (the plain progress
lines, as stdout is not a terminal) is time-stamped; the summary gives the counts at the end
of each epoch's training and validation, and the seconds each phase took. When no progress
line comes for --stall seconds, every thread's stack is dumped with gdb into DIR/stall-*.txt
(the run goes on). Writes DIR/counts.json and prints a summary.
"""
import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time

CUBECL_TOML = """[compilation.logger]
level = "basic"
file = "{dir}/compilations.log"

[autotune.logger]
level = "minimal"
file = "{dir}/autotune.log"

[autotune]
cache = {{ file = "{dir}/autotune-cache" }}
"""


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="working folder (created)")
    parser.add_argument("--bin", default="target/release", help="folder of the built binaries")
    parser.add_argument("--stall", type=float, default=60.0,
                        help="seconds without progress before the stacks are dumped")
    parser.add_argument("train_args", nargs=argparse.REMAINDER, help="-- then train's flags")
    args = parser.parse_args()
    train_args = [a for a in args.train_args if a != "--"]
    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    for name in ("compilations.log", "autotune.log"):
        if os.path.exists(os.path.join(out, name)):
            os.remove(os.path.join(out, name))
    with open(os.path.join(out, "cubecl.toml"), "w") as f:
        f.write(CUBECL_TOML.format(dir=out))
    train = os.path.abspath(os.path.join(args.bin, "train"))
    command = [train, "--out", os.path.join(out, "run")] + train_args
    print("$ " + " ".join(command), file=sys.stderr)

    start = time.time()
    events = []  # (seconds, kind, text)
    lock = threading.Lock()
    last_progress = [start]

    def note(kind, text):
        with lock:
            events.append((time.time() - start, kind, text))

    proc = subprocess.Popen(command, cwd=out, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, bufsize=1)

    def read_output():
        for line in proc.stdout:
            sys.stdout.write(line)
            note("out", line.rstrip("\n"))
            last_progress[0] = time.time()

    def follow(name, kind, pattern):
        path = os.path.join(out, name)
        seen = 0
        while proc.poll() is None or seen < count_in(path, pattern):
            n = count_in(path, pattern)
            for _ in range(n - seen):
                note(kind, "")
            seen = n
            time.sleep(0.2)

    threads = [threading.Thread(target=read_output, daemon=True),
               threading.Thread(target=follow, args=("compilations.log", "compile",
                                                     "[Compiling kernel]"), daemon=True),
               threading.Thread(target=follow, args=("autotune.log", "tune", "Fastest result"),
                                daemon=True)]
    for t in threads:
        t.start()
    dumps = 0
    while proc.poll() is None:
        time.sleep(1)
        if time.time() - last_progress[0] > args.stall:
            dumps += 1
            path = os.path.join(out, f"stall-{dumps}.txt")
            print(f"no progress for {args.stall:.0f} s: dumping every thread's stack to {path}",
                  file=sys.stderr)
            with open(path, "w") as f:
                subprocess.run(["gdb", "-p", str(proc.pid), "-batch", "-ex",
                                "thread apply all bt"], stdout=f, stderr=subprocess.STDOUT)
            last_progress[0] = time.time()
    for t in threads:
        t.join(timeout=5)
    wall = time.time() - start
    summary = summarise(events, wall, proc.returncode)
    with open(os.path.join(out, "counts.json"), "w") as f:
        json.dump(summary, f, indent=2)
    print(json.dumps(summary, indent=2))
    sys.exit(proc.returncode)


def count_in(path, pattern):
    try:
        with open(path, errors="replace") as f:
            return f.read().count(pattern)
    except FileNotFoundError:
        return 0


def summarise(events, wall, returncode):
    """Counts of compilations and tuned keys at the end of each phase of the run."""
    done = re.compile(r"^\[(train|valid)\] epoch (\d+)/\d+ (\d+)/(\d+)")
    marks = []
    for t, kind, text in events:
        m = done.match(text) if kind == "out" else None
        if m and m.group(3) == m.group(4):
            label = f"epoch {m.group(2)} {m.group(1)}"
            if not marks or marks[-1][0] != label:
                marks.append((label, t))
    marks.append(("end of run", wall))
    phases = []
    previous = 0.0
    for label, t in marks:
        compiled = sum(1 for e in events if e[1] == "compile" and previous < e[0] <= t)
        tuned = sum(1 for e in events if e[1] == "tune" and previous < e[0] <= t)
        phases.append({"phase": label, "ended_s": round(t, 1), "seconds": round(t - previous, 1),
                       "compiled": compiled, "tuned": tuned})
        previous = t
    return {
        "wall_s": round(wall, 1),
        "exit_status": returncode,
        "compiled": sum(1 for e in events if e[1] == "compile"),
        "tuned": sum(1 for e in events if e[1] == "tune"),
        "phases": phases,
    }


if __name__ == "__main__":
    main()
