"""The one module that owns a train dir (a run directory): finding and listing its checkpoints (train.py
resumes, inference runs them), reading the settings the run trained with (its config.json), restoring its
Polyak-averaged weights, pruning it, and the lock that keeps one training per train dir.

Light tools import it: TensorFlow is imported only inside the functions that restore or read variables.

A checkpoint is a prefix: V2 files '<prefix>.index' + '<prefix>.data-*-of-*'; train.py names them
'<train dir>/model.ckpt-<global step>' and the Saver's state file '<train dir>/checkpoint' names the newest.
A save writes '<prefix>.data-*.tempstate<n>' and renames it when complete, then writes the index: a save cut
short (SIGKILL, power loss, full disk) leaves a .tempstate file or a data file without an index behind.
"""
import contextlib
import errno
import fcntl
import glob
import json
import os
import re
import socket
import sys
import time

import config
import settings

CHECKPOINT_STATE = 'checkpoint'  # tf.train.Saver's state file in a train dir
LOCK_FILE = '.train.lock'  # in the train dir; holds the pid, host and command of the training that has it
CONFIG_SNAPSHOT = 'config.json'  # written in the train dir beside the checkpoints (train.write_config_snapshot)
CHECKPOINT_PREFIX = 'model.ckpt'  # checkpoints are <train dir>/model.ckpt-<global step>
EMA_SUFFIX = '/ExponentialMovingAverage'  # Polyak averages in a train.py checkpoint: '<variable>' + this
# Config values that decide the network a checkpoint holds: inference builds the model with the run's.
# BATCH_NORM_TRAIN_AFFINE decides which variables the run averaged.
MODEL_CONFIG_NAMES = ('BACKBONE_DEPTH', 'INTERMEDIATE_SUPERVISION', 'INTERMEDIATE_BLOCK', 'OFFSET_OUTPUT_SCALE',
                      'REFINEMENT_STEPS', 'LONG_SELF_REFINEMENT_STEPS', 'BATCH_NORM_EPSILON', 'RADIUS',
                      'BATCH_NORM_TRAIN_AFFINE')
# The model settings that decide the checkpoint's variables: a run cannot resume with other values (train.py).
VARIABLE_CONFIG_NAMES = ('BACKBONE_DEPTH', 'INTERMEDIATE_SUPERVISION', 'INTERMEDIATE_BLOCK')
# What a run whose config.json predates a model setting trained with: the behaviour before the setting existed.
MODEL_CONFIG_BEFORE = {'LONG_SELF_REFINEMENT_STEPS': 0}


class NoCheckpointError(FileNotFoundError):
    """No usable checkpoint where one was looked for; the message says how to train one or where to put it."""


def _tf():
    import tensorflow.compat.v1 as tf  # late: finding checkpoints and reading settings must not wait for TF
    return tf


def checkpoint_prefix(path):
    """The checkpoint prefix `path` names ('x.index', 'x.data-00000-of-00001' or 'x' itself), or None."""
    for pattern in (r'\.index$', r'\.data-\d+-of-\d+$', r'\.meta$'):
        path = re.sub(pattern, '', path)
    return path if os.path.isfile(path + '.index') else None


def exists(prefix):
    """True if a checkpoint exists at `prefix`: V2 '<prefix>.index' or a V1 single file (older TF-Slim)."""
    return os.path.isfile(prefix + '.index') or os.path.isfile(prefix)


def step_of(prefix):
    """The global step in a checkpoint name '...-<step>'; -1 if it has none."""
    match = re.search(r'-(\d+)$', prefix)
    return int(match.group(1)) if match else -1


def latest_in(directory):
    """Newest checkpoint prefix in `directory`: the one its 'checkpoint' state file names if that exists,
    else the highest step among '*.index' files; None if there is none (or no such folder)."""
    if not os.path.isdir(directory):
        return None
    state = os.path.join(directory, CHECKPOINT_STATE)
    if os.path.isfile(state):
        with open(state) as f:
            match = re.search(r'^model_checkpoint_path:\s*"(.*)"\s*$', f.read(), re.MULTILINE)
        if match:
            named = match.group(1)
            prefix = checkpoint_prefix(named if os.path.isabs(named) else os.path.join(directory, named))
            if prefix:
                return prefix
    prefixes = all_in(directory)
    return prefixes[-1] if prefixes else None


