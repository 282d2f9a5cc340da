"""Cost of TensorFlow's multi-worker runtime: train.py as 1 process and as 2 TF_CONFIG workers on this machine.

Both runs train the same global batch from random weights (`python train.py` itself, in subprocesses, on the
real COCO sample or a synthetic set without it). The 2 workers share this machine's cores and talk over
127.0.0.1, so this measures the runtime's overhead (collective all-reduce of the loss sums and gradients,
two processes), not a speed-up: on two machines each worker would have its own cores. Seconds per step are
the times between the chief's progress lines (LOG_EVERY=1) as they arrive, leaving out the first --warmup
steps.

Usage: python bench/multiworker_bench.py [--steps 6] [--warmup 2] [--batch-size 4] [--depth 50] [--input-size 129]
Last line: `multiworker: 2 workers <s> s per step, 1 worker <t> s per step, overhead <p>%`
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [REPO_DIR, os.path.join(REPO_DIR, 'bench')]
import distributed  # noqa: E402
from train_bench import training_data  # noqa: E402
TIMEOUT = 3600  # s for one run, so that a stuck worker cannot hang the benchmark
STEP_LINE = re.compile(r'^step (\d+)/\d+ ')


def run(command, workers, warmup, log_dir):
    """Seconds per step after `warmup` of `command` as one process (workers=1) or a TF_CONFIG cluster: the
    time between the chief's successive progress lines (LOG_EVERY=1), taken as they arrive."""
    addresses = ['127.0.0.1:%d' % p for p in distributed.free_local_ports(workers)]
    processes, logs = [], []
    for index in range(workers):
        env = dict(os.environ)
        if workers > 1:
            env[distributed.ENV_NAME] = distributed.tf_config(addresses, index)
        logs.append(open(os.path.join(log_dir, 'worker%d.log' % index), 'w+'))
        processes.append(subprocess.Popen(command, cwd=REPO_DIR, env=env, stderr=subprocess.STDOUT, text=True,
                                          stdout=subprocess.PIPE if index == 0 else logs[-1]))
    watchdog = threading.Timer(TIMEOUT, lambda: [p.kill() for p in processes])
    watchdog.start()
    times, lines = {}, []
    try:
        for line in processes[0].stdout:
            lines.append(line)
            match = STEP_LINE.match(line)
            if match:
                times[int(match.group(1))] = time.perf_counter()
        for process in processes:
            process.wait()
    finally:
        watchdog.cancel()
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    for index, process in enumerate(processes):
        if process.returncode:
            logs[index].seek(0)
            output = ''.join(lines) if index == 0 else logs[index].read()
            raise RuntimeError('worker %d: train.py exited with %d:\n%s' % (index, process.returncode,
                                                                             output[-3000:]))
    for log in logs:
        log.close()
    steps = sorted(times)
    return np.array([times[b] - times[a] for a, b in zip(steps, steps[1:]) if a >= warmup])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--steps', type=int, default=6, help='measured steps')
    parser.add_argument('--warmup', type=int, default=2, help='first steps left out')
    parser.add_argument('--batch-size', type=int, default=4, help='global batch of both runs')
    parser.add_argument('--depth', type=int, default=50)
    parser.add_argument('--input-size', type=int, default=129)
    parser.add_argument('--workers', type=int, default=1, help='input worker processes of each run')
    args = parser.parse_args(argv)

    work_dir = tempfile.mkdtemp(prefix='multiworker_bench_')
    try:
        annotations, images, description = training_data(work_dir)
        print('data: %s; ResNet-v2-%d, input %dx%d, global batch %d, %d CPU cores'
              % (description, args.depth, args.input_size, args.input_size, args.batch_size, os.cpu_count()))
        results = {}
        for workers in (1, 2):
            command = [sys.executable, 'train.py', '--train-dir', os.path.join(work_dir, 'run%d' % workers),
                       '--annotations', annotations, '--images', images, '--from-scratch',
                       '--depth', str(args.depth), '--input-size', str(args.input_size),
                       '--batch-size', str(args.batch_size), '--workers', str(args.workers),
                       '--steps', str(args.warmup + args.steps), '--checkpoint-every', str(10 ** 9),
                       '--set', 'LOG_EVERY=1', '--set', 'SUMMARY_EVERY=%d' % 10 ** 9]
            seconds = run(command, workers, args.warmup, work_dir)
            results[workers] = seconds.mean()
            print('%d worker(s): %.3f s per step (min %.3f, max %.3f) over %d steps'
                  % (workers, seconds.mean(), seconds.min(), seconds.max(), len(seconds)))
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    print('multiworker: 2 workers %.3f s per step, 1 worker %.3f s per step, overhead %.1f%%'
          % (results[2], results[1], 100.0 * (results[2] / results[1] - 1.0)))
    return 0


if __name__ == '__main__':
    sys.exit(main())
