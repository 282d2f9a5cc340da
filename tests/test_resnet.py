"""resnet.py is TF-Slim's ResNet-v2: same variables (names, shapes, order), same outputs, same checkpoints.

The reference (`slim_reference` beside `config.COCO_SAMPLE_DIR`, README there) holds what TF-Slim creates and
computes; the checkpoint its make_checkpoint.py writes is made once per session into pytest's tmp folder. Each
backbone graph is built once per depth and its session reused; inputs are the reference's 2x97x97 images.

What it proves, with the TF-Slim reference (its make_checkpoint.py writes a checkpoint with TF-Slim's names and
deterministic values):
- the variables of ResNet-v2-50, 101 and 152 have TF-Slim's names, shapes and creation order; the project's
  ResNet-v2-26 is depth 50's units, two per block, with the same names and shapes;
- with that checkpoint, ResNet-v2-50 and 101 compute TF-Slim's output and `block3` end point at output
  strides 8, 16 and 32 to 1e-4 relative (measured: about 1e-6 of each map's largest value);
- the details the reference's odd-sized images cannot see: a strided convolution is centred on every
  stride-th pixel for even sizes too (TF-Slim's `conv2d_same`, not `SAME`), atrous convolution pads with zeros;
- batch norm: frozen statistics by default, batch statistics and TF-Slim's moving-average updates (unbiased
  variance) when unfrozen, a boolean `is_training` tensor honoured, folding equal to a separate batch norm;
  the `preact` end point equals relu(batch norm(`block3`)) computed from the checkpoint's statistics;
- a random ResNet-101 with frozen statistics keeps features of rms between 0.1 and 10 (zero-init `conv3`,
  He initialisation elsewhere; `ZERO_INIT_RESIDUAL = False` gives He-scale `conv3`);
- checkpoints: every backbone variable restored (from a V1 single-file checkpoint with logits and
  global_step, like the release); a checkpoint with one variable dropped and one reshaped is refused with both
  listed and nothing restored; another depth's checkpoint, a missing file, a folder without checkpoint, an
  index without its data file, a backbone under an outer scope.
"""
import os
import re
import shutil

import numpy as np
import pytest
import tensorflow.compat.v1 as tf

import config
import resnet
import settings

STRIDES = (8, 16, 32)


def read_manifest(path):
    """[(name, shape tuple)] of a slim_reference manifest, in TF-Slim's creation order."""
    out = []
    with open(path) as f:
        for line in f:
            if line.strip():
                name, shape = line.strip().split(' ', 1)
                out.append((name, tuple(int(d) for d in shape.strip('[]').split(','))))
    return out


def graph_variables(graph, collection=tf.GraphKeys.GLOBAL_VARIABLES):
    return [(v.op.name, tuple(v.shape.as_list())) for v in graph.get_collection(collection)]


def write_checkpoint(prefix, arrays, version=tf.train.SaverDef.V2):
    """Writes {name: array} as a checkpoint (V1 single file or V2 prefix) through a plain Saver."""
    graph = tf.Graph()
    with graph.as_default():
        feeds, variables = {}, {}
        for name, array in arrays.items():
            value = tf.placeholder(tf.as_dtype(array.dtype), array.shape)
            variables[name] = tf.Variable(value, name='v%d' % len(variables))
            feeds[value] = array
        saver = tf.train.Saver(variables, write_version=version)
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer(), feeds)
            saver.save(sess, prefix, write_meta_graph=False, write_state=False)
    return prefix


def read_checkpoint(prefix):
    reader = tf.train.NewCheckpointReader(prefix)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


class Network:
    """One depth's backbone at several output strides, sharing variables, in one graph."""

    def __init__(self, depth, strides=STRIDES):
        self.depth = depth
        self.scope = 'resnet_v2_%d' % depth
        self.graph = tf.Graph()
        self.outputs, self.end_points = {}, {}
        with self.graph.as_default():
            self.images = tf.placeholder(tf.float32, [None, None, None, 3])
            backbone = getattr(resnet, 'resnet_v2_%d' % depth)
            for stride in strides:
                net, end_points = backbone(self.images, is_training=False,
                                           output_stride=None if stride == 32 else stride,
                                           reuse=tf.AUTO_REUSE)
                self.outputs['os%d_net' % stride] = net
                self.outputs['os%d_block3' % stride] = end_points[self.scope + '/block3']
                self.end_points[stride] = end_points
            self.initializer = tf.global_variables_initializer()
        self.sess = None

    def session(self, checkpoint):
        """A session with random variables overwritten by load_backbone_checkpoint (made once)."""
        if self.sess is None:
            self.sess = tf.Session(graph=self.graph)
            self.sess.run(self.initializer)
            resnet.load_backbone_checkpoint(self.sess, checkpoint, self.scope)
        return self.sess


