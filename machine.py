"""This machine: the speed every time in the docs is given beside, and TensorFlow's start-up log level.

    python machine.py        # prints: machine: <cores> cores, <G> GFLOP/s float32 matmul (numpy, 1 s)

A time measured on one machine says little about another; the GFLOP/s of a float32 matmul, measured in about
a second, does: training and inference are mostly convolutions, which run at a steady share of it
(bench/model_bench.py: 68-82%). quickstart.sh prints it first, and the docs give it beside each time.
"""
import os
import sys
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


def describe(seconds=MATMUL_SECONDS):
    """'<cores> cores, <G> GFLOP/s float32 matmul (numpy)': the line docs and benchmarks print beside times."""
    return '%d cores, %.0f GFLOP/s float32 matmul (numpy)' % (os.cpu_count() or 1, matmul_gflops(seconds))


def quiet_tensorflow():
    """Hides TensorFlow's C++ INFO lines (absl::InitializeLog, cpu_feature_guard's 'rebuild TensorFlow', MLIR
    V1 optimization pass) that every program would start with; its warnings and errors still show. Call it
    before TensorFlow is imported: the C++ side reads TF_CPP_MIN_LOG_LEVEL once. A level the user set wins."""
    os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '1')


if __name__ == '__main__':
    print('machine: %s' % describe())
    sys.exit(0)
