"""Trains PersonLab on one or several GPUs (or the CPU): resumable, observable, safe to interrupt.

    python train.py                                  # COCO with the settings of config.py
    python train.py --preset quickstart              # small model on the synthetic set (README, "Quickstart")
    python train.py --num-gpus 4 --batch-size 16 --train-dir model/run2
    python train.py --set LEARNING_RATE=5e-4 --set CHECKPOINT_EVERY=500
    TF_CONFIG='{"cluster": {"worker": ["host0:2222", "host1:2222"]}, "task": {"type": "worker", "index": 0}}' \
        python train.py --batch-size 16                # one run on several machines (distributed.py)

config.py is the place to experiment; the flags override a few of its values for one run. Ctrl-C (SIGINT) or
SIGTERM saves a checkpoint and exits; running the same command again resumes from the newest checkpoint of the
train dir (global step, momentum, Polyak averages). A run killed outright (SIGKILL, power loss) loses at most
the steps since its last checkpoint (config.CHECKPOINT_EVERY).

The train dir holds:
  model.ckpt-<step>.*, checkpoint   tf.train.Saver checkpoints of every variable: weights, momentum slots
                                    ('<var>/Momentum'), Polyak averages ('<var>/ExponentialMovingAverage'),
                                    global_step
  config.json                       the config values the checkpoints were trained with (see load_run_config)
  .train.lock                       held by the training running there (checkpoints.TrainDirLock): a second
                                    one in the same train dir stops at once, naming it
  events.out.tfevents.*             TensorBoard: every loss, learning rate, speed, input wait, and images of
                                    the predicted heatmaps and segmentation next to the input and the targets

Evaluation and the demo use the Polyak-averaged weights. After building the model (model.build_model with the
depth of load_run_config(train_dir)['BACKBONE_DEPTH']) in a session:
    train.restore_averaged_weights(sess, train_dir)
which is tf.train.Saver(tf.train.ExponentialMovingAverage(decay).variables_to_restore()).restore(sess, ckpt):
every model variable receives its moving average.

Data flow: data_generator.SampleGenerator's worker processes build augmented samples and their target maps;
a background thread keeps config.PREFETCH_BATCHES batches ready; each step feeds one batch, split evenly over
the towers (one per GPU, variables shared and kept on the CPU when there are several); the towers' loss sums
are added and divided once by the whole batch's valid-position counts, so their gradients add up to one
synchronous SGD-momentum update on the whole batch, followed by the moving-average update.
"""
import argparse
import ast
import contextlib
import datetime
import json
import math
import os
import queue
import signal
import sys
import threading
import time

import checkpoints
import config
import distributed
import heads
import machine

CONFIG_SNAPSHOT = 'config.json'  # written in the train dir beside the checkpoints
CHECKPOINT_PREFIX = 'model.ckpt'  # checkpoints are <train dir>/model.ckpt-<global step>
PRESETS = {'quickstart': 'QUICKSTART', 'overfit': 'OVERFIT'}  # --preset name -> config overrides in config.py
DOWNLOAD_URL = 'http://download.tensorflow.org/models/resnet_v2_%d_2017_04_14.tar.gz'
# Config values that steer the run but not what is learnt: changing them on resume is normal, not warned about.
RUN_CONTROL_NAMES = ('NUM_STEPS', 'TRAIN_DIR', 'LOG_EVERY', 'SUMMARY_EVERY', 'SUMMARY_IMAGES', 'CHECKPOINT_EVERY',
                     'CHECKPOINTS_TO_KEEP', 'NUM_WORKERS', 'PREFETCH_BATCHES', 'PREFETCH_PER_WORKER',
                     'DATA_START_METHOD', 'ROOT_DIR', 'CLUSTER_TIMEOUT')


class BadPathError(OSError):
    """A path given to train.py (config or flag) is missing or unusable; raised before any graph is built."""


class DeviceError(ValueError):
    """More towers (NUM_GPUS) than visible GPUs."""


class CheckpointMismatchError(ValueError):
    """The train dir's checkpoint holds the variables of another model than the one configured."""


class NonFiniteError(RuntimeError):
    """A loss or the weights became NaN or infinite; the run stops without saving them."""

    def __init__(self, message, step):
        super().__init__(message)
        self.step = step


# ----------------------------------------------------------------------------------------------------------
# Settings: config.py, presets and overrides
# ----------------------------------------------------------------------------------------------------------

def preset_overrides(name):
    """The config overrides of a preset (config.QUICKSTART for 'quickstart'): dict NAME -> value."""
    if name not in PRESETS:
        raise ValueError('unknown preset %r; known presets: %s' % (name, ', '.join(sorted(PRESETS))))
    return dict(getattr(config, PRESETS[name]))


@contextlib.contextmanager
def config_overrides(overrides):
    """Sets config.NAME = value for each item while the block runs, then restores the previous values.

    Every module reads config at call time, so the whole program (model, losses, data) sees the overrides.
    Unknown names are an error: a typo must not silently train with the default.
    """
    unknown = sorted(name for name in overrides if not hasattr(config, name))
    if unknown:
        raise ValueError('unknown config names: %s (see config.py)' % ', '.join(unknown))
    saved = {name: getattr(config, name) for name in overrides}
    try:
        for name, value in overrides.items():
            setattr(config, name, value)
        yield
    finally:
        for name, value in saved.items():
            setattr(config, name, value)


def config_snapshot():
    """Every upper-case value of config.py as JSON-compatible data (tuples become lists): dict NAME -> value."""
    values = {}
    for name in dir(config):
        if name.isupper() and not name.startswith('_'):
            values[name] = getattr(config, name)
    return json.loads(json.dumps(values, default=repr))


def config_differences(saved, current):
    """Names whose values differ between two snapshots: list of (name, saved value, current value)."""
    names = sorted(set(saved) | set(current))
    missing = '<absent>'
    return [(n, saved.get(n, missing), current.get(n, missing)) for n in names
            if saved.get(n, missing) != current.get(n, missing)]