@pytest.fixture(scope='module')
def networks():
    """depth -> Network, built once per depth; sessions closed at the end of the module.

    ResNet-v2-152 is only checked for names and shapes: one stride is enough.
    """
    built = {}

    def get(depth):
        if depth not in built:
            built[depth] = Network(depth, (32,) if depth == 152 else STRIDES)
        return built[depth]

    yield get
    for network in built.values():
        if network.sess is not None:
            network.sess.close()


@pytest.fixture(scope='module')
def resnet50(networks, make_slim_checkpoint):
    """(Network, session, checkpoint prefix) of ResNet-v2-50 loaded from the reference checkpoint."""
    network = networks(50)
    checkpoint = make_slim_checkpoint(50)
    return network, network.session(checkpoint), checkpoint


# ------------------------------------------------------------------------------------------------------
# Structure
# ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('depth', [50, 101, 152])
def test_variables_are_tf_slim_names_shapes_and_order(depth, networks, slim_reference):
    manifest = read_manifest(os.path.join(slim_reference, 'resnet_v2_%d.manifest' % depth))
    graph = networks(depth).graph  # three output strides, one set of variables
    assert graph_variables(graph) == manifest
    assert graph_variables(graph, resnet.BACKBONE_VARIABLES) == manifest
    assert resnet.backbone_variables(depth) == manifest  # what check_backbone_checkpoint expects


def test_depth_26_is_depth_50_with_two_units_per_block(networks):
    """ResNet-v2-26 (this project's, from scratch only): the units of depth 50 named as TF-Slim names them, two per
    block, every variable shaped as depth 50's; the output strides hold."""
    graph = tf.Graph()
    with graph.as_default():
        images = tf.placeholder(tf.float32, [1, 65, 65, 3])
        net, end_points = resnet.resnet_v2(images, 26, is_training=False, output_stride=16)
    assert net.shape.as_list() == [1, 5, 5, 2048]
    assert end_points['resnet_v2_26/block3'].shape.as_list() == [1, 5, 5, 1024]
    small = graph_variables(graph)
    large = dict((name.replace('resnet_v2_50/', 'resnet_v2_26/'), shape)
                 for name, shape in graph_variables(networks(50).graph))
    units = {name.split('/')[2] for name, _ in small if '/unit_' in name}
    assert units == {'unit_1', 'unit_2'}
    assert {name.split('/')[1] for name, _ in small} >= {'block1', 'block2', 'block3', 'block4'}
    assert all(large[name] == shape for name, shape in small)
    assert len(small) == len([n for n in large if not re.search(r'/unit_[3-9]/', n)])


def test_trainable_variables_and_weight_decay_collection(networks):
    graph = networks(50).graph
    names = [name for name, _ in graph_variables(graph)]
    trainable = {name for name, _ in graph_variables(graph, tf.GraphKeys.TRAINABLE_VARIABLES)}
    moving = {n for n in names if n.endswith('/moving_mean') or n.endswith('/moving_variance')}
    assert moving and not moving & trainable
    assert trainable == set(names) - moving  # gamma and beta train (config.BATCH_NORM_TRAIN_AFFINE)
    # Weight decay applies to the convolution kernels only, which model.py finds by name.
    kernels = [n for n in names if n.endswith('/weights')]
    assert [name for name, _ in graph_variables(graph, tf.GraphKeys.WEIGHTS)] == kernels
    assert len(kernels) == 1 + 3 * 16 + 4  # conv1, three per unit, one shortcut per block
    assert not graph.get_collection(tf.GraphKeys.REGULARIZATION_LOSSES)  # model.py adds the decay once
    assert not graph.get_collection(tf.GraphKeys.UPDATE_OPS)  # inference: nothing to update


