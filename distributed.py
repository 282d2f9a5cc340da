"""Training on several machines: TF_CONFIG, TensorFlow's MultiWorkerMirroredStrategy, worker loss.

train.py on N machines, each started with the same command and its own TF_CONFIG (the convention of Kubernetes
TFJob, cloud trainers and Ray Train), is one synchronous run (docs/training.md, "Several machines"):

    TF_CONFIG='{"cluster": {"worker": ["10.0.0.1:2222", "10.0.0.2:2222"]}, "task": {"type": "worker", "index": 0}}'

Worker 0 is the chief: it alone writes checkpoints, summaries, config.json and the progress log. Each worker
builds train.py's towers on its own devices for its BATCH_SIZE / N images and runs TensorFlow's collective
all-reduce (tf.distribute.experimental.MultiWorkerMirroredStrategy, graph mode, one replica per worker
holding the variables on its CPU) over the loss sums and the gradients: every worker applies the update of
the whole global batch. Without TF_CONFIG nothing here is used.

Everything up to `start` runs without TensorFlow, so a bad TF_CONFIG fails before its seconds of import.
"""
import collections
import contextlib
import json
import os
import socket

ENV_NAME = 'TF_CONFIG'
LOST_EXIT_STATUS = 4  # train.py's exit status when a worker is gone (2 is for user mistakes)


class ClusterError(ValueError):
    """A bad TF_CONFIG or a cluster that does not fit the settings; raised before TensorFlow loads."""


class WorkerLostError(RuntimeError):
    """Another worker died or stopped answering within config.CLUSTER_TIMEOUT; `workers` names them."""

    def __init__(self, message, workers=()):
        super().__init__(message)
        self.workers = tuple(workers)


class Cluster(collections.namedtuple('Cluster', ['workers', 'index'])):
    """The training cluster of TF_CONFIG: `workers` (tuple of 'host:port', in TF_CONFIG's order), `index`
    (this process's position in it)."""

    @property
    def size(self):
        return len(self.workers)

    @property
    def is_chief(self):
        return self.index == 0

    def name(self, index=None):
        """'worker <i> (<host:port>)', of this process by default."""
        index = self.index if index is None else index
        return 'worker %d (%s)' % (index, self.workers[index])


def parse_tf_config(text):
    """The Cluster described by a TF_CONFIG value (JSON text).

    Only 'worker' tasks: every machine is listed under cluster.worker and worker 0 is the chief (a 'chief',
    'ps' or 'evaluator' task is refused rather than silently ignored).
    Raises:
      ClusterError naming TF_CONFIG and what is wrong in it.
    """
    try:
        spec = json.loads(text)
    except ValueError as e:
        raise ClusterError('%s is not valid JSON (%s): %r' % (ENV_NAME, e, text[:200])) from None
    if not isinstance(spec, dict) or not isinstance(spec.get('cluster'), dict):
        raise ClusterError('%s must be a JSON object with a "cluster" object, got %r' % (ENV_NAME, text[:200]))
    cluster, task = spec['cluster'], spec.get('task')
    others = sorted(name for name in cluster if name != 'worker')
    if others:
        raise ClusterError('%s: only "worker" tasks are supported (list every machine under cluster.worker; '
                           'worker 0 is the chief), got %s' % (ENV_NAME, ', '.join(others)))
    workers = cluster.get('worker')
    if (not isinstance(workers, list) or not workers
            or not all(isinstance(w, str) and _port(w) is not None for w in workers)):
        raise ClusterError('%s: cluster.worker must be a non-empty list of "host:port" strings, got %r'
                           % (ENV_NAME, workers))
    if len(set(workers)) != len(workers):
        raise ClusterError('%s: cluster.worker lists an address twice: %r' % (ENV_NAME, workers))
    if not isinstance(task, dict) or task.get('type') != 'worker':
        raise ClusterError('%s: task must be {"type": "worker", "index": i}, got %r' % (ENV_NAME, task))
    index = task.get('index')
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(workers):
        raise ClusterError('%s: task.index %r is not one of the %d workers (0 to %d)'
                           % (ENV_NAME, index, len(workers), len(workers) - 1))
    return Cluster(tuple(workers), index)


