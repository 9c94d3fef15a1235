#!/usr/bin/env python3
"""Side by side: `lora bench gemm` against OpenBLAS SGEMM (../shared/anchors/blas_reference.py gemm),
alternating the two for several rounds on the same machine, then the median of each and the ratio.

  /usr/bin/python3 Benchmarks/scripts/compare_gemm.py [--rounds 3] [--out Benchmarks/results/gemm-cpu.md]

Needs: apt-get install -y python3-numpy libopenblas0-pthread (Debian's numpy otherwise runs the netlib
reference BLAS, ~30x slower, which is no target). Run from the repository root with the Release CLI built.
"""
import json, os, statistics, subprocess, sys, tempfile, datetime, platform
from anchor_env import reference_env, openblas_core, write_results

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
anchor = os.path.join(os.path.dirname(root), "shared", "anchors", "blas_reference.py")
rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 3
out = sys.argv[sys.argv.index("--out") + 1] if "--out" in sys.argv else None
shapes = [(1024, 1024, 1024), (2048, 2048, 2048), (512, 4096, 4096), (512, 16, 4096), (512, 4096, 16), (1, 4096, 4096)]
shape_arg = ",".join(f"{m}x{n}x{k}" for m, n, k in shapes)
ours, theirs = {}, {}

def run_ours():
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "g.json")
        subprocess.run(["dotnet", "run", "--project", os.path.join(root, "Cli"), "-c", "Release", "--no-build", "--",
                        "bench", "gemm", "--device", "cpu", "--shapes", shape_arg, "--json", path],
                       check=True, stdout=subprocess.DEVNULL)
        for r in json.load(open(path)):
            ours.setdefault(tuple(r["shape"]), []).append(r["median_ms"])

def run_theirs():
    res = subprocess.run(["/usr/bin/python3", anchor, "gemm"], check=True, capture_output=True, text=True, env=reference_env())
    for line in res.stdout.splitlines():
        r = json.loads(line)
        if tuple(r["shape"]) in map(tuple, shapes):
            theirs.setdefault(tuple(r["shape"]), []).append(r["median_ms"])

for i in range(rounds):
    run_ours(); run_theirs()
    print(f"round {i + 1}/{rounds} done", file=sys.stderr)

lines = [f"SGEMM on the CPU, {rounds} alternating rounds, median of per-round medians "
         f"({datetime.date.today()}, {platform.node()}, {os.cpu_count()} cores; OpenBLAS kernel: {openblas_core()})", "",
         "| shape (M×N×K) | LoraRuntime ms | GFLOP/s | OpenBLAS ms | GFLOP/s | ratio (OpenBLAS time / ours) |",
         "| --- | ---: | ---: | ---: | ---: | ---: |"]
for m, n, k in shapes:
    a, b = statistics.median(ours[(m, n, k)]), statistics.median(theirs[(m, n, k)])
    gf = lambda ms: 2 * m * n * k / ms / 1e6
    lines.append(f"| {m}×{n}×{k} | {a:.3f} | {gf(a):.1f} | {b:.3f} | {gf(b):.1f} | {b / a:.2f}× |")
text = "\n".join(lines)
print(text)
if out:
    write_results(out, text)