@pytest.mark.parametrize('stride', STRIDES)
def test_end_points_on_the_output_grid(stride, resnet50):
    network, sess, _ = resnet50
    end_points = network.end_points[stride]
    scope = network.scope
    blocks = [scope + '/block%d' % i for i in range(1, 5)]
    assert [key for key in end_points if key.count('/') == 1] == [scope + '/conv1'] + blocks
    assert sum(key.endswith('/bottleneck_v2') for key in end_points) == 16
    assert scope + '/block3/unit_6/bottleneck_v2/conv2' in end_points
    # An input of side n*s+1 has corners on every grid: 97 = 3*32+1 gives side (97-1)//s+1.
    values = sess.run({key: end_points[key] for key in blocks},
                      {network.images: np.zeros((1, 97, 97, 3), np.float32)})
    for key, block_stride, channels in zip(blocks, (8, 16, 32, 32), (256, 512, 1024, 2048)):
        side = 96 // min(block_stride, stride) + 1
        assert values[key].shape == (1, side, side, channels), key


def test_preact_end_point_is_the_previous_block_normalised_with_checkpoint_statistics(resnet50):
    """'<unit>/preact' is relu(batch norm(unit input)): block4/unit_1's is block3 normalised with the
    checkpoint's statistics of that unit (what the intermediate heads read), on block3's grid."""
    network, sess, checkpoint = resnet50
    scope = network.scope
    reader = tf.train.NewCheckpointReader(checkpoint)
    bn = scope + '/block4/unit_1/bottleneck_v2/preact/'
    gamma, beta, mean, variance = (reader.get_tensor(bn + leaf)
                                   for leaf in ('gamma', 'beta', 'moving_mean', 'moving_variance'))
    epsilon = max(resnet.BATCH_NORM_EPSILON, 1.001e-5)
    images = np.random.RandomState(4).uniform(-1, 1, (1, 33, 33, 3)).astype(np.float32)
    for stride in STRIDES:
        end_points = network.end_points[stride]
        assert sum(key.endswith('/bottleneck_v2/preact') for key in end_points) == 16
        block3, preact = sess.run([end_points[scope + '/block3'], end_points[bn.rstrip('/')]],
                                  {network.images: images})
        expected = np.maximum(gamma * (block3 - mean) / np.sqrt(variance + epsilon) + beta, 0)
        assert preact.shape == block3.shape and 0 < np.mean(preact > 0) < 1
        np.testing.assert_allclose(preact, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max(),
                                   err_msg='output stride %d' % stride)


def _single_tap_conv(images, kernel_size, stride, rate, tap):
    """resnet.conv2d of one-channel images with a kernel that is 1 at `tap` (row, col) and 0 elsewhere."""
    graph = tf.Graph()
    with graph.as_default():
        x = tf.constant(images[..., None])
        y = resnet.conv2d(x, 1, kernel_size, stride, rate, scope='conv')
        weights = np.zeros((kernel_size, kernel_size, 1, 1), np.float32)
        weights[tap[0], tap[1]] = 1
        with tf.Session(graph=graph) as sess:
            sess.run(tf.assign(tf.global_variables()[0], weights))
            return sess.run(y)[..., 0]


@pytest.mark.parametrize('side', [8, 9])
def test_strided_convolution_is_centred_on_every_stride_th_pixel(side):
    # TF-Slim's conv2d_same: output cell i is centred on input pixel i * stride for any input size. 'SAME'
    # padding would shift it by one pixel on even sizes (odd ones, as the reference's 97, cannot tell).
    images = np.arange(2 * side * side, dtype=np.float32).reshape(2, side, side)
    for kernel_size in (3, 7):
        centre = kernel_size // 2
        out = _single_tap_conv(images, kernel_size, 2, 1, (centre, centre))
        np.testing.assert_array_equal(out, images[:, ::2, ::2], err_msg='kernel %d' % kernel_size)


def test_atrous_convolution_samples_rate_apart_with_zero_padding():
    images = np.arange(2 * 9 * 8, dtype=np.float32).reshape(2, 9, 8) + 1
    out = _single_tap_conv(images, 3, 1, 2, (0, 0))  # top-left tap: the pixel 2 rows up, 2 columns left
    expected = np.zeros_like(images)
    expected[:, 2:, 2:] = images[:, :-2, :-2]
    np.testing.assert_array_equal(out, expected)