def how_to_get_a_checkpoint():
    """The lines NoCheckpointError ends with: how to train a model or where to put one."""
    return ('  Train one:  python train.py                     (COCO; README, "Training")\n'
            '     or, on a CPU (synthetic people, minutes to an hour: docs/training.md):\n'
            '              python train.py --preset quickstart  (synthetic people; then: python demo.py '
            '--preset quickstart)\n'
            '  or put a train.py checkpoint (checkpoint, model.ckpt-<step>.index, model.ckpt-<step>.data-*, '
            'config.json)\n'
            '  in %s (config.TRAIN_DIR), or pass --checkpoint DIR_OR_PREFIX.' % config.TRAIN_DIR)


def latest(path):
    """The checkpoint prefix `path` names: a train dir (its newest), a prefix, or its .index / .data file.

    Raises NoCheckpointError naming `path` and how to train a model.
    """
    if os.path.isdir(path):
        prefix = latest_in(path)
        if prefix is None:
            raise NoCheckpointError('no checkpoint in %s.\n%s' % (path, how_to_get_a_checkpoint()))
        return prefix
    prefix = checkpoint_prefix(path)
    if prefix is None:
        raise NoCheckpointError('checkpoint not found: %s (neither a folder nor a checkpoint prefix with '
                                'a .index file).\n%s' % (path, how_to_get_a_checkpoint()))
    return prefix


def find(path=None):
    """The checkpoint prefix to run: latest(path), or for None the newest checkpoint of config.TRAIN_DIR,
    else the newest under any folder of config.MODEL_DIR (e.g. model/quickstart/).

    Raises NoCheckpointError naming where it looked and how to train a model.
    """
    if path:
        return latest(path)
    prefix = latest_in(config.TRAIN_DIR)
    if prefix:
        return prefix
    found = []
    if os.path.isdir(config.MODEL_DIR):
        for name in sorted(os.listdir(config.MODEL_DIR)):
            candidate = latest_in(os.path.join(config.MODEL_DIR, name))
            if candidate:
                found.append(candidate)
    if not found:
        raise NoCheckpointError('no trained PersonLab checkpoint found: looked in %s (config.TRAIN_DIR) and in '
                                'the folders of %s (config.MODEL_DIR).\n%s'
                                % (config.TRAIN_DIR, config.MODEL_DIR, how_to_get_a_checkpoint()))
    return max(found, key=lambda p: os.path.getmtime(p + '.index'))


def backbone_prefix(path):
    """The checkpoint prefix (V2) or file (V1) of a backbone checkpoint that `path` names; FileNotFoundError
    if it is not all there.

    `path` may be a prefix ('model/101/resnet_v2_101.ckpt'), a V1 single-file checkpoint (TF-Slim's 2017
    releases) or a folder holding checkpoints (its latest).
    """
    hint = ' (README.md, "Backbone", says how to get the TF-Slim ImageNet checkpoint)'
    if os.path.isdir(path):
        newest = latest_in(path)
        if newest is None:
            raise FileNotFoundError('backbone checkpoint: folder %s holds no checkpoint%s' % (path, hint))
        path = newest
    if os.path.isfile(path + '.index'):
        if not glob.glob(glob.escape(path) + '.data-*'):
            raise FileNotFoundError('backbone checkpoint %s: %s.index exists but no %s.data-* file'
                                    % (path, path, path))
        return path
    if os.path.isfile(path):
        return path
    raise FileNotFoundError('backbone checkpoint %s not found (neither %s nor %s.index exists)%s'
                            % (path, path, path, hint))


def checkpoint_step(train_dir):
    """Global step of the newest checkpoint in `train_dir` (from its name model.ckpt-<step>), None if none."""
    newest = latest_in(train_dir)
    if newest is None:
        return None
    return max(step_of(newest), 0)


def has_checkpoint(train_dir):
    """True if the train dir holds a checkpoint to resume from (its 'checkpoint' state file)."""
    return os.path.isfile(os.path.join(train_dir, CHECKPOINT_STATE))


