"""This machine: the speed every time in the docs is given beside, and TensorFlow's start-up log level.

    python machine.py        # prints: machine: <cores> cores, <G> GFLOP/s float32 matmul (numpy, 1 s)

A time measured on one machine says little about another; the GFLOP/s of a float32 matmul, measured in about
a second, does: training and inference are mostly convolutions, which run at a steady share of it
(bench/model_bench.py: 68-82%). quickstart.sh prints it first, and the docs give it beside each time.
"""
import importlib.abc
import importlib.machinery
import os
import re
import sys
import tempfile
import time

import numpy as np

MATMUL_SIZE = 1024  # side of the square float32 matmul: 2.1 GFLOP per run, tens of ms on a CPU
MATMUL_SECONDS = 1.0  # how long matmul_gflops keeps measuring


def matmul_gflops(seconds=MATMUL_SECONDS, size=MATMUL_SIZE):
    """GFLOP/s of numpy's float32 [size, size] x [size, size] matmul (2 size^3 FLOP per run) on this machine:
    the best of the runs that fit in `seconds` after one warm-up run, all of numpy's BLAS threads working.
    The best run, not the mean: other jobs on the machine slow some runs, and the peak is what describes
    the hardware."""
    rng = np.random.RandomState(0)
    a = rng.standard_normal((size, size)).astype(np.float32)
    b = rng.standard_normal((size, size)).astype(np.float32)
    np.dot(a, b)  # the first run allocates and starts the BLAS threads
    best, deadline = float('inf'), time.perf_counter() + seconds
    while True:
        start = time.perf_counter()
        np.dot(a, b)
        end = time.perf_counter()
        best = min(best, end - start)
        if end >= deadline:
            break
    return 2.0 * size ** 3 / best / 1e9


def has_bfloat16(cpuinfo='/proc/cpuinfo'):
    """True if the CPU has bfloat16 instructions (x86 AVX512_BF16 or AMX-BF16, ARM bf16), False if not, None
    where `cpuinfo` cannot be read or lists no flags (not Linux): config.CPU_BFLOAT16 pays only with them."""
    try:
        with open(cpuinfo, encoding='ascii') as f:
            lines = [line for line in f if line.startswith(('flags', 'Features'))]  # x86, ARM
    except (OSError, ValueError):  # no such file, not text
        return None
    if not lines:
        return None
    flags = set(' '.join(line.partition(':')[2] for line in lines).split())
    return bool(flags & {'avx512_bf16', 'amx_bf16', 'bf16'})


def describe(seconds=MATMUL_SECONDS):
    """'<cores> cores, <G> GFLOP/s float32 matmul (numpy)': the line docs and benchmarks print beside times."""
    return '%d cores, %.0f GFLOP/s float32 matmul (numpy)' % (os.cpu_count() or 1, matmul_gflops(seconds))


# What TensorFlow's libraries write to stderr while they load, before absl logging is set up, whatever
# TF_CPP_MIN_LOG_LEVEL says (seen with TF 2.21 on CPUs where oneDNN is on by default: AVX512_VNNI and newer).
_LOAD_NOISE = re.compile(r'^(I\d{4} \S+ +\d+ \S+\] .*|WARNING: All log messages before absl::InitializeLog\(\) '
                         r'is called are written to STDERR)$')


class _QuietLoad(importlib.abc.MetaPathFinder):
    """Finds `tensorflow` as the other finders do and loads it with file descriptor 2 caught: what the C++
    libraries write while loading is written back to stderr, but for _LOAD_NOISE's INFO lines. TensorFlow is
    still imported where and when the program imports it."""

    def find_spec(self, name, path=None, target=None):
        if name != 'tensorflow':
            return None
        sys.meta_path.remove(self)  # once, and not for the look-up below
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        sys.stderr.flush()
        saved = os.dup(2)
        with tempfile.TemporaryFile() as caught:
            os.dup2(caught.fileno(), 2)
            try:
                self.loader.exec_module(module)
            finally:
                os.dup2(saved, 2)
                os.close(saved)
                caught.seek(0)
                lines = caught.read().decode('utf-8', 'replace').splitlines(True)
                kept = ''.join(line for line in lines if not _LOAD_NOISE.match(line.rstrip('\n')))
                if kept:
                    sys.stderr.write(kept)
                    sys.stderr.flush()


def quiet_tensorflow():
    """Hides TensorFlow's C++ INFO lines (absl::InitializeLog, oneDNN, cpu_feature_guard's 'rebuild TensorFlow',
    MLIR V1 optimization pass) that every program would start with; its warnings and errors still show. Call it
    before TensorFlow is imported: the C++ side reads TF_CPP_MIN_LOG_LEVEL once, and the lines written while
    its libraries load ignore it, so those are filtered out of that import (_QuietLoad). A level the user set
    wins, and then nothing is filtered."""
    if 'TF_CPP_MIN_LOG_LEVEL' in os.environ:
        return
    os.environ['TF_CPP_MIN_LOG_LEVEL'] = '1'
    if 'tensorflow' not in sys.modules and not any(isinstance(f, _QuietLoad) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietLoad())


if __name__ == '__main__':
    print('machine: %s' % describe())
    sys.exit(0)
