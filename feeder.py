"""The input side of train.py's loop: a prefetching feeder thread and the Ctrl-C / SIGTERM stop request.

`Prefetcher` keeps batches of data_generator.SampleGenerator ready in a background thread; `StopRequest`
turns SIGINT/SIGTERM into a request to save and stop after the current step.
"""
import queue
import signal
import threading
import time

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
