"""LoraRuntime against llama.cpp on the CPU, side by side: the same random weights, one prefill and one decode step.

For each format, `lora quantize --model PRESET --format F` writes the weights `lora bench latency --models PRESET`
runs (the same seed) as a GGUF file; then rounds alternate between `lora bench latency --quantize F` and llama.cpp's
prebuilt CPU build (npm's node-llama-cpp, run by llamacpp/compare_llamacpp.mjs) on that file, and the medians of the
rounds' medians are compared: a prefill of 32 tokens into an empty sequence, and one decode step (the logits of one
new token) after 128 cached, single sequence, and with --sequences N one decode step of N sequences at once, the same
thread count. Ratio = llama.cpp's time / ours (≥ 1: we are faster). The CPU, llama.cpp's release and the CPU variant of its backend print beside the table.

    python3 Benchmarks/scripts/compare_llamacpp.py --models smollm2-135m --formats f32,bf16,q8_0,q4_0 --rounds 3
"""
import argparse, json, os, statistics, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
NODE_DIR = os.path.join(HERE, "llamacpp")


def cpu_name():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def run(cmd, **kw):
    result = subprocess.run(cmd, capture_output=True, text=True, **kw)
    if result.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed ({result.returncode}):\n{result.stderr[-2000:]}")
    return result.stdout


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--models", default="smollm2-135m")
    p.add_argument("--formats", default="f32,bf16,q8_0,q4_0")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--reps", type=int, default=30)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2)
    p.add_argument("--sequences", type=int, default=1)
    p.add_argument("--lora", default=f"dotnet {os.path.join(ROOT, 'Cli/bin/Release/net10.0/lora.dll')}")
    p.add_argument("--out", help="also write the table (Markdown) here")
    a = p.parse_args()
    if not os.path.isdir(os.path.join(NODE_DIR, "node_modules", "node-llama-cpp")):
        run(["npm", "ci", "--prefix", NODE_DIR])
    lora = a.lora.split()
    work = tempfile.mkdtemp(prefix="lora-llamacpp-")
    rows, variant, release = [], "unknown", "unknown"
    for model in a.models.split(","):
        for fmt in a.formats.split(","):
            gguf = os.path.join(work, f"{model}-{fmt}.gguf")
            run(lora + ["quantize", "--model", model, "--format", fmt, "--out", gguf, "--device", "cpu"])
            ours_prefill, ours_decode, ref_prefill, ref_decode, ours_batch, ref_batch = [], [], [], [], [], []
            for r in range(a.rounds):
                js = os.path.join(work, "lat.json")
                run(lora + ["bench", "latency", "--models", model, "--gpt2-context", "512", "--quantize", fmt, "--reps", str(a.reps),
                            "--warmup", "10", "--warmup-seconds", "1", "--device", "cpu", "--json", js, "--sequences", str(a.sequences)])
                records = json.load(open(js))
                ours_prefill.append(next(x["p50_ms"] for x in records if x["op"] == "forward" and x["adapter"] == "base"))
                ours_decode.append(next(x["p50_ms"] for x in records if x["op"] == "decode" and x["adapter"] == "base"))
                out = run(["node", os.path.join(NODE_DIR, "compare_llamacpp.mjs"), gguf, "--reps", str(a.reps), "--threads", str(a.threads),
                           "--sequences", str(a.sequences)])
                ref = json.loads(out.strip().splitlines()[-1])
                ref_prefill.append(ref["prefill_ms_p50"])
                ref_decode.append(ref["decode_ms_p50"])
                if a.sequences > 1:
                    ours_batch.append(next(x["p50_ms"] for x in records if x["op"] == "decode_batch"))
                    ref_batch.append(ref["batch_decode_ms_p50"])
                variant, release = ref.get("cpu_variant", variant), json.dumps(ref.get("llama_cpp"))
                print(f"{model} {fmt} round {r + 1}: ours prefill {ours_prefill[-1]:.2f} decode {ours_decode[-1]:.2f} ms; "
                      f"llama.cpp prefill {ref_prefill[-1]:.2f} decode {ref_decode[-1]:.2f} ms", file=sys.stderr)
            m = statistics.median
            batch = (m(ours_batch), m(ref_batch)) if ours_batch else None
            rows.append((model, fmt, m(ours_prefill), m(ref_prefill), m(ours_decode), m(ref_decode), os.path.getsize(gguf), batch))
    lines = [f"CPU: {cpu_name()}, {a.threads} threads; llama.cpp {release}, CPU backend variant {variant}; {a.rounds} alternating rounds, medians",
             "",
             "| model | format | GGUF MiB | prefill 32, ours | llama.cpp | ratio | decode step, ours | llama.cpp | ratio |"
             + (f" {a.sequences} sequences' step, ours | llama.cpp | ratio |" if a.sequences > 1 else ""),
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |" + (" --- | --- | --- |" if a.sequences > 1 else "")]
    for model, fmt, op, rp, od, rd, size, batch in rows:
        line = f"| {model} | {fmt} | {size / 1048576:.1f} | {op:.2f} ms | {rp:.2f} ms | {rp / op:.2f} | {od:.2f} ms | {rd:.2f} ms | {rd / od:.2f} |"
        if batch:
            line += f" {batch[0]:.2f} ms | {batch[1]:.2f} ms | {batch[1] / batch[0]:.2f} |"
        lines.append(line)
    text = "\n".join(lines)
    print(text)
    if a.out:
        open(a.out, "w").write(text + "\n")


if __name__ == "__main__":
    main()
