"""Trains PersonLab on one or several GPUs (or the CPU): resumable, observable, safe to interrupt.

    python train.py                                  # COCO with the settings of config.py
    python train.py --preset quickstart              # small model on the synthetic set (docs/training.md)
    python train.py --num-gpus 4 --batch-size 16 --train-dir model/run2
    python train.py --set LEARNING_RATE=5e-4 --set CHECKPOINT_EVERY=500
    TF_CONFIG='{"cluster": {"worker": ["host0:2222", "host1:2222"]}, "task": {"type": "worker", "index": 0}}' \
        python train.py --batch-size 16                # one run on several machines (distributed.py)

config.py is the place to experiment; the flags override a few of its values for one run: main() builds the
run's settings once, `options = settings.make(preset, overrides)`, and hands them to train(options=options),
which passes them on (config.py itself is never changed). Ctrl-C (SIGINT) or
SIGTERM saves a checkpoint and exits; running the same command again resumes from the newest checkpoint of the
train dir (global step, momentum, Polyak averages). A run killed outright (SIGKILL, power loss) loses at most
the steps since its last checkpoint (config.CHECKPOINT_EVERY).

The train dir holds:
  model.ckpt-<step>.*, checkpoint   tf.train.Saver checkpoints of every variable: weights, momentum slots
                                    ('<var>/Momentum'), Polyak averages ('<var>/ExponentialMovingAverage'),
                                    global_step
  config.json                       the config values the checkpoints were trained with (checkpoints.load_run_config)
  .train.lock                       held by the training running there (checkpoints.TrainDirLock): a second
                                    one in the same train dir stops at once, naming it
  events.out.tfevents.*             TensorBoard: every loss, learning rate, speed, input wait, and images of
                                    the predicted heatmaps and segmentation next to the input and the targets

Evaluation and the demo use the Polyak-averaged weights. After building the model (model.build_model with the
settings of checkpoints.run_settings(train_dir)) in a session:
    checkpoints.restore_averaged_weights(sess, train_dir)
which is tf.train.Saver(tf.train.ExponentialMovingAverage(decay).variables_to_restore()).restore(sess, ckpt):
every model variable receives its moving average.

Data flow: data_generator.SampleGenerator's worker processes build augmented samples and their target maps;
a background thread (feeder.Prefetcher) keeps options.PREFETCH_BATCHES batches ready; each step feeds one batch,
split evenly over the towers of train_graph.build_training_graph (one per GPU, variables shared and kept on the
CPU when there are several); the towers' loss sums are added and divided once by the whole batch's
valid-position counts, so their gradients add up to one synchronous SGD-momentum update on the whole batch,
followed by the moving-average update.

This module holds the command line, train() and its loop, the settings checks and the start and saving of a
run; train_graph.py the graph; feeder.py the prefetch thread and the signal handling.
"""
import argparse
import ast
import datetime
import json
import math
import os
import sys
import time

import checkpoints
import distributed
import files
import grid
import heads
import machine
import settings
from feeder import Prefetcher, StopRequest
from train_graph import DeviceError, build_training_graph, tower_devices
from train_graph import tensorflow_v1 as _tf

DOWNLOAD_URL = 'http://download.tensorflow.org/models/resnet_v2_%d_2017_04_14.tar.gz'
# resnet.BLOCKS' depths (train.py checks them before TensorFlow is imported; tests/test_train.py compares), and
# those TF-Slim released ImageNet checkpoints of (26 is this project's, trained from scratch only).
BACKBONE_DEPTHS = (26, 50, 101, 152)
IMAGENET_DEPTHS = (50, 101, 152)
# Config values that steer the run but not what is learnt: changing them on resume is normal, not warned about.
RUN_CONTROL_NAMES = ('NUM_STEPS', 'TRAIN_DIR', 'LOG_EVERY', 'SUMMARY_EVERY', 'SUMMARY_IMAGES', 'CHECKPOINT_EVERY',
                     'CHECKPOINTS_TO_KEEP', 'NUM_WORKERS', 'PREFETCH_BATCHES', 'PREFETCH_PER_WORKER',
                     'DATA_START_METHOD', 'ROOT_DIR', 'CLUSTER_TIMEOUT')


class BadPathError(OSError):
    """A path given to train.py (config or flag) is missing or unusable; raised before any graph is built."""


class CheckpointMismatchError(ValueError):
    """The train dir's checkpoint holds the variables of another model than the one configured."""


class NonFiniteError(RuntimeError):
    """A loss or the weights became NaN or infinite; the run stops without saving them."""

    def __init__(self, message, step):
        super().__init__(message)
        self.step = step


# ----------------------------------------------------------------------------------------------------------
# Settings and the run directory
# ----------------------------------------------------------------------------------------------------------