def _port(address):
    host, sep, port = address.rpartition(':')
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    return int(port)


def cluster_from_env(environ=None):
    """The Cluster of the TF_CONFIG environment variable, or None when it is unset or empty (one machine)."""
    text = (os.environ if environ is None else environ).get(ENV_NAME, '').strip()
    return parse_tf_config(text) if text else None


def tf_config(workers, index):
    """The TF_CONFIG value (JSON text) of worker `index` of a cluster of `workers` ('host:port' strings)."""
    return json.dumps({'cluster': {'worker': list(workers)}, 'task': {'type': 'worker', 'index': index}})


def free_local_ports(count):
    """`count` TCP ports free on 127.0.0.1 when called: a cluster on one machine (tests, benchmark)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(('127.0.0.1', 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def worker_batch(batch_size, cluster, num_towers):
    """Images per step on one worker: batch_size // cluster.size (batch_size itself without a cluster).

    Raises:
      ValueError (ClusterError with a cluster) unless the global batch splits evenly over the workers and
      then over each one's towers.
    """
    if cluster is None:
        if batch_size % num_towers:
            raise ValueError('BATCH_SIZE (%d) must be a multiple of NUM_GPUS (%d): each tower gets an equal '
                             'share' % (batch_size, num_towers))
        return batch_size
    if batch_size % (cluster.size * num_towers):
        raise ClusterError('BATCH_SIZE (%d, the global batch) must be a multiple of the %d workers of %s '
                           'times NUM_GPUS (%d): each tower gets an equal share'
                           % (batch_size, cluster.size, ENV_NAME, num_towers))
    return batch_size // cluster.size


def check_port(cluster):
    """Raises ClusterError if this worker's port is already taken on this machine (before TensorFlow's
    "Could not start gRPC server", which does not say which port)."""
    port = _port(cluster.workers[cluster.index])
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        probe.bind(('', port))
    except OSError as e:
        raise ClusterError('%s cannot listen on port %d (%s): another program (an earlier run?) holds it; '
                           'choose another port in %s' % (cluster.name(), port, e.strerror, ENV_NAME)) from None
    finally:
        probe.close()


def unreachable_workers(cluster, connect_timeout=3.0):
    """Indices of the other workers whose address takes no TCP connection (process gone, machine down)."""
    gone = []
    for index, address in enumerate(cluster.workers):
        if index == cluster.index:
            continue
        host, _, port = address.rpartition(':')
        try:
            socket.create_connection((host.strip('[]'), int(port)), timeout=connect_timeout).close()
        except OSError:
            gone.append(index)
    return gone


def lost_worker_error(cluster, timeout, where, error):
    """The WorkerLostError for a failed collective run at `where` ('step 12', 'the start'): names the workers
    that are gone, or all the others if every one still takes connections."""
    gone = unreachable_workers(cluster)
    if gone:
        who = ', '.join(cluster.name(i) for i in gone)
        what = '%s %s gone (no connection)' % (who, 'is' if len(gone) == 1 else 'are')
    else:
        gone = [i for i in range(cluster.size) if i != cluster.index]
        what = 'no answer from %s within %.0f s (reachable, but stuck or not started?)' % (
            ', '.join(cluster.name(i) for i in gone), timeout)
    return WorkerLostError(
        '%s, %s: %s; stopping (the newest checkpoint of the train dir is kept; run the same commands '
        'on every worker to resume). Timeout: config.CLUSTER_TIMEOUT / --cluster-timeout (%.0f s). [%s]'
        % (cluster.name(), where, what, timeout, type(error).__name__), gone)


class Runtime:
    """TensorFlow's side of a cluster: the strategy, this worker's gRPC server, session settings, timeouts.

    Attributes:
      cluster: the Cluster.
      strategy: tf.distribute.experimental.MultiWorkerMirroredStrategy, one CPU replica per worker (train.py
        places its towers on this worker's GPUs inside it).
      target: the session target (this worker's server).
      session_config: tf.ConfigProto from the strategy (device filters to this worker, collective settings).
      run_options: tf.RunOptions with the timeout, for every session run.
      timeout: seconds (config.CLUSTER_TIMEOUT).
    """

    def __init__(self, cluster, timeout):
        import tensorflow.compat.v1 as tf
        self.cluster, self.timeout = cluster, float(timeout)
        spec = tf.train.ClusterSpec({'worker': list(cluster.workers)})
        # No accelerators for the strategy: one replica per worker, its variables on the CPU, so train.py's
        # own towers (a share of the worker's batch per GPU) work unchanged inside the replica.
        resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            spec, task_type='worker', task_id=cluster.index, rpc_layer='grpc')
        self.strategy = tf.distribute.experimental.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
        self.session_config = self.strategy.update_config_proto(tf.ConfigProto(allow_soft_placement=True))
        try:
            self.server = tf.train.Server(spec, job_name='worker', task_index=cluster.index,
                                          config=self.session_config, start=True)
        except tf.errors.OpError as e:
            raise ClusterError('%s: the gRPC server does not start (port in use?): %s'
                               % (cluster.name(), str(e).splitlines()[0])) from None
        self.target = self.server.target
        self.run_options = tf.RunOptions(timeout_in_ms=int(self.timeout * 1000))
        self.collective_options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=self.timeout)

    @contextlib.contextmanager
    def guard(self, where):
        """Turns the errors of a session run that a lost worker causes into a WorkerLostError naming it."""
        import tensorflow.compat.v1 as tf
        try:
            yield
        except (tf.errors.DeadlineExceededError, tf.errors.UnavailableError, tf.errors.AbortedError,
                tf.errors.CancelledError, tf.errors.InternalError) as e:
            raise lost_worker_error(self.cluster, self.timeout, where, e) from e

    def build_start_check(self):
        """Adds the collective that check_start runs; call it at the same point of every worker's graph."""
        import tensorflow.compat.v1 as tf
        self._start_step = tf.placeholder(tf.float32, [], name='start_step')
        self._start_sum = self.call_in_replica(lambda: self.all_reduce_sum(self._start_step))

    def check_start(self, sess, step, train_dir):
        """Raises ClusterError unless every worker starts at `step` (its newest checkpoint in train_dir):
        they do only if the train dir is one folder they all see. Collective, so every worker runs it."""
        with self.guard('the start'):
            total = sess.run(self._start_sum, {self._start_step: step}, options=self.run_options)
        # Every worker compares its own step with the mean: all pass only if all steps are equal.
        if abs(total - step * self.cluster.size) > 0.5:
            raise ClusterError('%s would start at step %d (newest checkpoint of %s) but the workers\' mean is '
                               '%.1f: every worker must use the same train dir, one folder shared by all machines'
                               % (self.cluster.name(), step, train_dir, total / self.cluster.size))

    def call_in_replica(self, function):
        """function() in the strategy's replica (this worker's one), as Python: its result.

        Bind arguments in `function` (a closure): the strategy copies nests passed as its args, so a dict
        the function fills would not be the caller's.
        """
        import tensorflow.compat.v1 as tf
        # Not through AutoGraph, which the strategy applies by default: the function is graph-building Python
        # (AutoGraph's conversion of train.py's step mixes up bound methods of this class).
        function = tf.autograph.experimental.do_not_convert(function)
        with self.strategy.scope():
            return self.strategy.extended.call_for_each_replica(function)

    def all_reduce_sum(self, value):
        """Sum over the workers of a nest of tensors, inside the strategy's replica function."""
        import tensorflow.compat.v1 as tf
        # Copied onto the replica's device first: the strategy takes a tensor's device as the destination of
        # its sum, and a placeholder made outside the replica has none of this worker's.
        value = tf.nest.map_structure(tf.identity, value)
        return tf.distribute.get_replica_context().all_reduce('sum', value, options=self.collective_options)
