#!/usr/bin/env python3
"""Side by side: a training step and a LoRA fine-tuning step of `lora train` / `lora finetune` against PyTorch's CPU
build running the same model and recipe (../shared/anchors/torch_gpt_char.py), alternating for several rounds on the
same machine; the median of the per-run medians of each, and the ratio (ours / torch; the target is ≤ 0.3).

  /usr/bin/python3 Benchmarks/scripts/compare_train.py [--rounds 3] [--iters 300] [--out Benchmarks/results/train-cpu.md]

Needs: apt-get install -y python3-numpy python3-torch. Run from the repository root with the Release CLI built
(`dotnet build Cli -c Release`). The LoRA step is rank 8, α 16, on the fused qkv, the attention output and both MLP
matrices in both programs.
"""
import json, os, re, statistics, subprocess, sys, tempfile, datetime, platform
from anchor_env import reference_env, write_results

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
shared = os.path.join(os.path.dirname(root), "shared")
anchor = os.path.join(shared, "anchors", "torch_gpt_char.py")
data = os.path.join(shared, "data", "tinyshakespeare.txt")
arg = lambda name, default: type(default)(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default
rounds, iters, out = arg("--rounds", 3), arg("--iters", 300), arg("--out", "")
lora = ["dotnet", "run", "--project", os.path.join(root, "Cli"), "-c", "Release", "--no-build", "--"]
times = {("ours", "full"): [], ("torch", "full"): [], ("ours", "lora"): [], ("torch", "lora"): []}
work = tempfile.mkdtemp()
base = os.path.join(work, "base")
subprocess.run(lora + ["train", "--data", data, "--out", base, "--iters", "20", "--eval-every", "20"],
               check=True, stdout=subprocess.DEVNULL)

def ours(kind, i):
    summary = os.path.join(work, f"{kind}-{i}.json")
    common = ["--data", data, "--iters", str(iters), "--eval-every", str(iters), "--json", summary]
    if kind == "full":
        cmd = ["train", "--out", os.path.join(work, f"full-{i}")] + common
    else:
        cmd = ["finetune", "--base", base, "--out", os.path.join(work, f"adapter-{i}"), "--rank", "8", "--alpha", "16",
               "--targets", "qkv,o,fc,proj"] + common
    subprocess.run(lora + cmd, check=True, stdout=subprocess.DEVNULL)
    times[("ours", kind)].append(json.load(open(summary))["ms_per_iter_median"])

def theirs(kind):
    cmd = ["/usr/bin/python3", anchor, "--data", data, "--iters", str(iters), "--eval-every", str(iters)]
    res = subprocess.run(cmd + (["--lora"] if kind == "lora" else []), check=True, capture_output=True, text=True,
                         env=reference_env())
    times[("torch", kind)].append(float(re.search(r"median ms/iter ([0-9.]+)", res.stdout).group(1)))

for i in range(rounds):
    for kind in ("full", "lora"):
        ours(kind, i); theirs(kind)
    print(f"round {i + 1}/{rounds}: " + ", ".join(f"{k[0]} {k[1]} {v[-1]:.1f}" for k, v in times.items()), file=sys.stderr)

import torch
lines = [f"Training steps on the CPU, {rounds} alternating rounds of {iters} steps, median of per-run medians "
         f"({datetime.date.today()}, {platform.node()}, {os.cpu_count()} cores, torch {torch.__version__})", "",
         "| step | LoraRuntime ms | PyTorch ms | ours / torch | target |", "| --- | ---: | ---: | ---: | --- |"]
for kind, label in (("full", "training step (4 layers, 128 wide, B 12, T 64)"), ("lora", "LoRA step (r 8 on qkv, o, fc, proj)")):
    a, t = statistics.median(times[("ours", kind)]), statistics.median(times[("torch", kind)])
    lines.append(f"| {label} | {a:.2f} | {t:.2f} | {a / t:.2f} | ≤ 0.30 |")
lines += ["", "per run: " + "; ".join(f"{k[0]} {k[1]}: " + ", ".join(f"{x:.1f}" for x in v) for k, v in times.items())]
text = "\n".join(lines)
print(text)
if out:
    write_results(out, text)