def load_run_config(train_dir):
    """The config values a train dir's checkpoints were trained with (its config.json): dict NAME -> value.

    eval.py and demo.py use it to build the same model (BACKBONE_DEPTH, INTERMEDIATE_SUPERVISION, ...).
    """
    path = os.path.join(train_dir, CONFIG_SNAPSHOT)
    if not os.path.isfile(path):
        raise FileNotFoundError('%s not found: %s is not a train.py train dir' % (path, train_dir))
    with open(path) as f:
        return json.load(f)['config']


# Config values that decide the network a checkpoint holds: eval.py and demo.py build the model with the run's.
MODEL_CONFIG_NAMES = ('BACKBONE_DEPTH', 'INTERMEDIATE_SUPERVISION', 'INTERMEDIATE_BLOCK', 'OFFSET_OUTPUT_SCALE',
                      'REFINEMENT_STEPS', 'LONG_SELF_REFINEMENT_STEPS', 'BATCH_NORM_EPSILON', 'RADIUS')
# What a run whose config.json predates a model setting trained with: the behaviour before the setting existed.
MODEL_CONFIG_BEFORE = {'LONG_SELF_REFINEMENT_STEPS': 0}


def model_overrides(train_dir):
    """The run's values of MODEL_CONFIG_NAMES, to build the network it trained:

        with train.config_overrides(train.model_overrides(train_dir)):
            outputs = model.build_model(images, is_training=False)
    """
    run_config = load_run_config(train_dir)
    overrides = {}
    for name in MODEL_CONFIG_NAMES:
        if name in run_config:
            value = run_config[name]
            overrides[name] = tuple(value) if isinstance(value, list) else value
        elif name in MODEL_CONFIG_BEFORE:
            overrides[name] = MODEL_CONFIG_BEFORE[name]
    return overrides


def checkpoint_step(train_dir):
    """Global step of the newest checkpoint in `train_dir` (from its name model.ckpt-<step>), None if none."""
    latest = checkpoints.latest_in(train_dir)
    if latest is None:
        return None
    return max(checkpoints.step_of(latest), 0)


def has_checkpoint(train_dir):
    """True if the train dir holds a checkpoint to resume from (its 'checkpoint' state file), without TF."""
    return os.path.isfile(os.path.join(train_dir, checkpoints.CHECKPOINT_STATE))


def backbone_scope(depth=None):
    """Variable scope of the backbone in model.build_model: 'resnet_v2_<depth>'."""
    return 'resnet_v2_%d' % (config.BACKBONE_DEPTH if depth is None else depth)


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
                   from_scratch=None):
    """Fails fast (before TensorFlow is imported) on every bad path and inconsistent setting.

    Args default to config (TRAIN_DIR, TRAIN_ANNOTATIONS, TRAIN_IMAGES, BACKBONE_CHECKPOINT,
    TRAIN_FROM_SCRATCH). The backbone checkpoint is only needed when training starts fresh (no checkpoint in
    the train dir) and not from scratch. Creates the train dir only once every check has passed.
    Raises:
      BadPathError listing every bad path; ValueError for an inconsistent batch size, input size or depth;
      distributed.ClusterError (a ValueError) for a bad TF_CONFIG or a taken port.
    """
    train_dir = config.TRAIN_DIR if train_dir is None else train_dir
    annotations = config.TRAIN_ANNOTATIONS if annotations is None else annotations
    images = config.TRAIN_IMAGES if images is None else images
    backbone_checkpoint = config.BACKBONE_CHECKPOINT if backbone_checkpoint is None else backbone_checkpoint
    from_scratch = config.TRAIN_FROM_SCRATCH if from_scratch is None else from_scratch

    if config.BACKBONE_DEPTH not in (50, 101, 152):
        raise ValueError('BACKBONE_DEPTH must be 50, 101 or 152, got %r' % config.BACKBONE_DEPTH)
    if config.NUM_GPUS < 1:
        raise ValueError('NUM_GPUS must be at least 1, got %r' % config.NUM_GPUS)
    cluster = distributed.cluster_from_env()
    distributed.worker_batch(config.BATCH_SIZE, cluster, config.NUM_GPUS)
    stride = config.TRAIN_OUTPUT_STRIDE
    if config.INPUT_SIZE < stride + 1 or (config.INPUT_SIZE - 1) % stride:
        raise ValueError('INPUT_SIZE must be n*%d+1 (output stride %d) so the output grid meets the input '
                         'corners, e.g. %d or %d; got %d' % (stride, stride, 8 * stride + 1, 25 * stride + 1,
                                                             config.INPUT_SIZE))

    problems = []
    if not os.path.isfile(annotations):
        problems.append('training annotations not found: %s (config.TRAIN_ANNOTATIONS or --annotations)'
                        % annotations)
    if not os.path.isdir(images):
        problems.append('training image folder not found: %s (config.TRAIN_IMAGES or --images)' % images)
    try:
        probe_writable(train_dir)
    except OSError as e:
        problems.append('train dir %s is not writable (config.TRAIN_DIR or --train-dir): %s' % (train_dir, e))
    else:
        if not has_checkpoint(train_dir) and not from_scratch and not checkpoints.exists(backbone_checkpoint):
            problems.append(missing_backbone_message(backbone_checkpoint, config.BACKBONE_DEPTH))
    if problems:
        raise BadPathError('\n'.join(problems))
    if cluster is not None:
        distributed.check_port(cluster)
    os.makedirs(train_dir, exist_ok=True)


def probe_writable(folder):
    """Raises OSError unless `folder`, or the nearest existing folder above it, takes a new file.

    Creates nothing that stays: a run that fails on another path must not leave an empty train dir behind.
    """
    existing = os.path.abspath(folder)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise NotADirectoryError('%s is not a folder' % existing)
    probe = os.path.join(existing, '.write_test.%d' % os.getpid())
    with open(probe, 'w') as f:
        f.write('ok')
    os.remove(probe)


