"""Training on several machines: train.py under TF_CONFIG, two worker processes on 127.0.0.1 (free ports).

A single process trains one step (module fixture); from that checkpoint one process and two workers each
train one more step on the same global batch and must agree on every variable. The two-worker train dir
then serves the stop, resume and lost-worker tests. Every subprocess and collective runs under a timeout.
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import checkpoints
import data_generator
import distributed
import train
from settings import make as make_options
from test_train import SMALL, checkpoint_values, run_cli, train_command

PROCESS_TIMEOUT = 900  # s for one worker process: TensorFlow's import and graph building on 2 busy cores
# --cluster-timeout: it must cover how much later one worker reaches the first collective than the other
# (graph building and the first step's graph optimisation, minutes on busy cores). A killed worker's closed
# socket is noticed at once; a worker that never starts only after the timeout, so that test sets a short one.
CLUSTER_TIMEOUT = 300
SETTINGS = dict(
    SMALL, BATCH_SIZE=4, NUM_WORKERS=0,
    # Batch statistics would differ between one process (4 images) and each worker (2): frozen batch norm
    # makes the two runs the same computation; gamma and beta still train.
    FREEZE_BATCH_NORM=True)


def tf_config(ports, index):
    return distributed.tf_config(['127.0.0.1:%d' % p for p in ports], index)


class Worker:
    """train.py as worker `index` of a cluster on `ports`; its output is collected by a thread."""

    def __init__(self, train_dir, settings, ports, index, extra=(), cluster_timeout=CLUSTER_TIMEOUT):
        env = dict(os.environ, TF_CONFIG=tf_config(ports, index))
        command = train_command(train_dir, settings, ['--cluster-timeout', str(cluster_timeout)] + list(extra))
        self.process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                        text=True)
        self.lines = []
        self._reader = threading.Thread(target=lambda: self.lines.extend(self.process.stdout), daemon=True)
        self._reader.start()

    @property
    def text(self):
        return ''.join(self.lines)

    def wait_for(self, text, timeout=PROCESS_TIMEOUT):
        deadline = time.monotonic() + timeout
        while not any(text in line for line in list(self.lines)):
            assert self.process.poll() is None or self._reader.is_alive(), 'exited without %r:\n%s' % (
                text, self.text[-3000:])
            assert time.monotonic() < deadline, 'no %r in %d s:\n%s' % (text, timeout, self.text[-3000:])
            time.sleep(0.2)

    def finish(self, timeout=PROCESS_TIMEOUT):
        """Exit status, once the process ended (killed after `timeout` s)."""
        try:
            self.process.wait(timeout=timeout)
        finally:
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        self._reader.join(timeout=10)
        return self.process.returncode


def run_cluster(train_dir, settings, extra=()):
    """Both workers to the end: (chief, worker 1), each finished."""
    ports = distributed.free_local_ports(2)
    workers = [Worker(train_dir, settings, ports, i, extra) for i in (0, 1)]
    for worker in workers:
        worker.finish()
    return workers


@pytest.fixture(scope='module')
def settings(tmp_path_factory):
    import synthetic
    data = synthetic.make_dataset(str(tmp_path_factory.mktemp('synthetic')), num_train=8, num_val=1,
                                  image_size=97, seed=3, log=None)
    return dict(SETTINGS, TRAIN_ANNOTATIONS=data['train_annotations'], TRAIN_IMAGES=data['train_images'])


def quiet(message, error=False):
    if error:
        print(message, file=sys.stderr)


@pytest.fixture(scope='module')
def runs(settings, tmp_path_factory):
    """Step 1 in one process, then step 2 both in one process and on two workers: their train dirs."""
    root = tmp_path_factory.mktemp('runs')
    start, one, two = (str(root / name) for name in ('start', 'one', 'two'))
    train.train(start, log=quiet, options=make_options(overrides=dict(settings, NUM_STEPS=1)))
    shutil.copytree(start, one)
    shutil.copytree(start, two)
    train.train(one, log=quiet, options=make_options(overrides=dict(settings, NUM_STEPS=2)))
    chief, other = run_cluster(two, settings, ['--steps', '2'])
    return {'start': start, 'one': one, 'two': two, 'chief': chief, 'other': other}


def test_two_workers_train_like_one_process_on_the_global_batch(runs):
    chief, other = runs['chief'], runs['other']
    assert chief.process.returncode == 0, chief.text[-3000:]
    assert other.process.returncode == 0, other.text[-3000:]
    assert 'resumed from %s' % os.path.join(runs['two'], 'model.ckpt-1') in chief.text
    one = checkpoint_values(os.path.join(runs['one'], 'model.ckpt-2'))
    two = checkpoint_values(os.path.join(runs['two'], 'model.ckpt-2'))
    before = checkpoint_values(os.path.join(runs['start'], 'model.ckpt-1'))
    assert set(one) == set(two) and two['global_step'] == 2
    moved = 0
    for name, value in one.items():
        np.testing.assert_allclose(two[name], value, rtol=1e-5, atol=1e-5, err_msg=name)
        moved += not np.array_equal(value, before[name])
    assert moved > 100  # weights, slots and averages all took the step


def test_only_the_chief_writes(runs):
    chief, other = runs['chief'], runs['other']
    assert 'step 2/2' in chief.text and 'saved' in chief.text
    assert 'step 2/2' not in other.text and 'saved' not in other.text
    assert 'worker 1 (127.0.0.1:' in other.text  # its own lines carry its name
    events = [f for f in os.listdir(runs['two']) if f.startswith('events.out.tfevents')]
    assert len(events) == 2, events  # the first process's and the chief's


def start_two_workers(runs, settings, tmp_path):
    """Two workers resuming a copy of the two-worker run for many steps, once the chief ran step 3:
    (train dir, ports, chief, worker 1)."""
    train_dir = str(tmp_path / 'run')
    shutil.copytree(runs['two'], train_dir)
    ports = distributed.free_local_ports(2)
    extra = ['--steps', '1000', '--checkpoint-every', '1000', '--set', 'LOG_EVERY=1']
    chief, other = (Worker(train_dir, settings, ports, i, extra) for i in (0, 1))
    try:
        chief.wait_for('step 3/')
    except BaseException:
        chief.process.kill()
        other.process.kill()
        raise
    return train_dir, ports, chief, other


def test_a_stop_on_one_worker_stops_both_at_one_step_and_the_run_resumes(runs, settings, tmp_path):
    train_dir, _, chief, other = start_two_workers(runs, settings, tmp_path)
    other.process.send_signal(signal.SIGTERM)
    codes = [chief.finish(), other.finish()]
    assert codes == [130, 130], chief.text[-3000:] + other.text[-3000:]
    assert 'resumed from %s' % os.path.join(train_dir, 'model.ckpt-2') in chief.text
    steps = [int(w.text.split('stopped by ')[1].split('at step ')[1].split(';')[0]) for w in (chief, other)]
    assert steps[0] == steps[1] >= 3, steps
    assert 'stopped by SIGTERM' in other.text and 'stopped by a stop on another worker' in chief.text
    saved = os.path.join(train_dir, 'model.ckpt-%d' % steps[0])
    assert checkpoint_values(saved)['global_step'] == steps[0]


def test_a_killed_worker_stops_the_other_naming_it(runs, settings, tmp_path):
    train_dir, ports, chief, other = start_two_workers(runs, settings, tmp_path)
    other.process.kill()
    codes = [chief.finish(), other.finish()]
    assert codes[0] == distributed.LOST_EXIT_STATUS, chief.text[-3000:]
    assert 'worker 1 (127.0.0.1:%d) is gone' % ports[1] in chief.text, chief.text[-3000:]
    # The newest checkpoint stays the one the run started from: a half-done step is not saved.
    assert checkpoints.checkpoint_step(train_dir) == 2


def test_a_worker_that_never_starts_stops_the_chief_naming_it(settings, tmp_path):
    ports = distributed.free_local_ports(2)
    chief = Worker(str(tmp_path / 'run'), settings, ports, 0, ['--steps', '1'], cluster_timeout=20)
    assert chief.finish() == distributed.LOST_EXIT_STATUS, chief.text[-3000:]
    assert 'worker 1 (127.0.0.1:%d) is gone' % ports[1] in chief.text, chief.text[-3000:]
    assert checkpoints.checkpoint_step(str(tmp_path / 'run')) is None


def test_shards_deal_the_single_process_batches(settings):
    """Worker i's batch k is block i of the single process's batch k (same shuffles, each its own samples)."""
    dataset = data_generator.CocoPersons(settings['TRAIN_ANNOTATIONS'], settings['TRAIN_IMAGES'])

    def batches(batch_size, shard):
        generator = data_generator.SampleGenerator(dataset, batch_size, 33, 16, num_workers=0, seed=5,
                                                   shard=shard)
        with generator:
            stream = iter(generator)
            return [next(stream) for _ in range(5)]  # 5 x 4 samples of 8 images: across an epoch boundary

    whole = batches(4, None)
    shards = [batches(2, (i, 2)) for i in (0, 1)]
    for k, batch in enumerate(whole):
        for name in batch:
            np.testing.assert_array_equal(np.concatenate([shards[0][k][name], shards[1][k][name]]), batch[name])
    assert not np.array_equal(shards[0][0]['image'], shards[1][0]['image'])


def test_tf_config_errors_come_before_tensorflow(settings, tmp_path):
    args = ['--train-dir', str(tmp_path / 'run'), '--annotations', settings['TRAIN_ANNOTATIONS'],
            '--images', settings['TRAIN_IMAGES'], '--from-scratch', '--batch-size', '4']
    cases = {
        '{"cluster": {"worker": ["127.0.0.1:1"]}, "task": ': 'TF_CONFIG is not valid JSON',
        tf_config([2222, 2223], 2): 'task.index 2 is not one of the 2 workers',
        tf_config([2222, 2223, 2224], 0): 'BATCH_SIZE (4, the global batch) must be a multiple of the 3 workers',
        json.dumps({'cluster': {'worker': ['a:1'], 'ps': ['b:2']}, 'task': {'type': 'worker', 'index': 0}}):
            'only "worker" tasks',
    }
    for value, message in cases.items():
        result = run_cli(args, tmp_path, env=dict(os.environ, TF_CONFIG=value))
        assert result.returncode == 2, result.stderr
        assert 'TENSORFLOW_IMPORTED=False' in result.stdout
        assert message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert not os.path.exists(str(tmp_path / 'run'))


def test_a_port_in_use_is_named(settings, tmp_path):
    holder = socket.socket()
    holder.bind(('', 0))
    holder.listen(1)
    try:
        port = holder.getsockname()[1]
        cluster = distributed.parse_tf_config(tf_config([port, distributed.free_local_ports(1)[0]], 0))
        with pytest.raises(distributed.ClusterError, match='worker 0 \\(127.0.0.1:%d\\) cannot listen on port %d'
                           % (port, port)):
            distributed.check_port(cluster)
    finally:
        holder.close()


def test_no_tf_config_means_one_machine():
    assert distributed.cluster_from_env({}) is None
    assert distributed.cluster_from_env({'TF_CONFIG': ' '}) is None
    cluster = distributed.cluster_from_env({'TF_CONFIG': tf_config([2222, 2223], 1)})
    assert cluster.size == 2 and not cluster.is_chief and cluster.name() == 'worker 1 (127.0.0.1:2223)'
    assert distributed.worker_batch(8, cluster, 2) == 4 and distributed.worker_batch(8, None, 2) == 8