def backbone_scope(depth):
    """Variable scope of the backbone in model.build_model: 'resnet_v2_<depth>'."""
    return 'resnet_v2_%d' % depth


def backbone_download_hint(path, depth):
    """How to put the TF-Slim ImageNet checkpoint at `path`, or train without it."""
    return ('  Download the TF-Slim ImageNet ResNet-v2-%d (model zoo release resnet_v2_%d_2017_04_14):\n'
            '    mkdir -p %s && curl -L %s | tar -xz -C %s\n'
            '  or train the backbone from random weights with --from-scratch (config.TRAIN_FROM_SCRATCH).'
            % (depth, depth, os.path.dirname(path), DOWNLOAD_URL % depth, os.path.dirname(path)))


def missing_backbone_message(path, depth):
    """A missing backbone checkpoint: where it was looked for and how to get it."""
    return ('backbone checkpoint not found: %s (config.BACKBONE_CHECKPOINT or --backbone-checkpoint).\n%s'
            % (path, backbone_download_hint(path, depth)))


def check_settings(train_dir=None, annotations=None, images=None, backbone_checkpoint=None,
                   from_scratch=None, options=None):
    """Fails fast (before TensorFlow is imported) on every bad path and inconsistent setting.

    Args default to options (TRAIN_DIR, TRAIN_ANNOTATIONS, TRAIN_IMAGES, BACKBONE_CHECKPOINT,
    TRAIN_FROM_SCRATCH), the run's settings.Settings (None: config.py's). The backbone checkpoint is only
    needed when training starts fresh (no checkpoint in the train dir) and not from scratch. Creates the train
    dir only once every check has passed.
    Raises:
      BadPathError listing every bad path; ValueError for an inconsistent batch size, input size or depth;
      distributed.ClusterError (a ValueError) for a bad TF_CONFIG or a taken port.
    """
    options = settings.resolve(options)
    train_dir = options.pick(train_dir, 'TRAIN_DIR')
    annotations = options.pick(annotations, 'TRAIN_ANNOTATIONS')
    images = options.pick(images, 'TRAIN_IMAGES')
    backbone_checkpoint = options.pick(backbone_checkpoint, 'BACKBONE_CHECKPOINT')
    from_scratch = options.pick(from_scratch, 'TRAIN_FROM_SCRATCH')

    if options.BACKBONE_DEPTH not in BACKBONE_DEPTHS:
        raise ValueError('BACKBONE_DEPTH must be one of %s, got %r' % (BACKBONE_DEPTHS, options.BACKBONE_DEPTH))
    if options.NUM_GPUS < 1:
        raise ValueError('NUM_GPUS must be at least 1, got %r' % options.NUM_GPUS)
    cluster = distributed.cluster_from_env()
    distributed.worker_batch(options.BATCH_SIZE, cluster, options.NUM_GPUS)
    stride = options.TRAIN_OUTPUT_STRIDE
    if not grid.on_grid(options.INPUT_SIZE, stride):
        raise ValueError('INPUT_SIZE must be n*%d+1 (output stride %d) so the output grid meets the input '
                         'corners, e.g. %d or %d; got %d' % (stride, stride, 8 * stride + 1, 25 * stride + 1,
                                                             options.INPUT_SIZE))
    if not isinstance(options.LOSS_STRIDE, int) or options.LOSS_STRIDE < 1 or stride % options.LOSS_STRIDE:
        raise ValueError('LOSS_STRIDE must be a positive divisor of TRAIN_OUTPUT_STRIDE (%d), got %r'
                         % (stride, options.LOSS_STRIDE))

    problems = []
    if not os.path.isfile(annotations):
        problems.append('training annotations not found: %s (config.TRAIN_ANNOTATIONS or --annotations)'
                        % annotations)
    if not os.path.isdir(images):
        problems.append('training image folder not found: %s (config.TRAIN_IMAGES or --images)' % images)
    try:
        files.probe_writable(train_dir)
    except OSError as e:
        problems.append('train dir %s is not writable (config.TRAIN_DIR or --train-dir): %s' % (train_dir, e))
    else:
        resuming = checkpoints.has_checkpoint(train_dir)
        saved = (checkpoints.read_snapshot(train_dir) or {}).get('config', {}) if resuming else {}
        clashes = ['%s %r (now %r)' % difference for difference in settings.differences(saved, options.to_json())
                   if difference[0] in checkpoints.VARIABLE_CONFIG_NAMES and difference[0] in saved]
        if clashes:
            problems.append('train dir %s holds a run trained with %s: its checkpoints cannot be resumed with these '
                            'settings. Train into another dir (--train-dir) or delete that one.'
                            % (train_dir, ', '.join(clashes)))
        fresh = not resuming and not from_scratch
        if fresh and options.BACKBONE_DEPTH not in IMAGENET_DEPTHS:
            problems.append('ResNet-v2-%d has no ImageNet checkpoint (TF-Slim released depths %s): train it '
                            'with --from-scratch (config.TRAIN_FROM_SCRATCH)'
                            % (options.BACKBONE_DEPTH, ', '.join(map(str, IMAGENET_DEPTHS))))
        elif fresh and not checkpoints.exists(backbone_checkpoint):
            problems.append(missing_backbone_message(backbone_checkpoint, options.BACKBONE_DEPTH))
    if problems:
        raise BadPathError('\n'.join(problems))
    if cluster is not None:
        distributed.check_port(cluster)
    os.makedirs(train_dir, exist_ok=True)


