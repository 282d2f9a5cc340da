"""A train dir's checkpoints on disk without TensorFlow: finding them (train.py resumes, inference.py runs
them), pruning them, and the lock that keeps one training per train dir.

A checkpoint is a prefix: V2 files '<prefix>.index' + '<prefix>.data-*-of-*'; train.py names them
'<train dir>/model.ckpt-<global step>' and the Saver's state file '<train dir>/checkpoint' names the newest.
A save writes '<prefix>.data-*.tempstate<n>' and renames it when complete, then writes the index: a save cut
short (SIGKILL, power loss, full disk) leaves a .tempstate file or a data file without an index behind.
"""
import contextlib
import errno
import fcntl
import glob
import os
import re
import socket
import sys
import time

CHECKPOINT_STATE = 'checkpoint'  # tf.train.Saver's state file in a train dir
LOCK_FILE = '.train.lock'  # in the train dir; holds the pid, host and command of the training that has it


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