# ----------------------------------------------------------------------------------------------------------
# The training graph
# ----------------------------------------------------------------------------------------------------------

def _tf():
    import tensorflow.compat.v1 as tf  # imported late: bad paths must fail before TF's seconds of import
    return tf


def learning_rate_schedule(global_step, num_steps=None):
    """Learning rate tensor at `global_step`, from config (LEARNING_RATE, LEARNING_RATE_SCHEDULE, ...).

    'constant' [R: the paper], 'cosine' (decays to 0 at num_steps) or 'step' (times
    LEARNING_RATE_DECAY_FACTOR at each of LEARNING_RATE_DECAY_STEPS), after a linear warm-up from 0 over
    LEARNING_RATE_WARMUP_STEPS.
    """
    tf = _tf()
    num_steps = config.NUM_STEPS if num_steps is None else num_steps
    base = float(config.LEARNING_RATE)
    step = tf.cast(global_step, tf.float32)
    schedule = config.LEARNING_RATE_SCHEDULE
    if schedule == 'constant':
        rate = tf.constant(base)
    elif schedule == 'cosine':
        progress = tf.minimum(step / float(max(num_steps, 1)), 1.0)
        rate = base * 0.5 * (1.0 + tf.cos(math.pi * progress))
    elif schedule == 'step':
        rate = tf.constant(base)
        for boundary in config.LEARNING_RATE_DECAY_STEPS:
            rate = tf.where(step >= float(boundary), rate * config.LEARNING_RATE_DECAY_FACTOR, rate)
    else:
        raise ValueError("LEARNING_RATE_SCHEDULE must be 'constant', 'cosine' or 'step', got %r" % schedule)
    warmup = config.LEARNING_RATE_WARMUP_STEPS
    if warmup > 0:
        rate = rate * tf.minimum((step + 1.0) / float(warmup), 1.0)
    return tf.identity(rate, name='learning_rate')


def make_optimizer(learning_rate):
    """config.OPTIMIZER: 'momentum' (SGD with config.MOMENTUM, the paper's) or 'adam' (config.ADAM_BETAS)."""
    tf = _tf()
    if config.OPTIMIZER == 'momentum':
        return tf.train.MomentumOptimizer(learning_rate, config.MOMENTUM)
    if config.OPTIMIZER == 'adam':
        beta1, beta2 = config.ADAM_BETAS
        return tf.train.AdamOptimizer(learning_rate, beta1, beta2)
    raise ValueError("OPTIMIZER must be 'momentum' or 'adam', got %r" % config.OPTIMIZER)


def _placement(variable_device, compute_device):
    """Device function: variables on `variable_device`, every other op on `compute_device`."""
    def place(op):
        if op.type in ('Variable', 'VariableV2', 'VarHandleOp'):
            return variable_device
        return compute_device
    return place


def sum_gradients(tower_grads):
    """Adds (gradient, variable) lists over towers: list of (summed gradient, variable).

    Each tower differentiates its share of the whole batch's loss (tower_share_loss), so the shares'
    gradients add up to the gradient of the whole batch.
    Args:
      tower_grads: one list of (gradient, variable) per tower, in the same variable order.
    """
    tf = _tf()
    if len(tower_grads) == 1:
        return list(tower_grads[0])
    summed = []
    for pairs in zip(*tower_grads):
        variable = pairs[0][1]
        grads = [g for g, _ in pairs]
        if any(g is None for g in grads):
            summed.append((None, variable))
            continue
        summed.append((tf.add_n(grads), variable))
    return summed


def add_sums(tower_sums):
    """Adds the (numerator, denominator) loss sums of model.loss_sums over towers: dict name -> pair."""
    tf = _tf()
    return {name: (tf.add_n([t[name][0] for t in tower_sums]), tf.add_n([t[name][1] for t in tower_sums]))
            for name in tower_sums[0]}


def tower_share_loss(sums, batch_sums, weight_decay, num_shares):
    """A tower's share of the whole batch's total loss: its numerators over the whole batch's denominators.

    Every loss is sum(numerators) / sum(denominators) over the towers, and the denominators (valid-position
    counts, from the targets) carry no gradient, so the shares' gradients add up to the whole batch's
    gradient whatever each tower's number of valid positions; each of the num_shares towers (over all
    workers) carries 1/num_shares of the weight decay.
    """
    import model
    shares = {name: (numerator, batch_sums[name][1]) for name, (numerator, _) in sums.items()}
    return model.losses_from_sums(shares, weight_decay / float(num_shares))['total']


def tower_devices(num_towers, gpus=None):
    """One device per tower: '/gpu:<i>'; ['/cpu:0'] for one tower on a machine without a GPU.

    Args:
      gpus: number of visible GPUs; None -> tf.config.list_physical_devices('GPU').
    Raises:
      DeviceError if num_towers exceeds the visible GPUs: soft placement would silently run every extra tower
      on the CPU. (Tests place towers on CPUs explicitly through build_training_graph's devices.)
    """
    if gpus is None:
        import tensorflow as tf2
        gpus = len(tf2.config.list_physical_devices('GPU'))
    if gpus == 0 and num_towers == 1:
        return ['/cpu:0']
    if num_towers > gpus:
        raise DeviceError('NUM_GPUS is %d but %d GPU(s) are visible to TensorFlow (CUDA_VISIBLE_DEVICES, '
                          'drivers?): set --num-gpus (config.NUM_GPUS) to at most %d'
                          % (num_towers, gpus, max(gpus, 1)))
    return ['/gpu:%d' % i for i in range(num_towers)]


def _image_summary(images, outputs, targets, max_images):
    """One image per sample: input | predicted heatmaps | target heatmaps | predicted seg | target seg.

    The heatmaps are the maximum over the K keypoint types, resized to the input size.
    """
    tf = _tf()
    images = tf.cast(images[:max_images], tf.float32) / 255.0
    size = tf.shape(images)[1:3]

    def panel(maps):
        maps = tf.reduce_max(maps[:max_images], axis=3, keepdims=True)
        maps = tf.image.resize(maps, size, method='nearest')
        return tf.tile(tf.clip_by_value(maps, 0.0, 1.0), [1, 1, 1, 3])

    row = tf.concat([images, panel(outputs['heatmaps']), panel(targets['heatmaps']),
                     panel(outputs['segmentation']), panel(targets['segmentation'])], axis=2)
    return tf.summary.image('input_heatmaps_target_segmentation_target', row, max_outputs=max_images)