def test_unreachable_output_stride_is_refused():
    with tf.Graph().as_default():
        images = tf.placeholder(tf.float32, [1, 33, 33, 3])
        for stride in (2, 12, 64):
            with pytest.raises(ValueError, match='output_stride must be None or one of'):
                resnet.resnet_v2_50(images, output_stride=stride)
        with pytest.raises(ValueError, match='depth must be one of'):
            resnet.resnet_v2(images, 34)
        assert not tf.global_variables()


# ------------------------------------------------------------------------------------------------------
# Values
# ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('depth', [50, 101])
def test_outputs_equal_tf_slim_at_three_strides(depth, networks, make_slim_checkpoint, slim_reference):
    reference = np.load(os.path.join(slim_reference, 'resnet_v2_%d_reference.npz' % depth))
    network = networks(depth)
    sess = network.session(make_slim_checkpoint(depth))
    outputs = sess.run(network.outputs, {network.images: reference['images']})
    for key, value in sorted(outputs.items()):
        expected = reference[key]
        assert value.shape == expected.shape, key
        # 1e-4 relative; near-zero entries (after relu) are judged against the map's scale.
        np.testing.assert_allclose(value, expected, rtol=1e-4, atol=1e-5 * np.abs(expected).max(),
                                   err_msg='%s of resnet_v2_%d' % (key, depth))


def test_training_mode_with_frozen_batch_norm_is_the_inference_function(resnet50):
    network, sess, _ = resnet50
    images = np.random.RandomState(0).uniform(-1, 1, (2, 33, 33, 3)).astype(np.float32)
    assert config.FREEZE_BATCH_NORM  # the default this test is about
    with network.graph.as_default():
        training, _ = resnet.resnet_v2_50(network.images, is_training=True, output_stride=16, reuse=True)
        assert not network.graph.get_collection(tf.GraphKeys.UPDATE_OPS)
    train_out, infer_out = sess.run([training, network.outputs['os16_net']], {network.images: images})
    np.testing.assert_array_equal(train_out, infer_out)


def test_random_backbone_with_frozen_statistics_keeps_features_of_order_one(networks):
    """Before any checkpoint: each unit's conv3 starts at 0 (config.ZERO_INIT_RESIDUAL), so the random
    ResNet-101 with unit batch-norm statistics gives O(1) features (He-scale conv3: rms ~1e3-1e4)."""
    assert config.ZERO_INIT_RESIDUAL  # the default this test is about
    network = networks(101)
    images = np.random.RandomState(3).uniform(-1, 1, (2, 33, 33, 3)).astype(np.float32)
    with network.graph.as_default():
        conv3 = [v for v in tf.global_variables() if v.op.name.endswith('/conv3/weights')]
        other = [v for v in tf.global_variables() if v.op.name.endswith('/conv2/weights')]
    with tf.Session(graph=network.graph) as sess:
        sess.run(network.initializer)
        kernels, others, outputs = sess.run([conv3, other, network.outputs], {network.images: images})
    assert len(kernels) == 33 and not any(k.any() for k in kernels)
    assert all(k.std() > 0 for k in others)  # the rest keeps He initialisation
    for key, value in outputs.items():
        rms = np.sqrt(np.mean(value ** 2))
        assert np.all(np.isfinite(value)) and 0.1 < rms < 10, (key, rms)


def test_residual_initialisation_follows_its_setting():
    graph = tf.Graph()
    with graph.as_default():
        resnet.resnet_v2_50(tf.placeholder(tf.float32, [1, 33, 33, 3]), is_training=False, zero_init_residual=False)
        conv3 = [v for v in tf.global_variables() if v.op.name.endswith('/conv3/weights')]
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            kernels = sess.run(conv3)
    assert len(kernels) == 16 and all(k.std() > 0 for k in kernels)


