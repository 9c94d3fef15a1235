#!/usr/bin/env bash
# The whole GPU verification in one device call (about 5-8 minutes on an H100/H200).
#
# Here (no GPU needed):  Benchmarks/scripts/gpu_stage.sh      (about 1 minute; .device/ comes to about 55 MB)
# There, one `run` call:  carry: [".device"], timeout_s: 590 (the step limits below add up to about 530 s),
#                         command: bash Benchmarks/scripts/gpu_check.sh
# Everything lands in $OUT (7 files): summary.txt (nvidia-smi, where the CUDA libraries are, `lora info --device cuda`,
# every bench table and each step's exit code and time), info.json, tests.log (the whole suite, verbose: each test
# passed/skipped/failed), tests.xml, gemm.json (fp32/TF32/bf16 at 64³, 4096³, 8192³), svd.json, torch.json (the
# PyTorch side by side, Benchmarks/scripts/compare_gemm_cuda.py). Each step has its own time limit and a failing step
# does not stop the others.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/gpu-out}
mkdir -p "$OUT"
summary=$OUT/summary.txt
export LORA_KERNEL_CACHE=${LORA_KERNEL_CACHE:-/tmp/lora-kernel-cache}
: > "$summary"

step() { # step NAME SECONDS COMMAND...: runs it with a limit, appends its output and exit code to the summary
  local name=$1 limit=$2; shift 2
  local start=$SECONDS
  echo "=== $name" >> "$summary"
  timeout "$limit" "$@" >> "$summary" 2>&1
  local rc=$?
  echo "=== $name: exit $rc after $((SECONDS - start)) s" >> "$summary"
  echo "$name: exit $rc after $((SECONDS - start)) s" >&2
}

step "nvidia-smi" 20 nvidia-smi
step "CUDA libraries" 30 bash -c 'ls /usr/local/cuda*/lib64 2>/dev/null | grep -E "cublas|cusolver|nvrtc" | head -20;
  python3 -c "import nvidia, os; [print(os.path.join(p, d)) for p in nvidia.__path__ for d in sorted(os.listdir(p))]" 2>&1 | head -40'
step "lora info --device cuda" 45 bash .device/run.sh lora info --device cuda --json "$OUT/info.json"
if ! grep -q '"chosen": "cuda"' "$OUT/info.json" 2>/dev/null; then
  # The resolver did not find the libraries on its own (a finding to fix): point it at PyTorch's wheels so that the
  # rest of the check still runs, and say so.
  wheels=$(python3 -c "import nvidia, os; print(next(os.path.join(p, 'cu13', 'lib') for p in nvidia.__path__ if os.path.isdir(os.path.join(p, 'cu13', 'lib'))))" 2>/dev/null)
  if [[ -n $wheels ]]; then
    export LORA_CUDA_LIB_DIR=$wheels
    echo "=== NOTE: CUDA not chosen by discovery alone; retrying with LORA_CUDA_LIB_DIR=$wheels" >> "$summary"
    step "lora info --device cuda (LORA_CUDA_LIB_DIR)" 45 bash .device/run.sh lora info --device cuda --json "$OUT/info.json"
  fi
fi

start=$SECONDS
timeout 180 bash .device/run.sh LoraRuntime.Tests -reporter verbose -noColor -xml "$OUT/tests.xml" > "$OUT/tests.log" 2>&1
echo "=== tests: exit $? after $((SECONDS - start)) s; $(grep -E 'Total: ' "$OUT/tests.log" | tail -n 1)" >> "$summary"
grep -E '\[FAIL\]' "$OUT/tests.log" | head -50 >> "$summary"

shapes=64x64x64,4096x4096x4096,8192x8192x8192
for precision in fp32 tf32 bf16; do
  step "bench gemm $precision" 60 bash .device/run.sh lora bench gemm --device cuda --precision "$precision" \
    --shapes "$shapes" --warmup 3 --reps 20 --json "$OUT/gemm-$precision.json"
done
python3 - "$OUT" <<'PY'
import json, os, sys
out = sys.argv[1]
records = []
for p in ("fp32", "tf32", "bf16"):
    path = os.path.join(out, f"gemm-{p}.json")
    if os.path.exists(path):
        records += json.load(open(path))
        os.remove(path)
json.dump(records, open(os.path.join(out, "gemm.json"), "w"), indent=2)
PY
step "bench svd" 60 bash .device/run.sh lora bench svd --device cuda --warmup 1 --reps 5 --json "$OUT/svd.json"
step "torch side by side" 75 python3 Benchmarks/scripts/compare_gemm_cuda.py --json "$OUT/torch.json"
echo "done in $SECONDS s" >> "$summary"
