#!/usr/bin/env python3
"""Side by side: `lora bench svd` against PyTorch's CPU SVDs and LAPACK's gesdd through NumPy
(../shared/anchors/blas_reference.py svd), alternating the two for several rounds on the same machine, then the
median of each and the ratio of the times.

  /usr/bin/python3 Benchmarks/scripts/compare_svd.py [--rounds 3] [--out Benchmarks/results/svd-cpu.md]

The targets (issue 3): the full SVD at 512 and 1024 within 1.5x torch.linalg.svd's time; the rank-16 truncated SVD
of the 4096x4096 decaying-spectrum matrix within 1.0x torch.svd_lowrank(q=16, niter=2)'s time at an equal or lower
error. NumPy's linalg.svd computes in float64 even for float32 input (dgesdd), so its column is a float64 yardstick.
Needs: apt-get install -y python3-numpy python3-torch libopenblas0-pthread. Run from the repository root with the
Release CLI built.
"""
import json, os, statistics, subprocess, sys, tempfile, datetime, platform
from anchor_env import reference_env, openblas_core, write_results

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
anchor = os.path.join(os.path.dirname(root), "shared", "anchors", "blas_reference.py")
rounds = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 3
out = sys.argv[sys.argv.index("--out") + 1] if "--out" in sys.argv else None
sizes = [256, 512, 1024]
truncated = (4096, 4096, 16)
ours, torch, numpy, errors = {}, {}, {}, {}

def run_ours():
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "s.json")
        subprocess.run(["dotnet", "run", "--project", os.path.join(root, "Cli"), "-c", "Release", "--no-build", "--",
                        "bench", "svd", "--device", "cpu", "--sizes", ",".join(map(str, sizes)),
                        "--truncated", "x".join(map(str, truncated)), "--json", path],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        for r in json.load(open(path)):
            key = (r["op"], tuple(r["shape"]))
            ours.setdefault(key, []).append(r["median_ms"])
            errors.setdefault(("ours",) + key, []).append(r["rel_err"])
            if r.get("best_rel_err") is not None:
                errors.setdefault(("best",) + key, []).append(r["best_rel_err"])

def run_theirs():
    res = subprocess.run(["/usr/bin/python3", anchor, "svd"], check=True, capture_output=True, text=True, env=reference_env())
    for line in res.stdout.splitlines():
        r = json.loads(line)
        key = (r["op"], tuple(r["shape"]))
        (numpy if r["impl"].startswith("numpy") else torch).setdefault(key, []).append(r["median_ms"])
        if "rel_err" in r:
            errors.setdefault(("torch",) + key, []).append(r["rel_err"])
            errors.setdefault(("best-reference",) + key, []).append(r["best_rel_err"])

for i in range(rounds):
    run_ours(); run_theirs()
    print(f"round {i + 1}/{rounds} done", file=sys.stderr)

med = lambda xs: statistics.median(xs)
lines = [f"SVD on the CPU, {rounds} alternating rounds, median of per-round medians "
         f"({datetime.date.today()}, {platform.node()}, {os.cpu_count()} cores; OpenBLAS kernel: {openblas_core()})", "",
         "| case | LoraRuntime ms | rel err | torch ms | ours / torch | NumPy gesdd (float64) ms | target |",
         "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
for n in sizes:
    key = ("svd", (n, n))
    a, t, np_ = med(ours[key]), med(torch[key]), med(numpy[key])
    target = "≤ 1.5×" if n >= 512 else "—"
    lines.append(f"| svd {n}×{n} | {a:.1f} | {med(errors[('ours',) + key]):.1e} | {t:.1f} | {a / t:.2f}× | {np_:.1f} | {target} |")
m, n, k = truncated
key = ("truncated_svd", (m, n, k))
a, t = med(ours[key]), med(torch[key])
lines.append(f"| truncated rank {k} of {m}×{n} | {a:.1f} | {med(errors[('ours',) + key]):.5f} | {t:.1f} | {a / t:.2f}× | — | ≤ 1.0× |")
lines += ["", f"Truncated errors ‖A − U·S·Vᵀ‖/‖A‖: ours {med(errors[('ours',) + key]):.5f}, "
          f"torch.svd_lowrank(q={k}, niter=2) {med(errors[('torch',) + key]):.5f}, "
          f"best rank-{k} (from A's known factors) {med(errors[('best',) + key]):.5f} here, "
          f"{med(errors[('best-reference',) + key]):.5f} in the reference's own matrix."]
text = "\n".join(lines)
print(text)
if out:
    write_results(out, text)
