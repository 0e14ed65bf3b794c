"""The costliest units of a cargo build, from its `--timings` report, as a Markdown table.

    cargo test --release --workspace --features captioner/wgpu --no-run --timings
    python3 bench/build_timings.py target/cargo-timings/cargo-timing.html [ROWS]

Each row is one unit (a crate's library, binary or test binary) and the seconds its compile
took; units overlap on several cores, so they add up to more than the build's wall time.
"""
import json, re, sys
html = open(sys.argv[1]).read()
m = re.search(r'const UNIT_DATA = (\[.*?\]);\n', html, re.S)
units = json.loads(m.group(1))
n = int(sys.argv[2]) if len(sys.argv) > 2 else 15
total = re.search(r'<td>Total time:</td><td>([^<]*)</td>', html)
print("wall:", total.group(1) if total else "?", "units:", len(units))
ours = [u for u in units if u['name'].startswith('captioner')]
def kind(u):
    t = u['target'].strip()
    return (t or 'lib') + (' (test)' if u['mode'] == 'test' else '')
print("| # | crate | target | seconds |")
print("|---:|---|---|---:|")
for i, u in enumerate(sorted(units, key=lambda u: -u['duration'])[:n], 1):
    print(f"| {i} | {u['name']} | {kind(u)} | {u['duration']:.0f} |")
s = sum(u['duration'] for u in ours)
print(f"this workspace's crates: {len(ours)} units, {s:.0f} s; all units: {sum(u['duration'] for u in units):.0f} s")
