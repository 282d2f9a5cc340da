"""Finding tf.train.Saver checkpoints on disk without TensorFlow (train.py resumes, inference.py runs them).

A checkpoint is a prefix: V2 files '<prefix>.index' + '<prefix>.data-*-of-*'; train.py names them
'<train dir>/model.ckpt-<global step>' and the Saver's state file '<train dir>/checkpoint' names the newest.
"""
import glob
import os
import re

CHECKPOINT_STATE = 'checkpoint'  # tf.train.Saver's state file in a train dir


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
    prefixes = [p[:-len('.index')] for p in glob.glob(os.path.join(directory, '*.index'))]
    if not prefixes:
        return None
    return max(prefixes, key=lambda p: (step_of(p), os.path.getmtime(p + '.index')))


def all_in(directory):
    """Every checkpoint prefix in `directory` ('*.index' files), oldest step first; [] if none."""
    if not os.path.isdir(directory):
        return []
    prefixes = [p[:-len('.index')] for p in glob.glob(os.path.join(directory, '*.index'))]
    return sorted(prefixes, key=lambda p: (step_of(p), os.path.getmtime(p + '.index')))
