#!/usr/bin/env python3
"""PyTorch side by side for `lora bench gemm/svd --device cuda` (run on the GPU machine by gpu_check.sh).

  python3 Benchmarks/scripts/compare_gemm_cuda.py --json $OUT/torch.json

GEMM: torch.matmul at the shapes gpu_check.sh benchmarks, as fp32 (TF32 off), tf32 (TF32 on, fp32 storage: the
same arithmetic as our CUBLAS_COMPUTE_32F_FAST_TF32) and bf16 (bf16 storage, unlike ours, which keeps fp32 storage
and rounds inside cuBLAS), timed with CUDA events: median of `reps` calls after `warmup`. SVD: torch.linalg.svd
(full_matrices=False) of Gaussian n×n float32 matrices, and torch.svd_lowrank of a 4096×4096 matrix with singular
values 0.8^i at rank 16 (q = 16 + 10, niter = 2, as our defaults).
"""
import json, statistics, sys, datetime
import torch

out = sys.argv[sys.argv.index("--json") + 1] if "--json" in sys.argv else None
device = torch.device("cuda")
records = []

def timed(fn, warmup, reps):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)

gemm_shapes = [(64, 64, 64), (4096, 4096, 4096), (8192, 8192, 8192)]
for precision in ("fp32", "tf32", "bf16"):
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    for m, n, k in gemm_shapes:
        gen = torch.Generator(device=device).manual_seed(1234)
        a = (torch.rand(m, k, device=device, generator=gen) * 2 - 1).to(dtype)
        b = (torch.rand(k, n, device=device, generator=gen) * 2 - 1).to(dtype)
        c = torch.empty(m, n, device=device, dtype=dtype)
        reps = 200 if m <= 64 else 20
        ms = timed(lambda: torch.matmul(a, b, out=c), 5, reps)
        ref = torch.matmul(a.double(), b.double())
        err = ((c.double() - ref).norm() / ref.norm()).item()
        records.append({"op": f"torch.matmul-{precision}", "device": torch.cuda.get_device_name(), "shape": [m, n, k],
                        "median_ms": ms, "gflops": 2 * m * n * k / ms / 1e6, "reps": reps, "rel_err": err})
        print(f"matmul {precision} {m}x{n}x{k}: {ms:.3f} ms, {2 * m * n * k / ms / 1e9:.1f} TFLOP/s, rel err {err:.1e}", file=sys.stderr)
        del a, b, c, ref
torch.backends.cuda.matmul.allow_tf32 = False

for n in (256, 512, 1024):
    gen = torch.Generator(device=device).manual_seed(n)
    a = torch.randn(n, n, device=device, generator=gen)
    ms = timed(lambda: torch.linalg.svd(a, full_matrices=False), 2, 5)
    u, s, vh = torch.linalg.svd(a, full_matrices=False)
    err = ((u * s) @ vh - a).norm().item() / a.norm().item()
    records.append({"op": "torch.linalg.svd", "device": torch.cuda.get_device_name(), "shape": [n, n], "median_ms": ms,
                    "reps": 5, "rel_err": err})
    print(f"svd {n}x{n}: {ms:.3f} ms, rel err {err:.1e}", file=sys.stderr)

m, n, r = 4096, 4096, 16
gen = torch.Generator(device=device).manual_seed(7)
q1, _ = torch.linalg.qr(torch.randn(m, 60, device=device, generator=gen, dtype=torch.float64))
q2, _ = torch.linalg.qr(torch.randn(n, 60, device=device, generator=gen, dtype=torch.float64))
sv = 0.8 ** torch.arange(60, device=device, dtype=torch.float64)
a = ((q1 * sv) @ q2.T).float()
ms = timed(lambda: torch.svd_lowrank(a, q=r + 10, niter=2), 2, 5)
u, s, v = torch.svd_lowrank(a, q=r + 10, niter=2)
u, s, v = u[:, :r], s[:r], v[:, :r]
err = ((u * s) @ v.T - a).norm().item() / a.norm().item()
best = (sv[r:] ** 2).sum().sqrt().item() / (sv ** 2).sum().sqrt().item()
records.append({"op": "torch.svd_lowrank", "device": torch.cuda.get_device_name(), "shape": [m, n, r], "median_ms": ms,
                "reps": 5, "rel_err": err, "best_rel_err": best})
print(f"svd_lowrank {m}x{n} rank {r}: {ms:.3f} ms, rel err {err:.5f} (best {best:.5f})", file=sys.stderr)

meta = {"date": str(datetime.date.today()), "torch": torch.__version__, "cuda": torch.version.cuda, "device": torch.cuda.get_device_name()}
if out:
    with open(out, "w") as f:
        json.dump({"meta": meta, "records": records}, f, indent=2)
print(json.dumps(meta))