def read_snapshot(train_dir):
    """The train dir's config.json record ({'config': NAME -> value, 'argv', 'start_step', 'started'}), or None
    if it has none."""
    path = os.path.join(train_dir, CONFIG_SNAPSHOT)
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def load_run_config(train_dir):
    """The config values a train dir's checkpoints were trained with (its config.json): dict NAME -> value.

    Raises FileNotFoundError if `train_dir` holds no config.json.
    """
    record = read_snapshot(train_dir)
    if record is None:
        raise FileNotFoundError('%s not found: %s is not a train.py train dir'
                                % (os.path.join(train_dir, CONFIG_SNAPSHOT), train_dir))
    return record['config']


def model_overrides(train_dir):
    """The run's values of MODEL_CONFIG_NAMES (lists as tuples; MODEL_CONFIG_BEFORE for those its config.json
    predates): dict NAME -> value."""
    run_config = load_run_config(train_dir)
    overrides = {}
    for name in MODEL_CONFIG_NAMES:
        if name in run_config:
            value = run_config[name]
            overrides[name] = tuple(value) if isinstance(value, list) else value
        elif name in MODEL_CONFIG_BEFORE:
            overrides[name] = MODEL_CONFIG_BEFORE[name]
    return overrides


def run_settings(train_dir, base=None):
    """The settings to build and decode the network a train dir holds: `base` (None: config.py's) with the
    run's model values (model_overrides): settings.Settings.

        options = checkpoints.run_settings(train_dir).replace(RADIUS=args.radius)
    Raises FileNotFoundError if `train_dir` holds no config.json.
    """
    return settings.resolve(base).replace(**model_overrides(train_dir))


def checkpoint_settings(prefix, base=None):
    """How to build and decode the network a checkpoint holds.

    Args:
      prefix: a checkpoint prefix (its folder's config.json serves any of its checkpoints).
      base: settings.Settings to start from (None: config.py's).
    Returns dict:
      'options'     settings.Settings to build the model with: run_settings of its train dir; without a
                    config.json beside the checkpoint, `base` with the depth read from its variable names
      'input_size'  the run's training INPUT_SIZE, or None if unknown
      'radius'      the run's disk radius RADIUS (px), the one its targets were made with and decoding must use,
                    or None if unknown (then config.RADIUS)
      'step'        the global step in the checkpoint's name (-1 if none)
      'warnings'    list of messages for the user
      'train_annotations'     the run's TRAIN_ANNOTATIONS, or None if unknown
      'trained_on_synthetic'  True if those were a synthetic.py set (synthetic.is_synthetic_run)
    Raises UnreadableCheckpointError, or ValueError if the checkpoint holds no single ResNet-v2.
    """
    import synthetic
    train_dir = os.path.dirname(os.path.abspath(prefix))
    warnings = []
    run = {}
    if os.path.isfile(os.path.join(train_dir, CONFIG_SNAPSHOT)):
        run = load_run_config(train_dir)
        options = run_settings(train_dir, base)
        input_size = run.get('INPUT_SIZE')
        radius = run.get('RADIUS')
    else:
        tf = _tf()
        try:
            names = [name for name, _ in tf.train.list_variables(prefix)]
        except tf.errors.OpError as error:
            raise UnreadableCheckpointError('%s cannot be read: %s' % (prefix, str(error).strip().splitlines()[0]))
        depths = sorted({int(m.group(1)) for m in (re.match(r'resnet_v2_(\d+)/', n) for n in names) if m})
        if len(depths) != 1:
            raise ValueError('%s is not a PersonLab checkpoint: expected the variables of one ResNet-v2 '
                             '(resnet_v2_<depth>/...), found depths %s' % (prefix, depths))
        options = settings.resolve(base).replace(BACKBONE_DEPTH=depths[0])
        input_size = radius = None
        warnings.append('no %s beside %s: building ResNet-v2-%d with the other model settings of config.py'
                        % (CONFIG_SNAPSHOT, prefix, depths[0]))
    return {'options': options, 'input_size': input_size, 'radius': radius, 'step': step_of(prefix),
            'warnings': warnings, 'train_annotations': run.get('TRAIN_ANNOTATIONS'),
            'trained_on_synthetic': synthetic.is_synthetic_run(run)}


