"""Writing outputs safely: a folder is checked before any work, and a file appears only once complete."""
import contextlib
import os


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


def partial_path(path):
    """Where an output is written until it is complete: a hidden name beside `path`, same extension."""
    folder, name = os.path.split(os.path.abspath(path))
    root, extension = os.path.splitext(name)
    return os.path.join(folder, '.%s.partial-%d%s' % (root, os.getpid(), extension))


@contextlib.contextmanager
def atomic_output(path):
    """Yields a temporary path beside `path` (same extension, so OpenCV picks the same format) to write the
    whole output to; renamed to `path` when the block completes, removed if it fails (a full disk, an
    interrupted run): a file at `path` is always complete.

        with files.atomic_output('out/x.json') as partial:
            with open(partial, 'w') as f: json.dump(record, f)
    """
    partial = partial_path(path)
    try:
        yield partial
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def writable_folder(folder, what='output folder'):
    """Creates `folder` if needed and checks that it takes a new file, before any work is done.
    Raises OSError with one line naming it."""
    try:
        os.makedirs(folder, exist_ok=True)
        probe_writable(folder)
    except OSError as error:
        raise OSError('%s %s cannot be written: %s' % (what, folder, error.strerror or error)) from None
    return folder