def build_training_graph(batch_size=None, input_size=None, devices=None, num_steps=None, runtime=None):
    """Builds the synchronous multi-tower training graph in the default graph.

    Args:
      batch_size: images per step over this process's towers; None -> config.BATCH_SIZE.
      input_size: square input side (n*stride+1); None -> config.INPUT_SIZE.
      devices: one device per tower; None -> tower_devices(config.NUM_GPUS).
      num_steps: for the cosine schedule; None -> config.NUM_STEPS.
      runtime: distributed.Runtime on several machines (batch_size is then this worker's share): the
        towers run in the strategy's replica, the loss sums and gradients are summed over the workers.
    Returns:
      dict with 'inputs' (placeholders by name: 'image' uint8 [B,S,S,3] and the targets), 'losses' (scalar
      tensors of the whole batch, names of model.compute_losses), 'grads_and_vars' (of this process's
      batch), 'train_op', 'global_step', 'learning_rate', 'ema', 'summary_op', 'saver', 'all_finite' (bool:
      every weight finite), 'reset_averages' (copies the weights into their moving averages), 'towers';
      with a runtime also 'stop_request' (float placeholder, scalar: 1 asks every worker to stop) and
      'stop_requests' (its sum over the workers).
    """
    tf = _tf()
    import data_generator  # the fed arrays are data_generator's samples: same names, shapes and dtypes

    batch_size = config.BATCH_SIZE if batch_size is None else batch_size
    input_size = config.INPUT_SIZE if input_size is None else input_size
    devices = tower_devices(config.NUM_GPUS) if devices is None else list(devices)
    if batch_size % len(devices):
        raise ValueError('batch size %d is not a multiple of the %d towers' % (batch_size, len(devices)))
    with tf.device('/cpu:0'):
        inputs = {name: tf.placeholder(tf.as_dtype(dtype), (batch_size,) + shape, name=name)
                  for name, shape, dtype in data_generator.sample_layout(input_size, config.TRAIN_OUTPUT_STRIDE)}
        stop_request = tf.placeholder_with_default(0.0, [], name='stop_request') if runtime else None
    graph = {'inputs': inputs}
    if runtime is None:
        _build_step(graph, devices, num_steps, None, stop_request)
    else:
        # One replica per worker, so its outputs are plain tensors: _build_step fills `graph` itself.
        runtime.call_in_replica(lambda: _build_step(graph, devices, num_steps, runtime, stop_request))
        graph['stop_request'] = stop_request
    graph['saver'] = tf.train.Saver(max_to_keep=config.CHECKPOINTS_TO_KEEP, save_relative_paths=True)
    return graph


def _build_step(graph, devices, num_steps, runtime, stop_request):
    """build_training_graph's step on graph['inputs'], in the strategy's replica under a runtime; adds the
    tensors and ops it documents to `graph`."""
    tf = _tf()
    import data_generator
    import model

    inputs = graph['inputs']
    num_towers = len(devices)
    workers = 1 if runtime is None else runtime.cluster.size
    stride = config.TRAIN_OUTPUT_STRIDE
    variable_device = '/cpu:0' if num_towers > 1 else devices[0]
    with tf.device('/cpu:0'):
        split = {name: tf.split(tensor, num_towers, axis=0) for name, tensor in inputs.items()}
        global_step = tf.train.get_or_create_global_step()
        learning_rate = learning_rate_schedule(global_step, num_steps)
        optimizer = make_optimizer(learning_rate)

    tower_sums, first = [], None
    for i, device in enumerate(devices):
        with tf.device(_placement(variable_device, device)), tf.name_scope('tower_%d' % i):
            images = split['image'][i]
            targets = {name: split[name][i] for name in heads.TARGET_CHANNELS}
            outputs = model.build_model(images, is_training=True, output_stride=stride,
                                        depth=config.BACKBONE_DEPTH, reuse=True if i else None)
            with tf.name_scope('losses'):
                tower_sums.append(model.loss_sums(outputs, targets))
            if i == 0:
                weight_decay = model.weight_decay_loss()  # counted once, over the shared variables
                first = (images, outputs, targets)
                # Batch-norm statistics (when they train) follow the first tower, as in TF's multi-GPU recipes
                # (and, on several machines, each worker's own first tower: the chief's are saved).
                update_ops = tf.get_collection(tf.GraphKeys.UPDATE_OPS, scope='tower_0')

    # Each loss is divided once, by the valid-position count of the whole batch: averaging per-tower means
    # would weight a sample by how few valid positions its tower's other samples have.
    with tf.device('/cpu:0'), tf.name_scope('batch_losses'):
        batch_sums = add_sums(tower_sums)
        if runtime is not None:  # the whole global batch's sums, and whether any worker asks to stop
            batch_sums, graph['stop_requests'] = runtime.all_reduce_sum((batch_sums, stop_request))
        losses = model.losses_from_sums(batch_sums, weight_decay)
    tower_grads = []
    variables = tf.trainable_variables()
    for i, device in enumerate(devices):
        with tf.device(_placement(variable_device, device)), tf.name_scope('tower_%d' % i):
            share = tower_share_loss(tower_sums[i], batch_sums, weight_decay, num_towers * workers)
            tower_grads.append(optimizer.compute_gradients(share, variables, colocate_gradients_with_ops=True))
    grads_and_vars = sum_gradients(tower_grads)
    unused = [v.op.name for g, v in grads_and_vars if g is None]
    if unused:
        print('train: no gradient reaches %d trainable variables (not updated): %s'
              % (len(unused), ', '.join(unused[:5]) + (' ...' if len(unused) > 5 else '')), file=sys.stderr)
    grads_and_vars = [(g, v) for g, v in grads_and_vars if g is not None]
    trained = [v for _, v in grads_and_vars]

    with tf.device(variable_device):
        with tf.control_dependencies(update_ops):
            # In the strategy's replica this sums the workers' gradients (MultiWorkerMirroredStrategy's
            # all-reduce) before the one update every worker applies.
            apply_op = optimizer.apply_gradients(grads_and_vars, global_step=global_step)
        # num_updates makes the averaging decay min(decay, (1 + step) / (10 + step)): early averages are not
        # dominated by the initial weights, and the value is restored with global_step on resume.
        ema = tf.train.ExponentialMovingAverage(config.MOVING_AVERAGE_DECAY, num_updates=global_step)
        with tf.control_dependencies([apply_op]):
            train_op = ema.apply(trained)
        reset_averages = tf.group(*[tf.assign(ema.average(v), v) for v in trained], name='reset_averages')
        all_finite = tf.reduce_all(tf.stack([tf.reduce_all(tf.is_finite(v)) for v in trained]))

    summaries = [tf.summary.scalar('losses/' + name, losses[name]) for name in heads.LOSS_KEYS if name in losses]
    summaries.append(tf.summary.scalar('optimizer/learning_rate', learning_rate))
    gradient_norm = tf.global_norm([g for g, _ in grads_and_vars])  # of this worker's share on several machines
    summaries.append(tf.summary.scalar('optimizer/gradient_norm', gradient_norm))
    summaries.append(_image_summary(*first, max_images=config.SUMMARY_IMAGES))
    graph.update({'losses': losses, 'grads_and_vars': grads_and_vars, 'train_op': train_op,
                  'global_step': global_step, 'learning_rate': learning_rate, 'ema': ema,
                  'summary_op': tf.summary.merge(summaries), 'all_finite': all_finite,
                  'reset_averages': reset_averages, 'towers': num_towers})


