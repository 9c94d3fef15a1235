"""The environment the reference programs (NumPy/OpenBLAS, PyTorch) run in for a side-by-side comparison.

This workplace sets OPENBLAS_CORETYPE (and OPENBLAS_L2_SIZE) on some processors because older OpenBLAS builds
misbehave there; on a Zen 5 it pins OpenBLAS 0.3.21 to its AVX2 Haswell kernels. A fair reference runs the best kernel
for the CPU, so both are removed for the reference's command alone (never for tests or CI); where OpenBLAS then falls
back to a generic kernel (0.3.21 on an Intel model newer than it knows), the kernel is chosen from the CPU's flags.
NumPy must run OpenBLAS, not netlib's reference BLAS. The kernel, why, and OpenBLAS's version go beside every figure.
"""
import os, subprocess

PINNED = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")

# OpenBLAS's generic fallbacks: what 0.3.21 picks on an Intel model newer than it knows (Sapphire and Emerald Rapids).
GENERIC = {"prescott", "katmai", "coppermine", "northwood", "banias", "core2", "penryn", "dunnington", "nehalem"}

_chosen = None


def cpu_flags():
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def kernel_for_flags(flags):
    """The OpenBLAS kernel a CPU with these flags should run: Cooperlake with avx512_bf16, SkylakeX with avx512f, Haswell with avx2."""
    if "avx512_bf16" in flags:
        return "COOPERLAKE"
    if "avx512f" in flags:
        return "SKYLAKEX"
    if "avx2" in flags:
        return "HASWELL"
    return None


def _probe(env):
    """(core name, OpenBLAS config) of the OpenBLAS NumPy loads under env, or (None, why) when NumPy loads none."""
    probe = ("import ctypes, numpy\n"
             "libs = {p for p in open('/proc/self/maps').read().split() if 'libopenblas' in p}\n"
             "if not libs: print('NONE'); raise SystemExit\n"
             "lib = ctypes.CDLL(libs.pop()); lib.openblas_get_corename.restype = ctypes.c_char_p\n"
             "lib.openblas_get_config.restype = ctypes.c_char_p\n"
             "print(lib.openblas_get_corename().decode()); print(lib.openblas_get_config().decode())")
    res = subprocess.run(["/usr/bin/python3", "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    lines = res.stdout.strip().splitlines()
    if not lines or lines[0] == "NONE":
        return None, res.stderr.strip() or "NumPy loads no OpenBLAS"
    return lines[0], lines[1] if len(lines) > 1 else ""


def reference_env():
    """
    The reference's environment: the workplace's pins removed so that OpenBLAS picks its own kernel — unless it then
    falls back to a generic one the CPU is far past (0.3.21 on Sapphire/Emerald Rapids picks Prescott, 60 GFLOP/s
    against ~300), in which case the kernel the CPU's flags call for is named. Refuses a NumPy without OpenBLAS
    (netlib's reference BLAS would make every ratio meaningless): install Debian's libopenblas0-pthread.
    """
    global _chosen
    env = {k: v for k, v in os.environ.items() if k not in PINNED}
    if _chosen is None:
        core, config = _probe(env)
        if core is None:
            if "No module named 'numpy'" in config:
                raise SystemExit("no reference: /usr/bin/python3 has no NumPy; install python3-numpy and libopenblas0-pthread (Debian)")
            raise SystemExit(f"the reference is not fair: {config}; install libopenblas0-pthread (else NumPy runs netlib's reference BLAS)")
        wanted = kernel_for_flags(cpu_flags())
        if core.lower() in GENERIC and wanted:
            _chosen = (wanted, f"{wanted} (OPENBLAS_CORETYPE from the CPU's flags: OpenBLAS picked {core})", config)
        else:
            _chosen = (None, f"{core} (picked by OpenBLAS)", config)
    if _chosen[0]:
        env["OPENBLAS_CORETYPE"] = _chosen[0]
    return env


def openblas_core():
    """The kernel the reference runs, and why, with OpenBLAS's version: to print beside every figure."""
    try:
        reference_env()
        return f"{_chosen[1]}; {_chosen[2]}"
    except SystemExit:
        raise
    except Exception as e:  # the figures still stand; only the label is missing
        return f"unknown ({e})"


def write_results(out, text):
    """Writes a comparison's table to out atomically (a temporary file, then a rename), making its folder."""
    folder = os.path.dirname(out)
    if folder:
        os.makedirs(folder, exist_ok=True)
    with open(out + ".tmp", "w") as f:
        f.write(text + "\n")
    os.replace(out + ".tmp", out)