def _mtime(path):
    try:
        return os.path.getmtime(path)
    except OSError:  # deleted meanwhile by the retention of a training that writes the folder
        return -1.0


def all_in(directory):
    """Every checkpoint prefix in `directory` ('*.index' files), oldest step first; [] if none."""
    if not os.path.isdir(directory):
        return []
    prefixes = [p[:-len('.index')] for p in glob.glob(os.path.join(glob.escape(directory), '*.index'))]
    return sorted(prefixes, key=lambda p: (step_of(p), _mtime(p + '.index')))


def candidates(path):
    """Checkpoint prefixes to try for `path`, newest first: a folder's latest_in, then its other checkpoints
    by falling step; a prefix alone (no fallback: it was asked for). Files may vanish while a training runs."""
    if not os.path.isdir(path):
        return [path]
    newest = latest_in(path)
    rest = [p for p in reversed(all_in(path)) if p != newest]
    return ([newest] if newest else []) + rest


def prune(directory, name, keep, protect=()):
    """Deletes what a training no longer needs in its train dir: checkpoints '<name>-<step>' beyond the
    newest `keep` by step (None or 0: keep all), except the prefixes in `protect`, and the leftovers of saves
    cut short ('.tempstate' files, data files without an index, the state file's temporaries).

    Only the training that holds the train dir's TrainDirLock may call it: a save in progress looks like a
    leftover. Returns the prefixes kept, oldest first (for tf.train.Saver.recover_last_checkpoints).
    """
    own = re.compile(r'^%s-(\d+)(\.|$)' % re.escape(name))
    complete = [p for p in all_in(directory) if own.match(os.path.basename(p))]
    protect = {os.path.abspath(p) for p in protect}
    newest = set(complete[-keep:]) if keep else set(complete)
    kept = [p for p in complete if p in newest or os.path.abspath(p) in protect]
    kept_names = {os.path.basename(p) for p in kept}
    for entry in os.listdir(directory):
        match = own.match(entry)
        if match:
            prefix = entry[:match.end(1)]
            if prefix in kept_names and '.tempstate' not in entry:
                continue
        elif not entry.startswith(CHECKPOINT_STATE + '.tmp'):
            continue
        path = os.path.join(directory, entry)
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            os.remove(path)
    return kept


def remove(prefix):
    """Deletes the files of the checkpoint at `prefix` (index, data shards, leftovers of its save)."""
    for path in glob.glob(glob.escape(prefix) + '.*'):
        with contextlib.suppress(FileNotFoundError, IsADirectoryError):
            os.remove(path)


class UnreadableCheckpointError(ValueError):
    """Checkpoints exist where one was looked for, but none can be read (damaged or vanished)."""


_HELD = set()  # lock files this process holds: closing any other descriptor of one would drop its lock


class TrainDirBusyError(OSError):
    """Another training holds the train dir's lock; the message names it."""


class TrainDirLock(object):
    """One training per train dir: an exclusive lock on '<train dir>/.train.lock' held while the training runs.

    The kernel drops the lock when its process ends, however it ends (SIGKILL too), so nothing stays stuck.
    The workers of one multi-worker run share a train dir: only the chief (the one that saves) takes it.
    It is a POSIX record lock: it belongs to the process, so forked data workers do not hold it, and a second
    TrainDirLock on the same folder in the same process is refused here (the kernel would grant it).

        with checkpoints.TrainDirLock(train_dir):
            ...  # train
    Raises TrainDirBusyError naming the holder (pid, host, command, since when) if it is taken.
    """

    def __init__(self, train_dir):
        self.path = os.path.join(train_dir, LOCK_FILE)
        self.fd = None

    def acquire(self):
        key = os.path.realpath(self.path)
        if key in _HELD:
            raise TrainDirBusyError('train dir %s is already in use by this process (pid %d)'
                                    % (os.path.dirname(self.path), os.getpid()))
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            raise TrainDirBusyError('train dir %s is in use by another training (%s); wait for it to end or '
                                    'choose another train dir' % (os.path.dirname(self.path), self.holder()))
        os.ftruncate(fd, 0)
        os.write(fd, ('pid %d on %s since %s: %s\n' % (
            os.getpid(), socket.gethostname(), time.strftime('%Y-%m-%d %H:%M:%S'),
            ' '.join(sys.argv))).encode())
        self.fd = fd
        _HELD.add(key)
        return self

    def holder(self):
        """The lock file's description of the training holding it."""
        try:
            with open(self.path) as f:
                text = f.read().strip()
        except OSError:
            text = ''
        return text or 'process unknown'

    def release(self):
        if self.fd is not None:
            _HELD.discard(os.path.realpath(self.path))
            os.close(self.fd)  # closing drops the lock; the file stays (removing it would race a new taker)
            self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *unused):
        self.release()