# ----------------------------------------------------------------------------------------------------------
# Starting and saving a run
# ----------------------------------------------------------------------------------------------------------

def restore_or_initialise(sess, graph, train_dir, from_scratch=None, backbone_checkpoint=None, log=None,
                          run_options=None, chief=True, options=None):
    """Resumes from the newest readable checkpoint of `train_dir`, or initialises a fresh run.

    Fresh: every variable from its initialiser, then (unless from scratch) the backbone from the TF-Slim
    checkpoint, then the moving averages set to those weights. A damaged newer checkpoint (a truncated file)
    is reported through log(message, error=True), passed over and deleted. Then the train dir is pruned to
    options.CHECKPOINTS_TO_KEEP checkpoints (those of earlier runs count) without leftovers of interrupted
    saves, and the Saver takes the kept ones over so that it deletes them in turn: the caller must hold the
    train dir's checkpoints.TrainDirLock.
    Args:
      graph: build_training_graph's dict.
      run_options: tf.RunOptions of the initialiser (on several machines a collective: the chief's initial
        values reach every worker).
      chief: False for the non-chief workers of a cluster, which neither delete nor prune the shared train dir.
      options: the run's settings.Settings (TRAIN_FROM_SCRATCH, BACKBONE_CHECKPOINT, ...); None -> config.py's.
    Returns:
      (global step, description of what was done).
    Raises:
      CheckpointMismatchError: the newest checkpoint holds another model's variables.
    """
    tf = _tf()
    log = log or _default_log
    options = settings.resolve(options)
    from_scratch = options.TRAIN_FROM_SCRATCH if from_scratch is None else from_scratch
    backbone_checkpoint = options.BACKBONE_CHECKPOINT if backbone_checkpoint is None else backbone_checkpoint
    restored, damaged = None, []
    if checkpoints.latest_in(train_dir):
        def restore(prefix):
            try:
                graph['saver'].restore(sess, prefix)
            except (tf.errors.NotFoundError, tf.errors.InvalidArgumentError) as e:
                if not checkpoints.exists(prefix):
                    raise  # gone meanwhile, not a mismatch
                raise CheckpointMismatchError(
                    'cannot resume from %s: its variables do not match this model (was it trained with another '
                    'BACKBONE_DEPTH or INTERMEDIATE_SUPERVISION? compare %s): %s'
                    % (prefix, os.path.join(train_dir, checkpoints.CONFIG_SNAPSHOT),
                       str(e).splitlines()[0])) from None
        restored, damaged = checkpoints.restore_newest_readable(train_dir, restore,
                                                                lambda m: log('WARNING: ' + m, error=True))
    if restored is None:
        sess.run(tf.global_variables_initializer(), options=run_options)
    if chief:  # the one process of a run that writes the train dir (the workers of a cluster only read it)
        for prefix in damaged:  # it would count as one of the newest and shadow the intact ones from eval.py
            log('train: deleting the damaged %s' % prefix, error=True)
            checkpoints.remove(prefix)
        protect = [restored] if restored else []
        kept = checkpoints.prune(train_dir, checkpoints.CHECKPOINT_PREFIX, options.CHECKPOINTS_TO_KEEP,
                                 protect=protect)
        graph['saver'].recover_last_checkpoints(kept)
    if restored:
        return int(sess.run(graph['global_step'])), 'resumed from %s' % restored
    if from_scratch:
        how = 'fresh start, every weight random (from scratch)'
    else:
        import resnet
        resnet.load_backbone_checkpoint(sess, backbone_checkpoint, backbone_scope(options.BACKBONE_DEPTH))
        how = 'fresh start, backbone from %s' % backbone_checkpoint
    sess.run(graph['reset_averages'])
    return 0, how


