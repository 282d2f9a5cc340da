"""Batches of augmented training samples, made by a pool of worker processes.

* `SampleGenerator` batches augmented samples made by worker processes, shuffled each epoch and reproducible
  with a seed; unreadable images are logged with their file name, skipped and counted.
* The samples themselves come from coco.py (`CocoPersons`, the COCO reader) and targets.py (`make_targets`,
  `augment_example`, `encode_example`: the target maps of every head); their public names are importable
  from here too, as before.
"""
import collections
import concurrent.futures
import contextlib
import ctypes
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import time
import weakref
from multiprocessing import shared_memory

import numpy as np

import settings
import grid
# The public names of the reader and the targets stay importable from here (data_generator.CocoPersons, ...).
from coco import CocoPersons  # noqa: F401
from images import ImageReadError
from targets import (TARGET_NAMES, augment_example, encode_example,  # noqa: F401
                     make_targets, positive_int, sample_layout)

LOG = logging.getLogger(__name__)

# Tags that keep the random streams of the epoch shuffles and of the samples apart under one seed.
_ORDER_STREAM, _SAMPLE_STREAM = 0, 1
# Linux prctl option: signal this process when its parent dies (<linux/prctl.h>).
_PR_SET_PDEATHSIG = 1


def sample_seed(seed, epoch, image_id):
    """np.random.SeedSequence of one sample: fixed by (seed, epoch, image id), whatever worker makes it."""
    return np.random.SeedSequence([int(seed), _SAMPLE_STREAM, int(epoch), int(image_id)])


