"""Speed of the PersonLab network on this machine: forward pass and training step, and how close to peak.

For ResNet-v2-101 (config.BACKBONE_DEPTH) at 401x401 and 801x801 inputs, output strides 16 and 8, batch 1:
  * forward: build_model(is_training=False) and every contract output (heatmaps, offsets after refinement,
    segmentation); the intermediate heads are not part of inference;
  * train step: build_model(is_training=True) with the intermediate heads (config), compute_losses against
    fixed random targets, one SGD-momentum update of every trainable variable;
  * FLOPs: the nominal work of every convolution and matmul, 2 x multiply-adds counted from the shapes of
    their ops (forward Conv2D, and in the training graph also Conv2DBackpropInput / Conv2DBackpropFilter).
    An atrous convolution is one Conv2D with dilations, counted like any other. The elementwise work
    (batch norm, relu, refinement, losses) is left out. GFLOP/s is this
    nominal count over the measured time;
  * matmul peak: GFLOP/s of a large float32 matmul (MATMUL_SIZE^2 x MATMUL_SIZE) with the same session
    settings, what this CPU's TensorFlow can do at best. One matmul runs right after every timed model run,
    so that on a shared machine both see the same load; each row compares its best model run with the best
    matmul run interleaved with it.
The backbone weights are random (speed does not depend on them). Times are the best of --repeats runs after
one warm-up run (as timeit advises: the run least disturbed by other processes on a shared machine), the
median in brackets.

Usage: python bench/model_bench.py [--sizes 401 801] [--strides 16 8] [--repeats 3] [--intra 2] [--inter 1]
Last line: model: forward <ms> ms, train step <ms> ms at 401x401 os16, <P>% of matmul peak
(P: the forward pass's GFLOP/s at 401x401 os16 over the matmul's); with --no-train it reads
"train step not measured (--no-train)".
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import machine  # noqa: E402

machine.quiet_tensorflow()

import tensorflow.compat.v1 as tf  # noqa: E402

import config  # noqa: E402
import grid  # noqa: E402
import heads  # noqa: E402
import model  # noqa: E402

tf.disable_eager_execution()

MATMUL_SIZE = 4096  # side of the square matmul that measures the machine's peak
CONV_OPS = ('Conv2D', 'Conv2DBackpropInput', 'Conv2DBackpropFilter', 'MatMul')
# The random training targets (speed does not depend on their values):
TARGET_OFFSET_RANGE = 50.0  # offset targets uniform in [-this, this] input px
TARGET_POSITIVE_FRACTION = 0.5  # share of positions where a binary map (heatmaps, masks, weights) is 1


def session_config(intra, inter):
    return tf.ConfigProto(intra_op_parallelism_threads=intra, inter_op_parallelism_threads=inter)


def conv_flops(graph):
    """Nominal 2 x multiply-adds of every convolution and matmul in `graph` (static shapes needed)."""
    total = 0
    for op in graph.get_operations():
        if op.type not in CONV_OPS:
            continue
        if op.type == 'MatMul':
            a = op.inputs[0].shape.as_list()
            inner = a[0] if op.get_attr('transpose_a') else a[1]
            total += 2 * int(np.prod(op.outputs[0].shape.as_list())) * inner
            continue
        if op.type == 'Conv2D':
            kernel, result = op.inputs[1].shape.as_list(), op.outputs[0].shape.as_list()
        elif op.type == 'Conv2DBackpropInput':  # (input_sizes, filter, out_backprop)
            kernel, result = op.inputs[1].shape.as_list(), op.inputs[2].shape.as_list()
        else:  # Conv2DBackpropFilter: (input, filter_sizes, out_backprop) -> filter gradient
            kernel, result = op.outputs[0].shape.as_list(), op.inputs[2].shape.as_list()
        if None in kernel or None in result:
            raise ValueError('conv_flops: %s has no static shape (%s, %s)' % (op.name, kernel, result))
        total += 2 * int(np.prod(result)) * kernel[0] * kernel[1] * kernel[2]
    return total


class MatmulProbe(object):
    """A MATMUL_SIZE^2 x MATMUL_SIZE float32 matmul in its own graph and session: run() -> seconds."""

    def __init__(self, session_conf):
        self.graph = tf.Graph()
        with self.graph.as_default():
            rng = np.random.RandomState(0)
            a = tf.Variable(rng.randn(MATMUL_SIZE, MATMUL_SIZE).astype(np.float32))
            b = tf.Variable(rng.randn(MATMUL_SIZE, MATMUL_SIZE).astype(np.float32))
            self.product = tf.reduce_sum(tf.matmul(a, b))  # a scalar fetch: no copy of the result timed
            self.sess = tf.Session(config=session_conf)
            self.sess.run(tf.global_variables_initializer())
        self.sess.run(self.product)  # warm-up

    def run(self):
        start = time.perf_counter()
        self.sess.run(self.product)
        return time.perf_counter() - start

    @staticmethod
    def gflops(seconds):
        return 2.0 * MATMUL_SIZE ** 3 / seconds / 1e9

    def close(self):
        self.sess.close()


def timed(sess, fetches, repeats, probe):
    """Times sess.run(fetches) `repeats` times after a warm-up, each run followed by one matmul run.

    Returns (best s, median s, best matmul GFLOP/s among the interleaved runs).
    """
    sess.run(fetches)
    times, matmul = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        sess.run(fetches)
        times.append(time.perf_counter() - start)
        matmul.append(probe.run())
    return float(np.min(times)), float(np.median(times)), probe.gflops(min(matmul))


def random_targets(rng, grid):
    """Fixed random targets of the contract on a grid x grid output, batch 1 (speed only)."""
    shape = (1, grid, grid)
    targets = {}
    for name, channels in heads.TARGET_CHANNELS.items():
        if name.endswith('offsets'):
            targets[name] = rng.uniform(-TARGET_OFFSET_RANGE, TARGET_OFFSET_RANGE,
                                        shape + (channels,)).astype(np.float32)
        else:
            targets[name] = (rng.uniform(size=shape + (channels,)) < TARGET_POSITIVE_FRACTION).astype(np.float32)
    return targets


def bench_forward(size, stride, session_conf, repeats, probe):
    with tf.Graph().as_default() as graph:
        rng = np.random.RandomState(0)
        images = tf.constant(rng.randint(0, 256, (1, size, size, 3)).astype(np.uint8))
        outputs = model.build_model(images, is_training=False, output_stride=stride, intermediate=False)
        fetches = [tf.reduce_sum(value) for value in outputs.values()]
        flops = conv_flops(graph)
        with tf.Session(config=session_conf) as sess:
            sess.run(tf.global_variables_initializer())
            return timed(sess, fetches, repeats, probe), flops


def bench_train(size, stride, session_conf, repeats, probe):
    with tf.Graph().as_default() as graph:
        rng = np.random.RandomState(0)
        images = tf.constant(rng.randint(0, 256, (1, size, size, 3)).astype(np.uint8))
        outputs = model.build_model(images, is_training=True, output_stride=stride)
        losses = model.compute_losses(outputs, random_targets(rng, grid.output_size(size, stride)))
        optimizer = tf.train.MomentumOptimizer(config.LEARNING_RATE, config.MOMENTUM)
        train_op = optimizer.minimize(losses['total'])
        flops = conv_flops(graph)
        with tf.Session(config=session_conf) as sess:
            sess.run(tf.global_variables_initializer())
            return timed(sess, train_op, repeats, probe), flops


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sizes', type=int, nargs='+', default=[401, 801], help='input sides, px')
    parser.add_argument('--strides', type=int, nargs='+', default=[16, 8], help='output strides')
    parser.add_argument('--repeats', type=int, default=3, help='timed runs per measurement (best and median)')
    parser.add_argument('--intra', type=int, default=os.cpu_count(), help='intra-op threads')
    parser.add_argument('--inter', type=int, default=1, help='inter-op threads')
    parser.add_argument('--no-train', action='store_true', help='time the forward pass only')
    args = parser.parse_args()
    print('machine: %s' % machine.describe(), flush=True)  # the docs give times beside this figure
    session_conf = session_config(args.intra, args.inter)
    print('ResNet-v2-%d, batch 1, %d CPU cores, intra-op %d / inter-op %d threads, TensorFlow %s, '
          'best of %d runs [median]' % (config.BACKBONE_DEPTH, os.cpu_count(), args.intra, args.inter,
                                        tf.__version__, args.repeats), flush=True)
    probe = MatmulProbe(session_conf)
    print('%-8s %-3s %16s %7s %8s %8s %6s %16s %7s %8s' % (
        'input', 'os', 'forward ms', 'GFLOP', 'GFLOP/s', 'matmul', 'peak', 'train step ms', 'GFLOP', 'GFLOP/s'))
    results = {}
    for size in args.sizes:
        for stride in args.strides:
            (forward, forward_median, peak), forward_flops = bench_forward(size, stride, session_conf,
                                                                           args.repeats, probe)
            rate = forward_flops / forward / 1e9
            train_columns = ('%16s %7s %8s' % ('not measured', '-', '-'))
            train = None
            if not args.no_train:
                (train, train_median, _), train_flops = bench_train(size, stride, session_conf, args.repeats,
                                                                    probe)
                train_columns = '%16s %7.1f %8.1f' % ('%.0f [%.0f]' % (1e3 * train, 1e3 * train_median),
                                                      train_flops / 1e9, train_flops / train / 1e9)
            results[size, stride] = (forward, train, 100.0 * rate / peak)
            print('%-8s %-3d %16s %7.1f %8.1f %8.1f %5.0f%% %s' % (
                '%dx%d' % (size, size), stride, '%.0f [%.0f]' % (1e3 * forward, 1e3 * forward_median),
                forward_flops / 1e9, rate, peak, 100.0 * rate / peak, train_columns), flush=True)
    probe.close()
    if (401, 16) in results:
        forward, train, percent = results[401, 16]
        train_text = 'not measured (--no-train)' if train is None else '%.0f ms' % (1e3 * train)
        print('model: forward %.0f ms, train step %s at 401x401 os16, %.0f%% of matmul peak'
              % (1e3 * forward, train_text, percent))


if __name__ == '__main__':
    main()
