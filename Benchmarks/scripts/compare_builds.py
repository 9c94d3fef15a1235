#!/usr/bin/env python3
"""A/B of two builds of the `lora` command on the same machine, alternating for several rounds: the serving step
(`lora bench serve`: 32 distinct adapters, one adapter, the loop over adapters), the embedded latency of gpt2-small
(`lora bench latency`: prefill of 32 tokens and a decode step, p50, base and with an adapter), and the training and
LoRA fine-tuning steps of `lora train` / `lora finetune` (the recipe of compare_train.py). Medians of the per-run
figures, and new / base.

  /usr/bin/python3 Benchmarks/scripts/compare_builds.py --base DIR --new DIR [--rounds 3] [--iters 300] [--out FILE]

DIR is a folder holding a built `lora` (e.g. Cli/bin/Release/net10.0 of each checkout, copied aside).
"""
import json, os, statistics, subprocess, sys, tempfile, datetime, platform
from anchor_env import write_results

root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
data = os.path.join(os.path.dirname(root), "shared", "data", "tinyshakespeare.txt")
arg = lambda name, default: type(default)(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default
builds = {"base": arg("--base", ""), "new": arg("--new", "")}
rounds, iters, out = arg("--rounds", 3), arg("--iters", 300), arg("--out", "")
if not all(builds.values()):
    sys.exit("usage: compare_builds.py --base DIR --new DIR [--rounds 3] [--iters 300] [--out FILE]")
work = tempfile.mkdtemp()
figures = {}  # (figure, build) -> [per-run values]

def run(build, args):
    subprocess.run([os.path.join(builds[build], "lora")] + args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

def add(name, build, value):
    figures.setdefault((name, build), []).append(value)

def serve(build):
    path = os.path.join(work, f"serve-{build}.json")
    run(build, ["bench", "serve", "--adapters", "1,32", "--json", path])
    rows = json.load(open(path))
    mixed = {r["shape"][1]: r["median_ms"] for r in rows if r["op"] == "decode_mixed"}
    loop = next(r["median_ms"] for r in rows if r["op"] == "decode_loop")
    add("serve: 32 adapters, ms/step", build, mixed[32])
    add("serve: 1 adapter, ms/step", build, mixed[1])
    add("serve: loop / 32 adapters (×)", build, loop / mixed[32])
    add("serve: 32 adapters / 1 adapter throughput (×)", build, mixed[1] / mixed[32])

def latency(build):
    path = os.path.join(work, f"latency-{build}.json")
    run(build, ["bench", "latency", "--models", "gpt2-small", "--json", path])
    for r in json.load(open(path)):
        op = "prefill 32" if r["op"] == "forward" else "decode"
        add(f"gpt2-small {op} p50 ms, {r['adapter']}", build, r["p50_ms"])

base_model = os.path.join(work, "base-model")
run("new", ["train", "--data", data, "--out", base_model, "--iters", "20", "--eval-every", "20"])

def train(build, i):
    for kind in ("full", "lora"):
        summary = os.path.join(work, f"{kind}-{build}-{i}.json")
        common = ["--data", data, "--iters", str(iters), "--eval-every", str(iters), "--json", summary]
        if kind == "full":
            cmd = ["train", "--out", os.path.join(work, f"full-{build}-{i}")] + common
        else:
            cmd = ["finetune", "--base", base_model, "--out", os.path.join(work, f"adapter-{build}-{i}"), "--rank", "8",
                   "--alpha", "16", "--targets", "qkv,o,fc,proj"] + common
        run(build, cmd)
        add(f"{'training' if kind == 'full' else 'LoRA'} step ms", build, json.load(open(summary))["ms_per_iter_median"])

for i in range(rounds):
    order = ("base", "new") if i % 2 == 0 else ("new", "base")
    for build in order: serve(build)
    for build in order: latency(build)
    for build in order: train(build, i)
    print(f"round {i + 1}/{rounds} done", file=sys.stderr)

cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
lines = [f"A/B of two builds, {rounds} alternating rounds, median of per-run figures ({datetime.date.today()}, {cpu}, "
         f"{os.cpu_count()} cores)", "", f"base: {builds['base']}  ", f"new: {builds['new']}", "",
         "| figure | base | new | new / base |", "| --- | ---: | ---: | ---: |"]
for name in dict.fromkeys(k[0] for k in figures):
    b, n = statistics.median(figures[(name, "base")]), statistics.median(figures[(name, "new")])
    lines.append(f"| {name} | {b:.2f} | {n:.2f} | {n / b:.3f} |")
lines += ["", "per run: " + "; ".join(f"{k[1]} {k[0]}: " + ", ".join(f"{x:.2f}" for x in v) for k, v in figures.items())]
text = "\n".join(lines)
print(text)
if out:
    write_results(out, text)