# ------------------------------------------------------------------------------------------------------
# Batch norm
# ------------------------------------------------------------------------------------------------------
def _batch_norm_graph(is_training, freeze, channels=3):
    """A small graph: x [4, 5, 5, channels] -> batch_norm, with non-trivial variable values.

    is_training 'tensor' makes it a bool placeholder, returned in place of `graph` as (graph, placeholder).
    """
    rng = np.random.RandomState(1)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.placeholder(tf.float32, [4, 5, 5, channels])
        if is_training == 'tensor':
            is_training = tf.placeholder(tf.bool, [])
            graph = (graph, is_training)
        y = resnet.batch_norm(x, is_training, freeze, scope='bn')
        values = {'beta': 0.3 * rng.randn(channels), 'gamma': 1 + 0.2 * rng.randn(channels),
                  'moving_mean': 0.5 * rng.randn(channels), 'moving_variance': 1 + rng.rand(channels)}
        variables = {v.op.name.split('/')[-1]: v for v in tf.global_variables()}
        assign = [tf.assign(variables[k], v.astype(np.float32)) for k, v in values.items()]
    data = (2 + 3 * rng.randn(4, 5, 5, channels)).astype(np.float32)
    return graph, x, y, variables, assign, values, data


def _normalized(data, mean, variance, values):
    eps = max(resnet.BATCH_NORM_EPSILON, 1.001e-5)
    return np.maximum(values['gamma'] * (data - mean) / np.sqrt(variance + eps) + values['beta'], 0)


def test_frozen_batch_norm_uses_and_keeps_moving_statistics():
    graph, x, y, variables, assign, values, data = _batch_norm_graph(is_training=True, freeze=True)
    assert not graph.get_collection(tf.GraphKeys.UPDATE_OPS)
    trainable = {v.op.name for v in graph.get_collection(tf.GraphKeys.TRAINABLE_VARIABLES)}
    assert trainable == {'bn/beta', 'bn/gamma'}
    with tf.Session(graph=graph) as sess:
        sess.run(assign)
        out = sess.run(y, {x: data})
    expected = _normalized(data, values['moving_mean'], values['moving_variance'], values)
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


def test_training_batch_norm_uses_batch_statistics_and_updates_moving_averages():
    graph, x, y, variables, assign, values, data = _batch_norm_graph(is_training=True, freeze=False)
    updates = graph.get_collection(tf.GraphKeys.UPDATE_OPS)
    assert len(updates) == 2
    with tf.Session(graph=graph) as sess:
        sess.run(assign)
        out = sess.run(y, {x: data})
        sess.run(updates, {x: data})
        moving = sess.run({k: variables[k] for k in ('moving_mean', 'moving_variance')})
    flat = data.reshape(-1, data.shape[-1])
    expected = _normalized(data, flat.mean(0), flat.var(0), values)
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
    decay = resnet.BATCH_NORM_DECAY
    # TF-Slim's moving variance receives the unbiased batch variance (TensorFlow's fused batch norm).
    for key, batch in (('moving_mean', flat.mean(0)), ('moving_variance', flat.var(0, ddof=1))):
        np.testing.assert_allclose(moving[key], decay * values[key] + (1 - decay) * batch, rtol=1e-5)


def test_batch_norm_follows_a_training_tensor():
    (graph, training), x, y, variables, assign, values, data = _batch_norm_graph('tensor', freeze=False)
    updates = graph.get_collection(tf.GraphKeys.UPDATE_OPS)
    assert len(updates) == 2
    flat = data.reshape(-1, data.shape[-1])
    with tf.Session(graph=graph) as sess:
        sess.run(assign)
        inference, _ = sess.run([y, updates], {x: data, training: False})
        unchanged = sess.run(variables['moving_mean'])
        trained, _ = sess.run([y, updates], {x: data, training: True})
        changed = sess.run(variables['moving_mean'])
    np.testing.assert_allclose(inference, _normalized(data, values['moving_mean'], values['moving_variance'],
                                                      values), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(unchanged, values['moving_mean'], rtol=1e-6)
    expected = _normalized(data, flat.mean(0), flat.var(0), values)
    np.testing.assert_allclose(trained, expected, rtol=1e-4, atol=1e-4)
    assert np.abs(changed - values['moving_mean']).max() > 1e-4


def test_conv_bn_folding_equals_separate_batch_norm():
    rng = np.random.RandomState(2)
    graph = tf.Graph()
    with graph.as_default():
        x = tf.placeholder(tf.float32, [2, 9, 9, 4])
        folded = resnet.conv2d_bn(x, 6, 3, 2, 1, is_training=False, freeze=True, scope='c')
        with tf.variable_scope(tf.get_variable_scope(), reuse=True):
            separate = resnet.conv2d_bn(x, 6, 3, 2, 1, is_training=tf.constant(False), freeze=False,
                                        scope='c')
        assign = [tf.assign(v, rng.uniform(0.5, 1.5, v.shape.as_list()).astype(np.float32))
                  for v in tf.global_variables()]
    with tf.Session(graph=graph) as sess:
        sess.run(assign)
        a, b = sess.run([folded, separate], {x: rng.randn(2, 9, 9, 4).astype(np.float32)})
    assert a.shape == (2, 5, 5, 6) and np.abs(a).max() > 0
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5 * np.abs(b).max())


