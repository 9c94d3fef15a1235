"""Data-parallel scaling on one machine: one process with one thread, one process with two threads, and
`mpirun -np 2` (one thread a rank, each bound to a core), alternating, for LoRA fine-tuning and for full pre-training
of the same Llama-style model, the same global batch. Each run's figure is `ms_per_iter_median` of `--json` (the
first steps left out) and `allreduce_ms_median`; the table gives the medians over the rounds, steps/s, the speed-up
over one thread and the allreduce's share of the step.

Then the arithmetic for more machines: a ring allreduce moves 2(N-1)/N of the gradient's bytes through each rank's
link, so at 10 and 100 Gbit/s it takes that over the bandwidth (plus 2(N-1) latencies of ~10 us, TCP); with the
global batch fixed, each of N machines computes B/N sequences. Printed for N = 2, 4, 8, 16 from the one-thread
step time measured here.

    python3 Benchmarks/scripts/mpi_scaling.py --rounds 3 --out Benchmarks/results/mpi-scaling-cpu.md
"""
import argparse, json, os, shutil, statistics, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
CORPUS = os.path.join(ROOT, "Cli", "Data", "tinyshakespeare.txt")


def cpu_name():
    """The model name with its family and model numbers (a VM may name only the vendor), and the widest SIMD flag."""
    fields = {}
    try:
        for line in open("/proc/cpuinfo"):
            key, _, value = line.partition(":")
            fields.setdefault(key.strip(), value.strip())
    except OSError:
        return "unknown"
    flags = fields.get("flags", "").split()
    simd = next((f for f in ("avx512_bf16", "avx512f", "avx2") if f in flags), "no AVX2")
    return f"{fields.get('model name', 'unknown')} (family {fields.get('cpu family', '?')}, model {fields.get('model', '?')}, {simd})"


def run(cmd, env=None):
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stdout[-1500:]}\n{result.stderr[-1500:]}")
    return result.stdout


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--iters", type=int, default=40)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--embd", type=int, default=384)
    p.add_argument("--heads", type=int, default=6)
    p.add_argument("--block", type=int, default=128)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--lora", default=f"dotnet {os.path.join(ROOT, 'Cli/bin/Release/net10.0/lora.dll')}")
    p.add_argument("--out", help="also write the tables (Markdown) here")
    a = p.parse_args()
    lora = a.lora.split()
    mpirun = shutil.which("mpirun") or sys.exit("mpirun not found: install Debian's openmpi-bin")
    env = dict(os.environ, LORA_DEVICE="cpu")
    if os.geteuid() == 0:
        env.update(OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    work = tempfile.mkdtemp(prefix="lora-mpi-scaling-")
    shape = ["--arch", "llama", "--layers", str(a.layers), "--embd", str(a.embd), "--heads", str(a.heads), "--block", str(a.block)]
    base = os.path.join(work, "base")
    run(lora + ["train", "--data", CORPUS, "--out", base, "--iters", "1", "--batch", "1", "--eval-every", "1", "--eval-iters", "1"] + shape, env)
    common = ["--iters", str(a.iters), "--batch", str(a.batch), "--eval-every", str(a.iters), "--eval-iters", "1", "--warmup", "5"]
    workloads = {
        "LoRA fine-tuning": ["finetune", "--base", base, "--data", CORPUS, "--rank", str(a.rank), "--targets", "q,k,v,o"] + common,
        "pre-training": ["train", "--data", CORPUS] + shape + common,
    }
    setups = {
        "1 process, 1 thread": (lambda cmd: lora + cmd, dict(env, LORA_NUM_THREADS="1")),
        "1 process, 2 threads": (lambda cmd: lora + cmd, dict(env, LORA_NUM_THREADS="2")),
        "2 ranks (mpirun), 1 thread each": (lambda cmd: [mpirun, "-np", "2", "--bind-to", "core"] + lora + cmd, env),
    }
    results = {}
    for name, cmd in workloads.items():
        for r in range(a.rounds):
            for setup, (launch, setup_env) in setups.items():
                out = os.path.join(work, f"run-{r}")
                shutil.rmtree(out, ignore_errors=True)
                js = os.path.join(work, "run.json")
                run(launch(cmd + ["--out", out, "--json", js]), setup_env)
                with open(js) as f:
                    j = json.load(f)
                entry = results.setdefault((name, setup), {"ms": [], "reduce": [], "params": j["trained_parameters"]})
                entry["ms"].append(j["ms_per_iter_median"])
                entry["reduce"].append(j.get("allreduce_ms_median", 0))
                print(f"{name} / {setup} round {r}: {j['ms_per_iter_median']:.1f} ms/step, allreduce {j.get('allreduce_ms_median', 0):.2f} ms", flush=True)
    mpi_version = run([mpirun, "--version"]).splitlines()[0]
    lines = [f"CPU: {cpu_name()}, {os.cpu_count()} cores; {mpi_version}; model {' '.join(shape)}, global batch {a.batch} x T {a.block}, "
             f"{a.iters} steps (median of each run's steady steps, then the median over {a.rounds} alternating rounds)", ""]
    lines += ["| workload | setup | ms/step | steps/s | speed-up over 1 thread | allreduce ms | allreduce share | gradient MB |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    one_thread = {}
    for (name, setup), e in results.items():
        ms, red = statistics.median(e["ms"]), statistics.median(e["reduce"])
        if setup.startswith("1 process, 1"):
            one_thread[name] = (ms, e["params"])
        base_ms = one_thread.get(name, (ms, 0))[0]
        lines.append(f"| {name} | {setup} | {ms:.1f} | {1000 / ms:.2f} | {base_ms / ms:.2f}x | {red:.2f} | {100 * red / ms:.1f}% | {e['params'] * 4 / 1e6:.2f} |")
    lines += ["", "For N machines (global batch fixed, the step's compute split N ways; ring allreduce of the float32 gradient, "
              "2(N-1)/N of its bytes over each link plus 2(N-1) x 10 us):", "",
              "| workload | gradient MB | N | compute ms | allreduce ms at 10 Gbit/s | efficiency | allreduce ms at 100 Gbit/s | efficiency |",
              "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for name, (ms, params) in one_thread.items():
        size = params * 4
        for n in (2, 4, 8, 16):
            compute = ms / n
            cells = []
            for gbit in (10, 100):
                t = 2 * (n - 1) / n * size / (gbit * 1e9 / 8) * 1e3 + 2 * (n - 1) * 0.01
                cells += [f"{t:.2f}", f"{compute / (compute + t):.0%}"]
            lines.append(f"| {name} | {size / 1e6:.2f} | {n} | {compute:.1f} | " + " | ".join(cells) + " |")
    text = "\n".join(lines)
    print(text)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text + "\n")
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