def restore_or_initialise(sess, graph, train_dir, from_scratch=None, backbone_checkpoint=None, log=None,
                          run_options=None, chief=True):
    """Resumes from the newest readable checkpoint of `train_dir`, or initialises a fresh run.

    Fresh: every variable from its initialiser, then (unless from scratch) the backbone from the TF-Slim
    checkpoint, then the moving averages set to those weights. A damaged newer checkpoint (a truncated file)
    is reported through log(message, error=True), passed over and deleted. Then the train dir is pruned to
    config.CHECKPOINTS_TO_KEEP checkpoints (those of earlier runs count) without leftovers of interrupted
    saves, and the Saver takes the kept ones over so that it deletes them in turn: the caller must hold the
    train dir's checkpoints.TrainDirLock.
    Args:
      graph: build_training_graph's dict.
      run_options: tf.RunOptions of the initialiser (on several machines a collective: the chief's initial
        values reach every worker).
      chief: False for the non-chief workers of a cluster, which neither delete nor prune the shared train dir.
    Returns:
      (global step, description of what was done).
    Raises:
      CheckpointMismatchError: the newest checkpoint holds another model's variables.
    """
    tf = _tf()
    log = log or _default_log
    from_scratch = config.TRAIN_FROM_SCRATCH if from_scratch is None else from_scratch
    backbone_checkpoint = config.BACKBONE_CHECKPOINT if backbone_checkpoint is None else backbone_checkpoint
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
                    % (prefix, os.path.join(train_dir, CONFIG_SNAPSHOT), str(e).splitlines()[0])) from None
        restored, damaged = restore_newest_readable(train_dir, restore, lambda m: log('WARNING: ' + m, error=True))
    if restored is None:
        sess.run(tf.global_variables_initializer(), options=run_options)
    if chief:  # the one process of a run that writes the train dir (the workers of a cluster only read it)
        for prefix in damaged:  # it would count as one of the newest and shadow the intact ones from eval.py
            log('train: deleting the damaged %s' % prefix, error=True)
            checkpoints.remove(prefix)
        protect = [restored] if restored else []
        kept = checkpoints.prune(train_dir, CHECKPOINT_PREFIX, config.CHECKPOINTS_TO_KEEP, protect=protect)
        graph['saver'].recover_last_checkpoints(kept)
    if restored:
        return int(sess.run(graph['global_step'])), 'resumed from %s' % restored
    if from_scratch:
        how = 'fresh start, every weight random (from scratch)'
    else:
        import resnet
        resnet.load_backbone_checkpoint(sess, backbone_checkpoint, backbone_scope())
        how = 'fresh start, backbone from %s' % backbone_checkpoint
    sess.run(graph['reset_averages'])
    return 0, how


def restore_newest_readable(path, restore, warn):
    """Calls restore(prefix) on the newest checkpoint of `path` that can be read.

    `path` is a train dir or a checkpoint prefix. In a train dir, a checkpoint that vanishes meanwhile (the
    retention of a training that is writing there) is passed over for the next newest, and so is a damaged
    one (truncated or unreadable files: TensorFlow's DataLossError, OutOfRangeError or a bare OpError), with
    warn(message). A prefix asked for by name has no fallback. Any other error of restore() propagates.
    Returns (prefix restored or None if `path` has no checkpoint, list of the damaged prefixes passed over).
    Raises checkpoints.UnreadableCheckpointError if checkpoints exist but none can be read.
    """
    tf = _tf()
    tried, damaged = [], []
    while True:
        remaining = [p for p in checkpoints.candidates(path) if p not in tried]
        if not remaining:
            break
        prefix = remaining[0]
        tried.append(prefix)
        try:
            restore(prefix)
            return prefix, damaged
        except (tf.errors.OpError, ValueError) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            if not checkpoints.exists(prefix):
                continue  # deleted by a training's retention while we read it: the next newest
            unreadable = isinstance(error, (tf.errors.DataLossError, tf.errors.OutOfRangeError)) or \
                type(error) is tf.errors.OpError
            if not unreadable:
                raise
            damaged.append(prefix)
            if not os.path.isdir(path):
                break
            warn('%s cannot be read (%s: %s): trying the previous checkpoint' % (
                prefix, type(error).__name__, reason))
    if not tried:
        return None, damaged
    raise checkpoints.UnreadableCheckpointError(
        'no readable checkpoint in %s: %s' % (path, '; '.join(
            '%s %s' % (p, 'is damaged' if p in damaged else 'vanished') for p in tried)))