def test_unfrozen_backbone_collects_updates():
    graph = tf.Graph()
    with graph.as_default():
        resnet.resnet_v2_50(tf.placeholder(tf.float32, [1, 33, 33, 3]), is_training=True, freeze_batch_norm=False)
        batch_norms = sum(v.op.name.endswith('/moving_mean') for v in tf.global_variables())
        assert len(graph.get_collection(tf.GraphKeys.UPDATE_OPS)) == 2 * batch_norms == 2 * (1 + 3 * 16)


# ------------------------------------------------------------------------------------------------------
# Checkpoints
# ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def checkpoint_variants(resnet50, tmp_path_factory):
    """ResNet-v2-50 checkpoints the tests write: 'release' (V1 single file, plus logits and global_step, as
    TF-Slim's downloads) and 'broken' (one variable dropped, one with another shape, plus the extras)."""
    _, _, checkpoint = resnet50
    arrays = read_checkpoint(checkpoint)
    extras = {'resnet_v2_50/logits/weights': np.ones((1, 1, 2048, 1001), np.float32),
              'resnet_v2_50/logits/biases': np.zeros(1001, np.float32),
              'global_step': np.array(123, np.int64)}
    folder = tmp_path_factory.mktemp('variants')
    release = write_checkpoint(str(folder / 'release.ckpt'), dict(arrays, **extras), tf.train.SaverDef.V1)
    broken = dict(arrays, **extras)
    del broken['resnet_v2_50/block3/unit_2/bottleneck_v2/conv2/weights']
    broken['resnet_v2_50/block1/unit_1/bottleneck_v2/conv1/BatchNorm/gamma'] = np.ones(32, np.float32)
    return {'arrays': arrays, 'release': release,
            'broken': write_checkpoint(str(folder / 'broken.ckpt'), broken)}


def test_load_restores_every_backbone_variable_and_skips_logits(resnet50, checkpoint_variants):
    network, sess, _ = resnet50
    sess.run(network.initializer)  # random again
    resnet.load_backbone_checkpoint(sess, checkpoint_variants['release'], 'resnet_v2_50')
    arrays = checkpoint_variants['arrays']
    with network.graph.as_default():
        variables = tf.global_variables()
    values = sess.run({v.op.name: v for v in variables})
    assert sorted(values) == sorted(arrays)
    for name, value in values.items():
        np.testing.assert_array_equal(value, arrays[name], err_msg=name)
    assert resnet.check_backbone_checkpoint(checkpoint_variants['release'], 'resnet_v2_50') \
        == checkpoint_variants['release']


def _assert_lists_both_problems(message):
    assert '1 missing, 1 wrong' in message
    assert 'missing: resnet_v2_50/block3/unit_2/bottleneck_v2/conv2/weights [3, 3, 256, 256]' in message
    assert ('wrong shape: resnet_v2_50/block1/unit_1/bottleneck_v2/conv1/BatchNorm/gamma: checkpoint [32], '
            'backbone [64]') in message
    assert 'logits' not in message.split('The checkpoint holds')[0] and 'global_step' not in message.split(
        'The checkpoint holds')[0]


def test_broken_checkpoint_lists_every_problem_and_restores_nothing(resnet50, checkpoint_variants):
    network, sess, checkpoint = resnet50
    broken = checkpoint_variants['broken']
    with pytest.raises(ValueError) as error:
        resnet.check_backbone_checkpoint(broken, 'resnet_v2_50')
    _assert_lists_both_problems(str(error.value))
    with network.graph.as_default():
        conv1 = [v for v in tf.global_variables() if v.op.name == 'resnet_v2_50/conv1/weights'][0]
        sentinel = tf.assign(conv1, tf.zeros_like(conv1))
    sess.run(sentinel)
    try:
        with pytest.raises(ValueError) as error:
            resnet.load_backbone_checkpoint(sess, broken, 'resnet_v2_50')
        _assert_lists_both_problems(str(error.value))
        assert not sess.run(conv1).any()  # raised before restoring anything
    finally:
        resnet.load_backbone_checkpoint(sess, checkpoint, 'resnet_v2_50')


