"""The environment the reference programs (NumPy/OpenBLAS, PyTorch) run in for a side-by-side comparison.

This workplace sets OPENBLAS_CORETYPE (and OPENBLAS_L2_SIZE) on some processors because older OpenBLAS builds
misbehave there; on a Zen 5 it pins OpenBLAS 0.3.21 to its AVX2 Haswell kernels. A fair reference runs the kernel
OpenBLAS picks for itself, so both are removed for the reference's command alone (never for tests or CI), and the
kernel it then runs is reported beside the figures.
"""
import os, subprocess

PINNED = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def reference_env():
    return {k: v for k, v in os.environ.items() if k not in PINNED}


def openblas_core():
    probe = ("import ctypes, numpy\n"
             "libs = {p for p in open('/proc/self/maps').read().split() if 'libopenblas' in p}\n"
             "lib = ctypes.CDLL(libs.pop()); lib.openblas_get_corename.restype = ctypes.c_char_p\n"
             "print(lib.openblas_get_corename().decode())")
    try:
        res = subprocess.run(["/usr/bin/python3", "-c", probe], env=reference_env(), capture_output=True, text=True, timeout=60)
        return res.stdout.strip() or "unknown (no OpenBLAS loaded: NumPy may run netlib's reference BLAS)"
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