def write_config_snapshot(train_dir, step, log):
    """Writes config.json for this run; on resume, warns about every value that differs from the saved one.

    A previous snapshot that differs is kept as config-until-step-<step>.json.
    """
    path = os.path.join(train_dir, CONFIG_SNAPSHOT)
    current = config_snapshot()
    if os.path.isfile(path):
        with open(path) as f:
            saved = json.load(f)
        differences = [d for d in config_differences(saved.get('config', {}), current)
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


def latest_checkpoint(path):
    """Checkpoint prefix from a train dir (its newest) or a checkpoint prefix; FileNotFoundError if none."""
    if os.path.isdir(path):
        latest = checkpoints.latest_in(path)
        if latest is None:
            raise FileNotFoundError('no checkpoint in %s (train.py writes them there)' % path)
        return latest
    if checkpoints.exists(path):
        return path
    raise FileNotFoundError('checkpoint not found: %s' % path)


def restore_averaged_weights(sess, path, variables=None):
    """Restores the Polyak-averaged weights of a train.py checkpoint into the model of the current graph.

    Args:
      sess: session of a graph holding the model (model.build_model, same depth and heads as the run).
      path: a train dir (newest checkpoint) or a checkpoint prefix.
      variables: the variables to restore; None -> every global variable of the graph.
    Returns:
      the checkpoint prefix restored.
    """
    tf = _tf()
    checkpoint = latest_checkpoint(path)
    ema = tf.train.ExponentialMovingAverage(config.MOVING_AVERAGE_DECAY)  # the decay does not affect names
    mapping = ema.variables_to_restore(variables)
    # Only the model: the optimiser's own variables are not restored into an inference graph.
    mapping = {name: v for name, v in mapping.items() if 'global_step' not in v.op.name}
    tf.train.Saver(mapping).restore(sess, checkpoint)
    return checkpoint


# ----------------------------------------------------------------------------------------------------------
# Input and control
# ----------------------------------------------------------------------------------------------------------

# Prefetcher implementation details, not tuning knobs: how long a blocked put/get waits before re-checking
# for a close or stop request (short, so Ctrl-C is answered within a fraction of a second; long enough that
# polling costs nothing), and how long close() waits for the thread to hand over its last batch (a batch of
# large crops can take tens of seconds on a loaded CPU).
QUEUE_POLL_SECONDS = 0.2
CLOSE_TIMEOUT_SECONDS = 60.0


class Prefetcher:
    """Pulls batches from an iterable in a background thread, `capacity` ahead; measures consumer waits.

    The batches come from the worker processes of data_generator.SampleGenerator; the thread only moves
    them from its queue to this one, so the training step never waits on Python unless the workers are
    slower than the network. An exception in the source is re-raised by get().
    """
    _END = object()

    def __init__(self, batches, capacity, first=None):
        self._batches = batches
        self._first = first
        self._queue = queue.Queue(maxsize=max(1, capacity))
        self._closed = threading.Event()
        self.wait_seconds = 0.0  # total time get() spent blocked
        self._thread = threading.Thread(target=self._run, name='prefetch', daemon=True)
        self._thread.start()

    def _put(self, item):
        while not self._closed.is_set():
            try:
                self._queue.put(item, timeout=QUEUE_POLL_SECONDS)
                return True
            except queue.Full:
                pass
        return False

    def _run(self):
        try:
            if self._first is not None and not self._put(self._first):
                return
            self._first = None
            for batch in self._batches:
                if not self._put(batch):
                    return
            self._put(self._END)
        except BaseException as e:  # handed to the training thread, which reports it
            self._put(e)
        finally:
            # Closed by the thread that runs it: stops SampleGenerator's workers.
            close = getattr(self._batches, 'close', None)
            if close is not None:
                close()

    def get(self, should_stop=lambda: False):
        """Next batch; None if should_stop() turns true while waiting. Raises the source's exception."""
        start = time.perf_counter()
        try:
            while True:
                try:
                    item = self._queue.get(timeout=QUEUE_POLL_SECONDS)
                    break
                except queue.Empty:
                    if should_stop():
                        return None
                    if not self._thread.is_alive() and self._queue.empty():
                        raise RuntimeError('the input pipeline stopped without a reason')
        finally:
            self.wait_seconds += time.perf_counter() - start
        if item is self._END:
            raise RuntimeError('the input pipeline ended (SampleGenerator stopped yielding batches)')
        if isinstance(item, BaseException):
            raise RuntimeError('the input pipeline failed: %r' % item) from item
        return item

    def close(self, timeout=CLOSE_TIMEOUT_SECONDS):
        """Stops the thread (after the batch it is waiting for, if any) and the source iterator."""
        self._closed.set()
        self._thread.join(timeout=timeout)


class StopRequest:
    """Turns SIGINT/SIGTERM into a request to save and stop after the current step; a second one aborts."""

    def __init__(self, log):
        self.signal_name = None
        self._log = log
        self._previous = {}

    def __enter__(self):
        for signum in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[signum] = signal.signal(signum, self._handle)
            except ValueError:  # not the main thread: signals stay with the caller
                pass
        return self

    def _handle(self, signum, frame):
        name = signal.Signals(signum).name
        if self.signal_name is not None:
            raise KeyboardInterrupt('second %s: stopping now' % name)
        self.signal_name = name
        self._log('%s received: saving a checkpoint after this step, then stopping (again to abort)' % name)

    def __bool__(self):
        return self.signal_name is not None

    def __exit__(self, *exc):
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


def format_duration(seconds):
    """'1d 02:03:04' / '02:03:04' for a duration in seconds; '?' if unknown."""
    if seconds is None or not math.isfinite(seconds):
        return '?'
    seconds = int(round(seconds))
    days, seconds = divmod(seconds, 86400)
    text = '%02d:%02d:%02d' % (seconds // 3600, seconds // 60 % 60, seconds % 60)
    return ('%dd %s' % (days, text)) if days else text


class Eta(object):
    """Time left from the mean step time since the warm-up: the first config.ETA_WARMUP_STEPS steps after a
    (re)start also build and optimise the graph (seconds to a minute), which would make the first ETA hours
    too long. Feed it the wall-clock time after each step; `text` is '?' until a step after the warm-up."""

    def __init__(self, start_step, num_steps, start_time, warmup_steps=None):
        warmup_steps = config.ETA_WARMUP_STEPS if warmup_steps is None else warmup_steps
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

def train(train_dir=None, devices=None, session_config=None, log=_default_log, on_step=None):
    """Trains (or resumes training) up to config.NUM_STEPS with the current config values.

    Args:
      train_dir: None -> config.TRAIN_DIR.
      devices: one device per tower; None -> tower_devices(config.NUM_GPUS).
      session_config: tf.ConfigProto; None -> soft placement (ops without a GPU kernel run on the CPU).
      log: log(message, error=False) for progress lines and warnings.
      on_step: optional callback(dict) after every step: 'step', 'losses' (floats), 'step_seconds' (wall
        time since the previous step), 'wait_seconds' (of that, time waiting for input).
    Returns:
      dict: 'start_step', 'step' (last step run), 'checkpoint' (newest saved), 'stopped_by' ('done' or the
      signal name), 'how' (resumed / fresh start).
    Raises:
      BadPathError, ValueError, checkpoints.TrainDirBusyError (another training holds the train dir) before
      TensorFlow is imported; DeviceError (more towers than GPUs) before the data is read;
      CheckpointMismatchError, checkpoints.UnreadableCheckpointError on resume; NonFiniteError on a NaN or inf
      loss or weight.
    """
    train_dir = config.TRAIN_DIR if train_dir is None else train_dir
    check_settings(train_dir)
    cluster = distributed.cluster_from_env()
    if cluster is not None and not cluster.is_chief:  # the chief holds the lock for the whole cluster
        return _train_locked(train_dir, devices, session_config, _worker_log(log, cluster), on_step, cluster)
    with checkpoints.TrainDirLock(train_dir):  # a second training here stops now, before TensorFlow loads
        return _train_locked(train_dir, devices, session_config, log, on_step, cluster)


def _train_locked(train_dir, devices, session_config, log, on_step, cluster):
    """train() once the train dir is this run's (cluster: distributed.Cluster of a TF_CONFIG run, or None)."""
    _tf()  # TensorFlow's seconds of import only once the fast checks passed
    import data_generator
    devices = tower_devices(config.NUM_GPUS) if devices is None else list(devices)

    try:
        dataset = data_generator.CocoPersons(config.TRAIN_ANNOTATIONS, config.TRAIN_IMAGES)
    except (FileNotFoundError, ValueError) as e:  # e.g. a JSON file that is not COCO's
        raise BadPathError('training data: %s' % e) from e
    resume_step = checkpoint_step(train_dir)
    if resume_step is None and not config.TRAIN_FROM_SCRATCH:
        import resnet
        try:
            resnet.check_backbone_checkpoint(config.BACKBONE_CHECKPOINT, backbone_scope())
        except (FileNotFoundError, ValueError) as e:
            raise BadPathError('backbone checkpoint %s cannot initialise ResNet-v2-%d: %s\n%s' % (
                config.BACKBONE_CHECKPOINT, config.BACKBONE_DEPTH, e,
                backbone_download_hint(config.BACKBONE_CHECKPOINT, config.BACKBONE_DEPTH))) from e
    if config.TRAIN_FROM_SCRATCH and config.FREEZE_BATCH_NORM:
        log('note: TRAIN_FROM_SCRATCH with FREEZE_BATCH_NORM: batch norm keeps its initial statistics (mean 0, '
            'variance 1); the random backbone stays finite (config.ZERO_INIT_RESIDUAL) but learns without '
            'normalisation, usually more slowly (FREEZE_BATCH_NORM=False trains it, as --from-scratch does)',
            error=True)

    batch_size, num_steps = distributed.worker_batch(config.BATCH_SIZE, cluster, len(devices)), config.NUM_STEPS
    log('train: ResNet-v2-%d, %d tower(s) %s, batch %d%s, input %dx%d, %d images, train dir %s'
        % (config.BACKBONE_DEPTH, len(devices), ' '.join(devices), config.BATCH_SIZE,
           '' if cluster is None else ' over %d workers (%d here, %s)' % (cluster.size, batch_size, cluster.name()),
           config.INPUT_SIZE, config.INPUT_SIZE, len(dataset.image_ids), train_dir))
    # A different seed after each restart: a resumed run does not replay the first epoch's order. On several
    # machines every worker shuffles alike and makes its own share of each global batch.
    generator = data_generator.SampleGenerator(
        dataset, batch_size, config.INPUT_SIZE, config.TRAIN_OUTPUT_STRIDE, num_workers=config.NUM_WORKERS,
        seed=config.SEED + (resume_step or 0), shard=None if cluster is None else (cluster.index, cluster.size))
    try:
        # The first batch starts the worker processes here, from the main thread and before any session
        # exists: forked workers inherit no TensorFlow thread pools, and their parent-death signal is tied
        # to a thread that lives as long as the run.
        batches = iter(generator)
        prefetcher = Prefetcher(batches, config.PREFETCH_BATCHES, first=next(batches))
        try:
            return _train_session(train_dir, devices, session_config, log, on_step, prefetcher, batch_size,
                                  num_steps, cluster)
        finally:
            prefetcher.close()
    finally:
        try:
            generator.close()
        except ValueError:  # still running in the prefetch thread, which closes it when its batch arrives
            log('train: the input workers stop after their current batch', error=True)


def _train_session(train_dir, devices, session_config, log, on_step, prefetcher, batch_size, num_steps,
                   cluster=None):
    """train() once the data flows: graph, session, restore or initialise, the loop.

    With a cluster (distributed.Cluster) the graph runs in TensorFlow's multi-worker runtime, started here,
    after the input workers were forked; only the chief writes config.json, summaries and checkpoints.
    """
    tf = _tf()
    graph_start = time.perf_counter()
    with tf.Graph().as_default():
        runtime = None if cluster is None else distributed.Runtime(cluster, config.CLUSTER_TIMEOUT)
        graph = build_training_graph(batch_size, config.INPUT_SIZE, devices, num_steps, runtime)
        if runtime is not None:
            runtime.build_start_check()
            session_config = runtime.session_config
        if session_config is None:
            session_config = tf.ConfigProto(allow_soft_placement=True)
        chief = cluster is None or cluster.is_chief
        with tf.Session('' if runtime is None else runtime.target, config=session_config) as sess:
            if runtime is None:
                start_step, how = restore_or_initialise(sess, graph, train_dir, log=log)
            else:
                runtime.check_start(sess, checkpoint_step(train_dir) or 0, train_dir)
                with runtime.guard('the start'):
                    start_step, how = restore_or_initialise(sess, graph, train_dir, log=log,
                                                            run_options=runtime.run_options, chief=chief)
            log('train: %s at step %d (graph and session ready in %.0f s)'
                % (how, start_step, time.perf_counter() - graph_start))
            if chief:
                write_config_snapshot(train_dir, start_step, log)
            if start_step >= num_steps:
                log('train: step %d already reaches NUM_STEPS=%d; nothing to do' % (start_step, num_steps))
                return {'start_step': start_step, 'step': start_step, 'stopped_by': 'done', 'how': how,
                        'checkpoint': checkpoints.latest_in(train_dir)}
            writer = tf.summary.FileWriter(train_dir) if chief else None
            try:
                with StopRequest(log) as stop:
                    result = _loop(sess, graph, prefetcher, writer, train_dir, start_step, num_steps, stop,
                                   log, on_step, runtime)
            finally:
                if writer is not None:
                    writer.close()
    result.update(start_step=start_step, how=how)
    return result


def _loop(sess, graph, prefetcher, writer, train_dir, start_step, num_steps, stop, log, on_step, runtime=None):
    """The step loop of train(): feed, run, check, log, summarise, checkpoint.

    With a runtime (several machines) every worker runs the same fetches at every step; a stop asked on any
    worker travels in the next step to all, which stop after it; only the chief (writer not None) logs
    progress, writes summaries and saves.
    """
    chief = writer is not None
    everyone_stops = False
    inputs, losses = graph['inputs'], graph['losses']
    batch_size = int(inputs['image'].shape[0])
    prefix = os.path.join(train_dir, CHECKPOINT_PREFIX)
    state = {'saved_step': start_step, 'checkpoint': None}

    def save(step):
        if not sess.run(graph['all_finite']):
            raise NonFiniteError('step %d: the weights hold NaN or inf although the loss was finite; not '
                                 'saving them: the newest checkpoint holds the last good weights' % step, step)
        state['checkpoint'] = graph['saver'].save(sess, prefix, global_step=step, write_meta_graph=False)
        state['saved_step'] = step
        # The Saver deletes its own old checkpoints; this also removes what a failed save left (full disk).
        checkpoints.prune(train_dir, CHECKPOINT_PREFIX, config.CHECKPOINTS_TO_KEEP, protect=[state['checkpoint']])
        log('train: saved %s' % state['checkpoint'])

    step = start_step
    last_time = time.perf_counter()
    window = {'start': last_time, 'wait': 0.0, 'steps': 0, 'sums': {}}
    eta = Eta(start_step, num_steps, last_time)
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
            summarise = (step + 1) % config.SUMMARY_EVERY == 0 or step == start_step
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
            if chief and (step % config.LOG_EVERY == 0 or step == num_steps or step == start_step + 1):
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
            if chief and step % config.CHECKPOINT_EVERY == 0:
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
    parser.add_argument('--preset', choices=sorted(PRESETS),
                        help='start from a preset of config.py (quickstart: small model, synthetic data, CPU; '
                             'overfit: bench/overfit.py\'s memorisation of a few real images)')
    parser.add_argument('--train-dir', help='checkpoints and summaries (config.TRAIN_DIR)')
    parser.add_argument('--annotations', help='COCO person_keypoints JSON (config.TRAIN_ANNOTATIONS)')
    parser.add_argument('--images', help='folder of the training images (config.TRAIN_IMAGES)')
    parser.add_argument('--steps', type=int, help='total training steps (config.NUM_STEPS)')
    parser.add_argument('--batch-size', type=int, help='images per step over all GPUs (config.BATCH_SIZE)')
    parser.add_argument('--num-gpus', type=int, help='synchronous towers (config.NUM_GPUS)')
    parser.add_argument('--input-size', type=int, help='square training crop, n*16+1 (config.INPUT_SIZE)')
    parser.add_argument('--depth', type=int, choices=(50, 101, 152),
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
    """Config overrides of the command line: the preset, then the flags, then --set: dict NAME -> value."""
    overrides = preset_overrides(args.preset) if args.preset else {}
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


def main(argv=None):
    """Command line: exit status 0 done, 2 bad settings or paths, a train dir in use by another training or
    without a checkpoint this model can resume from, 3 NaN/inf, 4 another worker of the TF_CONFIG cluster is
    gone, 130 stopped by a signal (on any worker of a cluster)."""
    args = parse_args(argv)
    try:
        overrides = overrides_from_args(args)
        with config_overrides(overrides):
            check_settings()
    except (BadPathError, ValueError) as e:
        print('train.py: error: %s' % e, file=sys.stderr)
        return 2
    try:
        with config_overrides(overrides):
            result = train()
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