def test_checkpoint_of_another_depth_is_refused(make_slim_checkpoint, slim_reference):
    with pytest.raises(ValueError) as error:
        resnet.check_backbone_checkpoint(make_slim_checkpoint(50), 'resnet_v2_101')
    message = str(error.value)
    # Every ResNet-101 variable is missing (the scopes differ); the checkpoint holds ResNet-50's.
    needed = read_manifest(os.path.join(slim_reference, 'resnet_v2_101.manifest'))
    held = read_manifest(os.path.join(slim_reference, 'resnet_v2_50.manifest'))
    assert '%d missing, 0 wrong' % len(needed) in message
    assert 'missing: resnet_v2_101/block3/unit_23/bottleneck_v2/conv3/biases [1024]' in message
    assert 'The checkpoint holds: resnet_v2_50/ (%d variables)' % len(held) in message


def test_missing_checkpoint_files(tmp_path, make_slim_checkpoint, resnet50):
    missing = str(tmp_path / 'model' / '101' / 'resnet_v2_101.ckpt')
    for call in (lambda: resnet.check_backbone_checkpoint(missing, 'resnet_v2_101'),
                 lambda: resnet.load_backbone_checkpoint(resnet50[1], missing, 'resnet_v2_50')):
        with pytest.raises(FileNotFoundError, match='resnet_v2_101.ckpt not found'):
            call()
    with pytest.raises(FileNotFoundError, match='holds no checkpoint'):
        resnet.check_backbone_checkpoint(str(tmp_path), 'resnet_v2_50')
    # An index without its data file (an interrupted copy).
    index = make_slim_checkpoint(50) + '.index'
    lonely = tmp_path / 'lonely.ckpt'
    shutil.copyfile(index, str(tmp_path / 'lonely.ckpt.index'))
    with pytest.raises(FileNotFoundError, match='no .*lonely.ckpt.data-\\* file'):
        resnet.check_backbone_checkpoint(str(lonely), 'resnet_v2_50')
    # Not a checkpoint (an HTML error page saved under the checkpoint's name).
    garbage = tmp_path / 'garbage.ckpt'
    garbage.write_text('<html>404</html>')
    with pytest.raises(ValueError, match='garbage.ckpt cannot be read'):
        resnet.check_backbone_checkpoint(str(garbage), 'resnet_v2_50')


def test_checkpoint_comes_from_the_settings(tmp_path):
    # resnet.py reads no config: the caller hands it the run's BACKBONE_CHECKPOINT.
    options = settings.make(overrides={'BACKBONE_CHECKPOINT': str(tmp_path / 'elsewhere.ckpt')})
    with pytest.raises(FileNotFoundError, match='elsewhere.ckpt not found'):
        resnet.check_backbone_checkpoint(options.BACKBONE_CHECKPOINT, 'resnet_v2_%d' % options.BACKBONE_DEPTH)


def test_load_under_an_outer_scope_and_without_backbone(make_slim_checkpoint):
    checkpoint = make_slim_checkpoint(50)
    graph = tf.Graph()
    with graph.as_default():
        with tf.variable_scope('tower'):
            resnet.resnet_v2_50(tf.placeholder(tf.float32, [1, 33, 33, 3]), is_training=False)
        with tf.Session(graph=graph) as sess:
            sess.run(tf.global_variables_initializer())
            with pytest.raises(ValueError, match="no backbone variables under scope 'resnet_v2_50'"):
                resnet.load_backbone_checkpoint(sess, checkpoint, 'resnet_v2_50')
            resnet.load_backbone_checkpoint(sess, checkpoint, 'tower/resnet_v2_50')
            conv1 = sess.run([v for v in tf.global_variables()
                              if v.op.name == 'tower/resnet_v2_50/conv1/weights'])
    expected = tf.train.NewCheckpointReader(checkpoint).get_tensor('resnet_v2_50/conv1/weights')
    np.testing.assert_array_equal(conv1[0], expected)