def write_config_snapshot(train_dir, step, log, options=None):
    """Writes config.json for this run (the values of `options`, a settings.Settings; None: config.py's); on
    resume, warns about every value that differs from the saved one.

    A previous snapshot that differs is kept as config-until-step-<step>.json.
    """
    path = os.path.join(train_dir, checkpoints.CONFIG_SNAPSHOT)
    current = settings.resolve(options).to_json()
    saved = checkpoints.read_snapshot(train_dir)
    if saved is not None:
        differences = [d for d in settings.differences(saved.get('config', {}), current)
                       if d[0] not in RUN_CONTROL_NAMES]
        if differences:
            log('WARNING: this run\'s config differs from the one its checkpoints were trained with (%s):\n%s'
                % (path, '\n'.join('  %s: %r -> %r' % d for d in differences)), error=True)
            os.replace(path, os.path.join(train_dir, 'config-until-step-%d.json' % step))
    record = {'config': current, 'argv': sys.argv, 'start_step': step,
              'started': datetime.datetime.now().isoformat(timespec='seconds')}
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(record, f, indent=1, sort_keys=True)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------------------------------------
# Input and control
# ----------------------------------------------------------------------------------------------------------

def format_duration(seconds):
    """'1d 02:03:04' / '02:03:04' for a duration in seconds; '?' if unknown."""
    if seconds is None or not math.isfinite(seconds):
        return '?'
    seconds = int(round(seconds))
    days, seconds = divmod(seconds, 86400)
    text = '%02d:%02d:%02d' % (seconds // 3600, seconds // 60 % 60, seconds % 60)
    return ('%dd %s' % (days, text)) if days else text


class Eta(object):
    """Time left from the mean step time since the warm-up: the first options.ETA_WARMUP_STEPS steps after a
    (re)start also build and optimise the graph (seconds to a minute), which would make the first ETA hours
    too long. Feed it the wall-clock time after each step; `text` is '?' until a step after the warm-up."""

    def __init__(self, start_step, num_steps, start_time, warmup_steps=None, options=None):
        warmup_steps = settings.resolve(options).ETA_WARMUP_STEPS if warmup_steps is None else warmup_steps
        self.warmed_up_at = start_step + warmup_steps  # the step whose end starts the clock
        self.num_steps = num_steps
        self.clock = start_time if warmup_steps == 0 else None

    def seconds_left(self, step, now):
        """Seconds to num_steps at the mean rate of the steps after the warm-up; None before one ran."""
        if step == self.warmed_up_at:
            self.clock = now
        if self.clock is None or step <= self.warmed_up_at:
            return None
        return (self.num_steps - step) * (now - self.clock) / (step - self.warmed_up_at)

    def text(self, step, now):
        left = self.seconds_left(step, now)
        return format_duration(left) if left is not None else '? (warm-up)'


def _default_log(message, error=False):
    print(message, file=sys.stderr if error else sys.stdout, flush=True)


def _worker_log(log, cluster):
    """A non-chief worker's log: its lines carry its name (the progress lines are the chief's alone)."""
    def worker_log(message, error=False):
        log('%s: %s' % (cluster.name(), message), error=error)
    return worker_log


def _check_finite(step, losses):
    bad = [name for name, value in losses.items() if not math.isfinite(value)]
    if bad:
        raise NonFiniteError(
            'step %d: non-finite loss %s (%s); stopping without saving: the newest checkpoint holds the last '
            'good weights. Lower LEARNING_RATE or check the data.'
            % (step, ', '.join(bad), ', '.join('%s=%.4g' % (n, losses[n]) for n in heads.LOSS_KEYS if n in losses)),
            step)


def _scalar_summary(values):
    tf = _tf()
    return tf.Summary(value=[tf.Summary.Value(tag=tag, simple_value=float(v)) for tag, v in values.items()])


# ----------------------------------------------------------------------------------------------------------
# The training loop
# ----------------------------------------------------------------------------------------------------------

def train(train_dir=None, devices=None, session_config=None, log=_default_log, on_step=None, options=None):
    """Trains (or resumes training) up to options.NUM_STEPS with the settings `options`.

    Args:
      train_dir: None -> options.TRAIN_DIR.
      devices: one device per tower; None -> tower_devices(options.NUM_GPUS).
      session_config: tf.ConfigProto; None -> soft placement (ops without a GPU kernel run on the CPU).
      log: log(message, error=False) for progress lines and warnings.
      on_step: optional callback(dict) after every step: 'step', 'losses' (floats), 'step_seconds' (wall
        time since the previous step), 'wait_seconds' (of that, time waiting for input).
      options: the run's settings.Settings (settings.make(preset, overrides)); None -> config.py's values now.
        config.json is written from it.
    Returns:
      dict: 'start_step', 'step' (last step run), 'checkpoint' (newest saved), 'stopped_by' ('done' or the
      signal name), 'how' (resumed / fresh start).
    Raises:
      BadPathError, ValueError, checkpoints.TrainDirBusyError (another training holds the train dir) before
      TensorFlow is imported; DeviceError (more towers than GPUs) before the data is read;
      CheckpointMismatchError, checkpoints.UnreadableCheckpointError on resume; NonFiniteError on a NaN or inf
      loss or weight.
    """
    options = settings.resolve(options)
    train_dir = options.TRAIN_DIR if train_dir is None else train_dir
    check_settings(train_dir, options=options)
    cluster = distributed.cluster_from_env()
    if cluster is not None and not cluster.is_chief:  # the chief holds the lock for the whole cluster
        return _train_locked(train_dir, devices, session_config, _worker_log(log, cluster), on_step, cluster,
                             options)
    with checkpoints.TrainDirLock(train_dir):  # a second training here stops now, before TensorFlow loads
        return _train_locked(train_dir, devices, session_config, log, on_step, cluster, options)


def _train_locked(train_dir, devices, session_config, log, on_step, cluster, options):
    """train() once the train dir is this run's (cluster: distributed.Cluster of a TF_CONFIG run, or None)."""
    _tf()  # TensorFlow's seconds of import only once the fast checks passed
    import data_generator
    devices = tower_devices(options.NUM_GPUS) if devices is None else list(devices)

    try:
        dataset = data_generator.CocoPersons(options.TRAIN_ANNOTATIONS, options.TRAIN_IMAGES, options=options)
    except (FileNotFoundError, ValueError) as e:  # e.g. a JSON file that is not COCO's
        raise BadPathError('training data: %s' % e) from e
    resume_step = checkpoints.checkpoint_step(train_dir)
    if resume_step is None and not options.TRAIN_FROM_SCRATCH:
        import resnet
        try:
            resnet.check_backbone_checkpoint(options.BACKBONE_CHECKPOINT, backbone_scope(options.BACKBONE_DEPTH))
        except (FileNotFoundError, ValueError) as e:
            raise BadPathError('backbone checkpoint %s cannot initialise ResNet-v2-%d: %s\n%s' % (
                options.BACKBONE_CHECKPOINT, options.BACKBONE_DEPTH, e,
                backbone_download_hint(options.BACKBONE_CHECKPOINT, options.BACKBONE_DEPTH))) from e
    if options.TRAIN_FROM_SCRATCH and options.FREEZE_BATCH_NORM:
        log('note: TRAIN_FROM_SCRATCH with FREEZE_BATCH_NORM: batch norm keeps its initial statistics (mean 0, '
            'variance 1); the random backbone stays finite (config.ZERO_INIT_RESIDUAL) but learns without '
            'normalisation, usually more slowly (FREEZE_BATCH_NORM=False trains it, as --from-scratch does)',
            error=True)

    batch_size, num_steps = distributed.worker_batch(options.BATCH_SIZE, cluster, len(devices)), options.NUM_STEPS
    in_bfloat16 = bfloat16_on(options)  # reads /proc/cpuinfo once for both lines below
    log('train: ResNet-v2-%d, %d tower(s) %s, batch %d%s, input %dx%d, %d images, train dir %s%s'
        % (options.BACKBONE_DEPTH, len(devices), ' '.join(devices), options.BATCH_SIZE,
           '' if cluster is None else ' over %d workers (%d here, %s)' % (cluster.size, batch_size, cluster.name()),
           options.INPUT_SIZE, options.INPUT_SIZE, len(dataset.image_ids), train_dir,
           ', CPU convolutions in bfloat16' if in_bfloat16 else ''))
    if options.CPU_BFLOAT16 and not in_bfloat16:
        log('train: note: CPU_BFLOAT16 is on but this CPU has no bfloat16 instructions (AVX512_BF16, AMX, ARM bf16): '
            'training stays in float32 (TensorFlow would emulate bfloat16, more slowly)', error=True)
    # A different seed after each restart: a resumed run does not replay the first epoch's order. On several
    # machines every worker shuffles alike and makes its own share of each global batch.
    generator = data_generator.SampleGenerator(
        dataset, batch_size, options.INPUT_SIZE, options.LOSS_STRIDE, num_workers=options.NUM_WORKERS,
        seed=options.SEED + (resume_step or 0), shard=None if cluster is None else (cluster.index, cluster.size),
        options=options)
    try:
        # The first batch starts the worker processes here, from the main thread and before any session
        # exists: forked workers inherit no TensorFlow thread pools, and their parent-death signal is tied
        # to a thread that lives as long as the run.
        batches = iter(generator)
        prefetcher = Prefetcher(batches, options.PREFETCH_BATCHES, first=next(batches))
        try:
            return _train_session(train_dir, devices, session_config, log, on_step, prefetcher, batch_size,
                                  num_steps, cluster, options)
        finally:
            prefetcher.close()
    finally:
        try:
            generator.close()
        except ValueError:  # still running in the prefetch thread, which closes it when its batch arrives
            log('train: the input workers stop after their current batch', error=True)


def bfloat16_on(options, cpu_has_bfloat16=None):
    """Whether training computes in bfloat16: options.CPU_BFLOAT16 and a CPU with bfloat16 instructions
    (`cpu_has_bfloat16`; None: machine.has_bfloat16()). Elsewhere TensorFlow would rewrite the graph anyway and
    emulate bfloat16 slowly, so training stays float32."""
    if not options.CPU_BFLOAT16:
        return False  # no need to read the CPU's flags
    if cpu_has_bfloat16 is None:
        cpu_has_bfloat16 = machine.has_bfloat16()
    return bool(cpu_has_bfloat16)


def bfloat16_config(session_config, options, cpu_has_bfloat16=None):
    """session_config (tf.ConfigProto) unchanged unless bfloat16_on(options, cpu_has_bfloat16); then a copy with
    oneDNN's bfloat16 automatic mixed precision (a graph rewrite: the CPU's convolutions and matmuls compute in
    bfloat16, variables and checkpoints stay float32)."""
    if not bfloat16_on(options, cpu_has_bfloat16):
        return session_config
    tf = _tf()
    from tensorflow.core.protobuf import rewriter_config_pb2
    result = tf.ConfigProto()
    result.CopyFrom(session_config)
    result.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 = rewriter_config_pb2.RewriterConfig.ON
    return result


def _train_session(train_dir, devices, session_config, log, on_step, prefetcher, batch_size, num_steps,
                   cluster, options):
    """train() once the data flows: graph, session, restore or initialise, the loop.

    With a cluster (distributed.Cluster) the graph runs in TensorFlow's multi-worker runtime, started here,
    after the input workers were forked; only the chief writes config.json, summaries and checkpoints.
    """
    tf = _tf()
    graph_start = time.perf_counter()
    with tf.Graph().as_default():
        runtime = None if cluster is None else distributed.Runtime(cluster, options.CLUSTER_TIMEOUT)
        graph = build_training_graph(batch_size, options.INPUT_SIZE, devices, num_steps, runtime, options=options)
        if runtime is not None:
            runtime.build_start_check()
            session_config = runtime.session_config
        if session_config is None:
            session_config = tf.ConfigProto(allow_soft_placement=True)
        session_config = bfloat16_config(session_config, options)
        chief = cluster is None or cluster.is_chief
        with tf.Session('' if runtime is None else runtime.target, config=session_config) as sess:
            if runtime is None:
                start_step, how = restore_or_initialise(sess, graph, train_dir, log=log, options=options)
            else:
                runtime.check_start(sess, checkpoints.checkpoint_step(train_dir) or 0, train_dir)
                with runtime.guard('the start'):
                    start_step, how = restore_or_initialise(sess, graph, train_dir, log=log,
                                                            run_options=runtime.run_options, chief=chief,
                                                            options=options)
            log('train: %s at step %d (graph and session ready in %.0f s)'
                % (how, start_step, time.perf_counter() - graph_start))
            if chief:
                write_config_snapshot(train_dir, start_step, log, options=options)
            if start_step >= num_steps:
                log('train: step %d already reaches NUM_STEPS=%d; nothing to do' % (start_step, num_steps))
                return {'start_step': start_step, 'step': start_step, 'stopped_by': 'done', 'how': how,
                        'checkpoint': checkpoints.latest_in(train_dir)}
            writer = tf.summary.FileWriter(train_dir) if chief else None
            try:
                with StopRequest(log) as stop:
                    result = _loop(sess, graph, prefetcher, writer, train_dir, start_step, num_steps, stop,
                                   log, on_step, runtime, options)
            finally:
                if writer is not None:
                    writer.close()
    result.update(start_step=start_step, how=how)
    return result


def _loop(sess, graph, prefetcher, writer, train_dir, start_step, num_steps, stop, log, on_step, runtime, options):
    """The step loop of train(): feed, run, check, log, summarise, checkpoint.

    With a runtime (several machines) every worker runs the same fetches at every step; a stop asked on any
    worker travels in the next step to all, which stop after it; only the chief (writer not None) logs
    progress, writes summaries and saves.
    """
    chief = writer is not None
    everyone_stops = False
    inputs, losses = graph['inputs'], graph['losses']
    batch_size = int(inputs['image'].shape[0])
    prefix = os.path.join(train_dir, checkpoints.CHECKPOINT_PREFIX)
    state = {'saved_step': start_step, 'checkpoint': None}

    def save(step):
        if not sess.run(graph['all_finite']):
            raise NonFiniteError('step %d: the weights hold NaN or inf although the loss was finite; not '
                                 'saving them: the newest checkpoint holds the last good weights' % step, step)
        state['checkpoint'] = graph['saver'].save(sess, prefix, global_step=step, write_meta_graph=False)
        state['saved_step'] = step
        # The Saver deletes its own old checkpoints; this also removes what a failed save left (full disk).
        checkpoints.prune(train_dir, checkpoints.CHECKPOINT_PREFIX, options.CHECKPOINTS_TO_KEEP,
                          protect=[state['checkpoint']])
        log('train: saved %s' % state['checkpoint'])

    step = start_step
    last_time = time.perf_counter()
    window = {'start': last_time, 'wait': 0.0, 'steps': 0, 'sums': {}}
    eta = Eta(start_step, num_steps, last_time, options=options)
    try:
        while step < num_steps and not (everyone_stops if runtime else stop):
            wait_before = prefetcher.wait_seconds
            # On several machines a stop must reach the others in a step, so the batch is awaited.
            batch = prefetcher.get((lambda: False) if runtime else (lambda: bool(stop)))
            if batch is None:
                break
            wait = prefetcher.wait_seconds - wait_before
            feed = {inputs[name]: batch[name] for name in inputs}
            fetches = {'train': graph['train_op'], 'losses': losses, 'lr': graph['learning_rate']}
            summarise = (step + 1) % options.SUMMARY_EVERY == 0 or step == start_step
            if summarise:
                fetches['summary'] = graph['summary_op']
            if runtime is None:
                out = sess.run(fetches, feed_dict=feed)
            else:
                feed[graph['stop_request']] = float(bool(stop))
                fetches['stop_requests'] = graph['stop_requests']
                with runtime.guard('step %d' % (step + 1)):
                    out = sess.run(fetches, feed_dict=feed, options=runtime.run_options)
                everyone_stops = out['stop_requests'] > 0
            step += 1
            values = {name: float(v) for name, v in out['losses'].items()}
            _check_finite(step, values)
            now = time.perf_counter()
            if on_step is not None:
                on_step({'step': step, 'losses': values, 'step_seconds': now - last_time, 'wait_seconds': wait})
            last_time = now
            time_left = eta.text(step, now)  # every step: the clock starts at the end of the warm-up
            window['wait'] += wait
            window['steps'] += 1
            for name, value in values.items():
                window['sums'][name] = window['sums'].get(name, 0.0) + value
            if summarise and chief:
                writer.add_summary(out['summary'], step)
            if chief and (step % options.LOG_EVERY == 0 or step == num_steps or step == start_step + 1):
                elapsed = now - window['start']
                rate = window['steps'] / elapsed if elapsed > 0 else float('nan')
                means = {n: s / window['steps'] for n, s in window['sums'].items()}
                wait_fraction = window['wait'] / elapsed if elapsed > 0 else 0.0
                log('step %d/%d  loss %.4f [%s]  lr %.2e  %.2f steps/s  %.1f samples/s  input wait %.0f%%  '
                    'ETA %s' % (step, num_steps, means['total'],
                                ' '.join('%s %.3f' % (n, means[n]) for n in heads.LOSS_KEYS[1:] if n in means),
                                out['lr'], rate, rate * batch_size, 100.0 * wait_fraction, time_left))
                writer.add_summary(_scalar_summary({'speed/steps_per_second': rate,
                                                    'speed/samples_per_second': rate * batch_size,
                                                    'speed/input_wait_fraction': wait_fraction}), step)
                window = {'start': now, 'wait': 0.0, 'steps': 0, 'sums': {}}
            if chief and step % options.CHECKPOINT_EVERY == 0:
                save(step)
        if chief and step > state['saved_step']:
            save(step)
    except NonFiniteError as e:
        log('train: STOPPED: %s' % e, error=True)
        raise
    except distributed.WorkerLostError:
        raise  # the step under way may be half applied here: the newest checkpoint is the good one
    except BaseException:
        # The weights of the last completed step are good: keep them before reporting the failure.
        if chief and step > state['saved_step']:
            log('train: saving step %d before stopping on an error' % step, error=True)
            save(step)
        raise
    stopped_by = stop.signal_name or ('a stop on another worker' if everyone_stops else None)
    if stopped_by:
        log('train: stopped by %s at step %d; run the same command to resume' % (stopped_by, step))
    return {'step': step, 'checkpoint': state['checkpoint'] or checkpoints.latest_in(train_dir),
            'stopped_by': stopped_by or 'done'}


# ----------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------

# flag -> config name; a flag given on the command line overrides config.py (and the preset)
FLAG_TO_CONFIG = {
    'train_dir': 'TRAIN_DIR', 'annotations': 'TRAIN_ANNOTATIONS', 'images': 'TRAIN_IMAGES',
    'steps': 'NUM_STEPS', 'batch_size': 'BATCH_SIZE', 'num_gpus': 'NUM_GPUS', 'input_size': 'INPUT_SIZE',
    'depth': 'BACKBONE_DEPTH', 'learning_rate': 'LEARNING_RATE', 'backbone_checkpoint': 'BACKBONE_CHECKPOINT',
    'workers': 'NUM_WORKERS', 'checkpoint_every': 'CHECKPOINT_EVERY', 'cluster_timeout': 'CLUSTER_TIMEOUT',
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Train PersonLab (settings in config.py; these flags override a few of them).',
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument('--preset', choices=sorted(settings.PRESETS),
                        help='start from a preset of config.py (quickstart: small model, synthetic data, CPU; '
                             'overfit: bench/overfit.py\'s memorisation of a few real images)')
    parser.add_argument('--train-dir', help='checkpoints and summaries (config.TRAIN_DIR)')
    parser.add_argument('--annotations', help='COCO person_keypoints JSON (config.TRAIN_ANNOTATIONS)')
    parser.add_argument('--images', help='folder of the training images (config.TRAIN_IMAGES)')
    parser.add_argument('--steps', type=int, help='total training steps (config.NUM_STEPS)')
    parser.add_argument('--batch-size', type=int, help='images per step over all GPUs (config.BATCH_SIZE)')
    parser.add_argument('--num-gpus', type=int, help='synchronous towers (config.NUM_GPUS)')
    parser.add_argument('--input-size', type=int, help='square training crop, n*16+1 (config.INPUT_SIZE)')
    parser.add_argument('--depth', type=int, choices=BACKBONE_DEPTHS,
                        help='ResNet-v2 depth (config.BACKBONE_DEPTH)')
    parser.add_argument('--learning-rate', type=float, help='config.LEARNING_RATE')
    parser.add_argument('--workers', type=int, help='input worker processes (config.NUM_WORKERS)')
    parser.add_argument('--checkpoint-every', type=int, help='steps between checkpoints (config.CHECKPOINT_EVERY)')
    parser.add_argument('--cluster-timeout', type=float,
                        help='seconds a worker of a TF_CONFIG cluster waits for the others before stopping '
                             '(config.CLUSTER_TIMEOUT)')
    parser.add_argument('--backbone-checkpoint', help='TF-Slim ImageNet checkpoint (config.BACKBONE_CHECKPOINT)')
    parser.add_argument('--from-scratch', action='store_true', default=None,
                        help='random backbone weights instead of the ImageNet checkpoint '
                             '(config.TRAIN_FROM_SCRATCH; also trains batch norm: FREEZE_BATCH_NORM=False)')
    parser.add_argument('--set', action='append', default=[], metavar='NAME=VALUE',
                        help='override any config.py value (Python literal), e.g. --set LEARNING_RATE=5e-4; '
                             'repeatable')
    return parser.parse_args(argv)


def overrides_from_args(args):
    """Overrides of the command line over config.py and the preset: the flags, then --set: dict NAME -> value."""
    overrides = {}
    for flag, name in FLAG_TO_CONFIG.items():
        value = getattr(args, flag)
        if value is not None:
            overrides[name] = value
    if args.from_scratch:
        # Frozen batch norm keeps its initial statistics (mean 0, variance 1): a random network would learn
        # without normalisation (it stays finite thanks to config.ZERO_INIT_RESIDUAL, but trains more slowly).
        overrides['TRAIN_FROM_SCRATCH'] = True
        overrides['FREEZE_BATCH_NORM'] = False
    for item in args.set:
        name, sep, text = item.partition('=')
        if not sep:
            raise ValueError('--set expects NAME=VALUE, got %r' % item)
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text  # a bare string such as a path
        overrides[name.strip()] = value
    return overrides


def options_from_args(args):
    """The run's settings.Settings: config.py, the --preset, the flags, then --set. ValueError naming an
    unknown setting or a malformed --set."""
    return settings.make(args.preset, overrides_from_args(args))


def main(argv=None):
    """Command line: exit status 0 done, 2 bad settings or paths, a train dir in use by another training or
    without a checkpoint this model can resume from, 3 NaN/inf, 4 another worker of the TF_CONFIG cluster is
    gone, 130 stopped by a signal (on any worker of a cluster)."""
    args = parse_args(argv)
    try:
        options = options_from_args(args)
        check_settings(options=options)
    except (BadPathError, ValueError) as e:
        print('train.py: error: %s' % e, file=sys.stderr)
        return 2
    try:
        result = train(options=options)
    except (BadPathError, DeviceError, checkpoints.TrainDirBusyError, CheckpointMismatchError,
            checkpoints.UnreadableCheckpointError, distributed.ClusterError) as e:  # a second training in the
        # train dir; found once TensorFlow is up: a non-COCO annotation file, a wrong backbone, more towers than
        # GPUs, a train dir of another model or with no readable checkpoint, workers with different train dirs
        print('train.py: error: %s' % e, file=sys.stderr)
        return 2
    except NonFiniteError:
        return 3
    except distributed.WorkerLostError as e:
        print('train.py: error: %s' % e, file=sys.stderr)
        return distributed.LOST_EXIT_STATUS
    return 0 if result['stopped_by'] == 'done' else 130


if __name__ == '__main__':
    machine.quiet_tensorflow()  # before main() imports TensorFlow
    sys.exit(main())