# ----------------------------------------------------------------------------------------------------------
# Restoring (TensorFlow)
# ----------------------------------------------------------------------------------------------------------
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
    checkpoint = latest(path)
    ema = tf.train.ExponentialMovingAverage(config.MOVING_AVERAGE_DECAY)  # the decay does not affect names
    mapping = ema.variables_to_restore(variables)
    # Only the model: the optimiser's own variables are not restored into an inference graph.
    mapping = {name: v for name, v in mapping.items() if 'global_step' not in v.op.name}
    tf.train.Saver(mapping).restore(sess, checkpoint)
    return checkpoint


def restore_polyak_weights(sess, prefix):
    """Restores a train.py checkpoint into the model of the session's graph, every variable from its Polyak
    average ('<name>/ExponentialMovingAverage') where the checkpoint has one, else from its own value
    (batch-norm moving statistics are never averaged), after checking that every variable is there with its
    shape.

    Returns a list of warnings. Raises ValueError naming the variables the checkpoint lacks or holds with
    other shapes.
    """
    tf = _tf()
    available = dict(tf.train.list_variables(prefix))
    graph_variables = tf.global_variables()
    averaged = [v for v in graph_variables if v.op.name + EMA_SUFFIX in available]
    missing = [v.op.name for v in graph_variables
               if v.op.name + EMA_SUFFIX not in available and v.op.name not in available]
    if missing:
        raise ValueError('%s lacks %d variables of this model, e.g. %s: was it trained with another '
                         'BACKBONE_DEPTH or head layout? (config.json beside it decides the model)'
                         % (prefix, len(missing), ', '.join(missing[:5])))
    wrong = [v.op.name for v in graph_variables if tuple(available.get(
        v.op.name + EMA_SUFFIX, available.get(v.op.name))) != tuple(v.shape.as_list())]
    if wrong:
        raise ValueError('%s: %d variables have other shapes than this model, e.g. %s'
                         % (prefix, len(wrong), ', '.join(wrong[:5])))
    warnings = []
    if not averaged:
        warnings.append('%s holds no Polyak averages (%s): using its raw weights' % (prefix, EMA_SUFFIX))
    restore_averaged_weights(sess, prefix, variables=averaged)
    return warnings


def restore_newest_readable(path, restore, warn):
    """Calls restore(prefix) on the newest checkpoint of `path` that can be read.

    `path` is a train dir or a checkpoint prefix. In a train dir, a checkpoint that vanishes meanwhile (the
    retention of a training that is writing there) is passed over for the next newest, and so is a damaged
    one (truncated or unreadable files: TensorFlow's DataLossError, OutOfRangeError or a bare OpError), with
    warn(message). A prefix asked for by name has no fallback. Any other error of restore() propagates.
    Returns (prefix restored or None if `path` has no checkpoint, list of the damaged prefixes passed over).
    Raises UnreadableCheckpointError if checkpoints exist but none can be read.
    """
    tf = _tf()
    tried, damaged = [], []
    while True:
        remaining = [p for p in candidates(path) if p not in tried]
        if not remaining:
            break
        prefix = remaining[0]
        tried.append(prefix)
        try:
            restore(prefix)
            return prefix, damaged
        except (tf.errors.OpError, ValueError) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            if not exists(prefix):
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
    raise UnreadableCheckpointError(
        'no readable checkpoint in %s: %s' % (path, '; '.join(
            '%s %s' % (p, 'is damaged' if p in damaged else 'vanished') for p in tried)))