def epoch_order(image_ids, seed, epoch):
    """list of the image ids (any order in, all of them out) in the shuffled order of epoch `epoch` (int)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _ORDER_STREAM, int(epoch)]))
    return [image_ids[i] for i in rng.permutation(len(image_ids))]


def make_sample(dataset, image_id, seed, input_size, stride, options=None):
    """One augmented sample of `dataset` (CocoPersons): the dict of augment_example, seeded by `seed`
    (SeedSequence or int), or the tuple ('skip', file name, reason) if its image is unreadable. `options`:
    settings.Settings (None: config.py's)."""
    try:
        example = dataset.load_example(image_id)
    except ImageReadError as error:
        return ('skip', dataset.file_name(image_id), str(error))
    return augment_example(example, np.random.default_rng(seed), input_size, stride, options=options)


RING_PREFIX = 'personlab_ring_'  # shared-memory name: <prefix><creator pid>_<random>
SHM_DIR = '/dev/shm'  # where Linux keeps named shared memory


def remove_stale_rings(shm_dir=SHM_DIR):
    """Frees the SampleRing memory of processes that no longer exist (a process group killed outright gives
    nobody the chance to unlink it), and only theirs. Returns the names removed."""
    removed = []
    try:
        names = os.listdir(shm_dir)
    except OSError:  # no /dev/shm (not Linux): nothing to look after
        return removed
    for name in names:
        if not name.startswith(RING_PREFIX):
            continue
        try:
            pid = int(name[len(RING_PREFIX):].split('_')[0])
            os.kill(pid, 0)
        except ValueError:
            continue
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                os.remove(os.path.join(shm_dir, name))
                removed.append(name)
        except PermissionError:  # alive, another user's
            continue
    if removed:
        LOG.warning('freed the shared memory of dead trainings: %s', ', '.join(removed))
    return removed


class SampleRing(object):
    """Shared memory for `count` samples: workers write a sample into a slot, the parent copies it out.

    This replaces pickling ~4 MB per sample through a pipe (several copies on both sides) by one copy in the
    worker and one in the parent. Pickling a SampleRing (spawn, forkserver) attaches to the same memory by name;
    a forked worker inherits the mapping. The parent that created it frees it with close().
    """

    def __init__(self, layout, count):
        self.layout = layout
        self.count = count
        self.slot_bytes = sum(int(np.prod(shape)) * dtype.itemsize for _, shape, dtype in layout)
        remove_stale_rings()
        self.memory = shared_memory.SharedMemory(name='%s%d_%s' % (RING_PREFIX, os.getpid(), os.urandom(4).hex()),
                                                 create=True, size=max(1, self.slot_bytes * count))
        self._owner = True

    def __getstate__(self):
        return {'layout': self.layout, 'count': self.count, 'slot_bytes': self.slot_bytes,
                'name': self.memory.name}

    def __setstate__(self, state):
        self.layout, self.count, self.slot_bytes = state['layout'], state['count'], state['slot_bytes']
        self.memory = shared_memory.SharedMemory(name=state['name'])
        self._owner = False

    def views(self, slot):
        """dict name -> numpy view of slot `slot` (drop the views before close())."""
        views, offset = {}, slot * self.slot_bytes
        for name, shape, dtype in self.layout:
            views[name] = np.ndarray(shape, dtype, buffer=self.memory.buf, offset=offset)
            offset += int(np.prod(shape)) * dtype.itemsize
        return views

    def write(self, slot, sample):
        """Copies a sample (dict name -> array shaped as the layout) into slot `slot`."""
        views = self.views(slot)
        for name in views:
            views[name][...] = sample[name]

    def close(self):
        """Detaches; the creating process also frees the memory (unlink)."""
        if self._owner:
            self.memory.unlink()
        try:
            self.memory.close()
        except BufferError:  # a view still lives somewhere; the mapping goes away with it
            pass


_WORKER = {}


def _die_with_parent(parent_pid):
    """Linux: the kernel ends this worker when its parent process dies, so a killed trainer leaves no orphans."""
    try:
        libc = ctypes.CDLL('libc.so.6', use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    try:
        os.kill(parent_pid, 0)
    except ProcessLookupError:  # the trainer died before prctl took effect
        os._exit(1)


def _init_worker(dataset, ring, input_size, stride, parent_pid, options):
    """Worker start-up: parent-death signal, then the state that _worker_sample uses (dataset, SampleRing,
    input size and stride in px, the run's settings.Settings)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it shuts us down
    _die_with_parent(parent_pid)
    # No cv2.setNumThreads here: in a forked child it deadlocks on the parent's copied thread pool.
    # The Settings travel pickled: a spawned or forkserver worker, which imports config.py afresh, makes
    # samples with the parent's values all the same.
    _WORKER.update(dataset=dataset, ring=ring, input_size=input_size, stride=stride, options=options)


def _worker_sample(image_id, seed, slot):
    """Makes a sample into ring slot `slot`; returns None, or the skip tuple of make_sample."""
    sample = make_sample(_WORKER['dataset'], image_id, seed, _WORKER['input_size'], _WORKER['stride'],
                         options=_WORKER['options'])
    if isinstance(sample, tuple):
        return sample
    _WORKER['ring'].write(slot, sample)
    return None


def stop_workers(executor, grace=None, options=None):
    """Shuts a ProcessPoolExecutor down; workers still running after `grace` seconds
    (options.WORKER_STOP_GRACE) are killed and logged with their pid.

    (shutdown(wait=True) alone would wait forever on a stuck worker.)
    """
    options = settings.resolve(options)
    grace = options.WORKER_STOP_GRACE if grace is None else grace
    processes = list((getattr(executor, '_processes', None) or {}).values())
    manager = getattr(executor, '_executor_manager_thread', None)
    executor.shutdown(wait=False, cancel_futures=True)
    running = {process.sentinel: process for process in processes}
    deadline = time.monotonic() + grace
    while running and time.monotonic() < deadline:
        for sentinel in multiprocessing.connection.wait(list(running), deadline - time.monotonic()):
            running.pop(sentinel)
    for process in running.values():
        LOG.warning('data worker %d still busy %g s after shutdown: killed', process.pid, grace)
        process.kill()
    if manager is not None:
        manager.join(grace)  # it reaps the workers


class SampleGenerator(object):
    """Batches of augmented samples, made by worker processes.

    Iterating starts `num_workers` processes (0: samples are made in the calling process, same results) and
    yields dicts of stacked arrays (TARGET_NAMES, batch axis first; fresh arrays each batch). Workers write
    their samples into a shared-memory ring (SampleRing), at most `prefetch` each in flight.

    Images are shuffled each epoch; samples flow across epoch boundaries, so every batch is full (with a
    finite `epochs` the last may be smaller). Each sample is seeded by (seed, epoch, image id) and results
    come back in order, so the stream is the same for any number of workers. Workers make their samples
    with `options`, the Settings handed to them (None: config.py's values when the generator is made).

    An unreadable image is logged once with its file name, skipped and counted: `skipped` counts FILES (each
    unreadable image once, however many epochs meet it), `skipped_files` lists their paths. Once its failure
    is known it is not read again (with workers, tasks already in flight may read it once more); its place
    in the shuffles stays, so the batches do not depend on the number of workers. A worker silent for
    `timeout` seconds raises TimeoutError rather than hanging the run. Workers stop when iteration ends, when
    the consumer stops early (the iterator is closed or dropped), on an error, or if this process dies. On
    Linux a worker also ends when the thread that started it (the one that asked for the first batch) ends,
    so iterate from a thread that lives as long as the run (train.py uses the main thread).

    Args:
      dataset: CocoPersons.
      batch_size: samples per batch (options.BATCH_SIZE).
      input_size: square input side, n*stride + 1 (options.INPUT_SIZE).
      stride: output stride (options.TRAIN_OUTPUT_STRIDE).
      num_workers: worker processes (options.NUM_WORKERS).
      seed: base seed (options.SEED).
      epochs: number of passes over the data; None for an endless stream.
      prefetch: samples in flight per worker (options.PREFETCH_PER_WORKER).
      start_method: multiprocessing start method (options.DATA_START_METHOD).
      timeout: seconds to wait for one sample before declaring a worker stuck (options.WORKER_TIMEOUT).
      shard: (index, count) for one of `count` training machines (train.py under TF_CONFIG): the stream
        is cut into blocks of batch_size samples dealt in turn to the machines, so block i*count + index
        is this machine's batch i, and the machines' batches i, in index order, are the batch of
        count*batch_size samples one machine would make without `shard` (short of unreadable images,
        which each machine replaces from its own blocks). Every machine shuffles alike; each makes only
        its own samples. None: the whole stream.
      options: settings.Settings of the run (augmentation, targets and the defaults above); None -> config.py's.
    Raises:
      ValueError naming the argument if batch_size, input_size or stride is not a positive integer, or if
      input_size is not n*stride + 1 (grid.check_input_size); ValueError if the dataset has no image.
    """

    def __init__(self, dataset, batch_size=None, input_size=None, stride=None, num_workers=None, seed=None,
                 epochs=None, prefetch=None, start_method=None, timeout=None, shard=None, options=None):
        options = self.options = settings.resolve(options)
        self.dataset = dataset
        self.batch_size = positive_int('batch_size', options.BATCH_SIZE if batch_size is None else batch_size)
        self.input_size = positive_int('input_size', options.INPUT_SIZE if input_size is None else input_size)
        self.stride = positive_int('stride', options.TRAIN_OUTPUT_STRIDE if stride is None else stride)
        grid.check_input_size(self.input_size, self.stride)
        self.num_workers = options.NUM_WORKERS if num_workers is None else int(num_workers)
        self.seed = options.SEED if seed is None else int(seed)
        self.epochs = epochs
        self.prefetch = options.PREFETCH_PER_WORKER if prefetch is None else int(prefetch)
        self.start_method = options.DATA_START_METHOD if start_method is None else start_method
        self.timeout = timeout
        self.shard = (0, 1) if shard is None else (int(shard[0]), int(shard[1]))
        if not 0 <= self.shard[0] < self.shard[1]:
            raise ValueError('shard must be (index, count) with 0 <= index < count, got %r' % (shard,))
        if not len(dataset.image_ids):
            raise ValueError('no image in %s' % getattr(dataset, 'annotation_file', dataset))
        self.skipped = 0
        self.skipped_files = []
        self.samples = 0
        self.worker_pids = []
        self._bad_ids = set()
        self._active = None

    def __iter__(self):
        self.close()
        batches = self._batches()
        # A weak reference: a consumer that drops its iterator (e.g. breaks out of a for loop) frees it, and
        # the iterator's cleanup stops the workers; close() is there for explicit shutdown.
        self._active = weakref.ref(batches)
        return batches

    def close(self):
        """Stops the workers of the running iteration, if any."""
        batches = self._active() if self._active is not None else None
        self._active = None
        if batches is not None:
            batches.close()

    def __enter__(self):
        return self

    def __exit__(self, *unused):
        self.close()

    def _tasks(self):
        """(image id, seed) of every sample to make, epoch after epoch.

        Each epoch permutes ALL image ids, known-bad ones included, so the order never depends on when a
        failure became known (with workers, tasks are drawn up to num_workers * prefetch ahead of the results).
        Ids already known bad are not handed out again; that changes no result, since they give no sample.
        With a shard, positions are counted in that whole stream, so the blocks never depend on failures.
        """
        index, count = self.shard
        epoch, position = 0, 0
        while self.epochs is None or epoch < self.epochs:
            self._check_some_readable()
            for image_id in epoch_order(self.dataset.image_ids, self.seed, epoch):
                mine = position // self.batch_size % count == index
                position += 1
                if mine and image_id not in self._bad_ids:
                    yield image_id, sample_seed(self.seed, epoch, image_id)
            epoch += 1

    def _check_some_readable(self):
        if len(self._bad_ids) >= len(self.dataset.image_ids):
            raise RuntimeError('every image of %s is unreadable (%d skipped)' % (
                getattr(self.dataset, 'image_dir', self.dataset), self.skipped))

    def _skip(self, image_id, file_name, reason):
        """Records an unreadable image once, however many of its tasks were in flight."""
        if image_id in self._bad_ids:
            return
        self._bad_ids.add(image_id)
        self.skipped += 1
        self.skipped_files.append(file_name)
        LOG.warning('skipping unreadable image %s (%s); %d skipped so far', file_name, reason, self.skipped)
        self._check_some_readable()

    def _results(self, tasks):
        """(image id, sample dict or skip tuple) in task order, at most num_workers * prefetch in flight.

        With workers, a sample dict is a view of shared memory, valid until the next result is asked for.
        """
        if self.num_workers <= 0:
            for image_id, seed in tasks:
                yield image_id, make_sample(self.dataset, image_id, seed, self.input_size, self.stride,
                                            options=self.options)
            return
        in_flight = self.num_workers * max(self.prefetch, 1)
        ring = SampleRing(sample_layout(self.input_size, self.stride), in_flight)
        self.worker_pids = []
        context = multiprocessing.get_context(self.start_method)
        executor = concurrent.futures.ProcessPoolExecutor(
            self.num_workers, mp_context=context, initializer=_init_worker,
            initargs=(self.dataset, ring, self.input_size, self.stride, os.getpid(), self.options))
        pending = collections.deque()
        try:
            for number, (image_id, seed) in enumerate(tasks):
                # Task `number` writes into slot number % in_flight, free once the oldest task is consumed.
                if len(pending) >= in_flight:
                    yield self._result(ring, *pending.popleft())
                slot = number % in_flight
                pending.append((image_id, slot, executor.submit(_worker_sample, image_id, seed, slot)))
                # Recorded so that tests can check every worker is gone after shutdown.
                self.worker_pids = sorted(set(self.worker_pids) | set(executor._processes or {}))
            while pending:
                yield self._result(ring, *pending.popleft())
        finally:
            stop_workers(executor, options=self.options)
            ring.close()

    def _result(self, ring, image_id, slot, future):
        timeout = self.options.WORKER_TIMEOUT if self.timeout is None else self.timeout
        try:
            skip = future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError('no sample from the data workers in %.0f s (image %s): a worker is stuck' % (
                timeout, self.dataset.file_name(image_id)))
        return image_id, skip if skip is not None else ring.views(slot)

    def _batches(self):
        results = self._results(self._tasks())
        layout = sample_layout(self.input_size, self.stride)
        batch, filled = None, 0
        try:
            for image_id, sample in results:
                if isinstance(sample, tuple):
                    self._skip(image_id, *sample[1:])
                    continue
                if batch is None:
                    batch = {name: np.empty((self.batch_size,) + shape, dtype) for name, shape, dtype in layout}
                for name in batch:
                    batch[name][filled] = sample[name]
                del sample  # may view shared memory that the next result reuses
                self.samples += 1
                filled += 1
                if filled == self.batch_size:
                    yield batch
                    batch, filled = None, 0
            if filled:
                yield {name: array[:filled] for name, array in batch.items()}
        finally:
            results.close()
