"""Tests of model.py: preprocessing, border-clamped sampling, offset refinement, heads and losses.

The heads, refinement and losses are checked on small tensors; the whole network (ResNet-50, the cheapest
backbone, at 65x65 / 129x129) for gradients, stride-independent weights and a few SGD steps on a real COCO
sample through data_generator.py.

What it proves (about 47 s on 2 busy cores; ResNet-v2-50 at 33x33 to 129x129 with the deterministic checkpoint of
the TF-Slim reference's make_checkpoint.py standing in for ImageNet weights): sampling against a numpy reference
and a finite-difference gradient check, border/NaN safety, refinement of noisy mid offsets (synthetic and real
targets: the error drops to ~0 when the short offsets are exact), Eq. 2's wiring inside `build_heads` (hand-set
constant short fields: mid field k -> l moves by S_l, long field k by S_k), the heads' prior probabilities, all
five losses against an independent numpy computation, the intermediate loss as `INTERMEDIATE_LOSS_WEIGHT` x the
weighted intermediate losses, weight decay as `WEIGHT_DECAY` x sum(w^2) / 2 over exactly the backbone and head
kernels, masked positions, true targets against random outputs, `build_model(uint8)` equal to the heads on
`resnet_v2(images / 127.5 - 1)` (final heads on the output, intermediate ones on the normalised `block3`),
gradients into every head and through the sampled short offsets, identical heads at strides 16 and 8, a random
ResNet-101 with frozen batch norm (O(1) features, finite losses after SGD steps), and 15 SGD steps on one real
augmented COCO sample that cut its loss by more than 40%; bilinear upsampling for losses on a finer grid
(`LOSS_STRIDE`) keeps the cells and is exact on offset fields, and the crowd image's stride-16 targets upsampled
meet its stride-4 targets.
"""
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

import config
import heads
import model
import resnet
import settings

tf.disable_eager_execution()

K = config.NUM_KEYPOINTS
E = config.NUM_EDGES
MID_TARGETS = [l for _, l in config.DIRECTED_EDGES]
TEST_DEPTH = 50  # the cheapest backbone: the heads and losses do not depend on the depth


def _session():
    return tf.Session(graph=tf.get_default_graph(), config=tf.ConfigProto(
        intra_op_parallelism_threads=2, inter_op_parallelism_threads=1))


@pytest.fixture(autouse=True)
def fresh_graph():
    with tf.Graph().as_default() as graph:
        yield graph


# ----------------------------------------------------------------------------------------------------------
# Preprocessing
# ----------------------------------------------------------------------------------------------------------

def test_preprocess_maps_0_255_to_minus1_1_for_any_dtype():
    pixels = np.array([0, 51, 127.5, 255], np.float32).reshape(1, 1, 4, 1).repeat(3, axis=3)
    expected = pixels / 127.5 - 1.0
    with _session() as sess:
        as_float = sess.run(model.preprocess(pixels))
        as_uint8 = sess.run(model.preprocess(np.array([0, 51, 128, 255], np.uint8).reshape(1, 1, 4, 1)
                                             .repeat(3, axis=3)))
    assert as_float.dtype == np.float32
    np.testing.assert_allclose(as_float, expected, atol=1e-6)
    assert as_uint8[0, 0, 0, 0] == -1.0 and as_uint8[0, 0, 3, 0] == 1.0
    with pytest.raises(ValueError, match='RGB'):
        model.preprocess(np.zeros((1, 8, 8), np.uint8))


# ----------------------------------------------------------------------------------------------------------
# Bilinear sampling
# ----------------------------------------------------------------------------------------------------------

def _numpy_bilinear(fields, x, y, index):
    """Independent reference: clamp the point to the grid, interpolate the four neighbours."""
    _, height, width, _, _ = fields.shape
    x = np.clip(x, 0, width - 1)
    y = np.clip(y, 0, height - 1)
    x0 = np.floor(x).astype(int)
    y0 = np.floor(y).astype(int)
    x1 = np.minimum(x0 + 1, width - 1)
    y1 = np.minimum(y0 + 1, height - 1)
    wx = (x - x0)[..., None]
    wy = (y - y0)[..., None]
    b = np.arange(fields.shape[0]).reshape(-1, 1, 1, 1)
    k = np.asarray(index).reshape(1, 1, 1, -1)
    value = lambda yi, xi: fields[b, yi, xi, k]
    return ((1 - wy) * ((1 - wx) * value(y0, x0) + wx * value(y0, x1))
            + wy * ((1 - wx) * value(y1, x0) + wx * value(y1, x1)))


def test_bilinear_sample_matches_reference_inside_and_clamps_outside():
    rng = np.random.RandomState(0)
    fields = rng.randn(2, 5, 7, 3, 2).astype(np.float32)
    index = [2, 0, 1, 2]
    x = rng.uniform(-4, 11, (2, 5, 7, 4)).astype(np.float32)
    y = rng.uniform(-4, 9, (2, 5, 7, 4)).astype(np.float32)
    x[0, 0, 0, 0], y[0, 0, 0, 0] = 3.0, 2.0  # an exact cell reads that cell
    x[0, 0, 0, 1], y[0, 0, 0, 1] = 6.0, 4.0  # the last cell (x1 = x0 must not leave the grid)
    with _session() as sess:
        sampled = sess.run(model.bilinear_sample(tf.constant(fields), tf.constant(x), tf.constant(y), index))
    assert sampled.shape == (2, 5, 7, 4, 2)
    np.testing.assert_allclose(sampled, _numpy_bilinear(fields, x, y, index), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(sampled[0, 0, 0, 0], fields[0, 2, 3, 2])
    np.testing.assert_array_equal(sampled[0, 0, 0, 1], fields[0, 4, 6, 0])


def test_bilinear_sample_gradients_match_finite_differences():
    rng = np.random.RandomState(1)
    fields = rng.randn(1, 4, 5, 2, 2)
    # Positions away from integer coordinates, where the interpolation is differentiable; some outside.
    x = rng.uniform(0.1, 3.9, (1, 4, 5, 3)) + rng.choice([0.0, 0.0, 9.0], (1, 4, 5, 3))
    y = rng.uniform(0.1, 2.9, (1, 4, 5, 3))
    x = np.where(np.abs(x - np.round(x)) < 0.05, x + 0.2, x)
    y = np.where(np.abs(y - np.round(y)) < 0.05, y + 0.2, y)
    f_t = tf.constant(fields, tf.float64)
    x_t = tf.constant(x, tf.float64)
    y_t = tf.constant(y, tf.float64)
    out = model.bilinear_sample(f_t, x_t, y_t, [1, 0, 1])
    with _session():
        error = tf.test.compute_gradient_error([f_t, x_t, y_t], [fields.shape, x.shape, y.shape],
                                               out, [1, 4, 5, 3, 2], x_init_value=[fields, x, y])
    assert error < 1e-6


def test_sampling_far_outside_the_grid_never_fails_nor_gives_nan():
    fields = np.arange(1 * 3 * 4 * 1 * 2, dtype=np.float32).reshape(1, 3, 4, 1, 2)
    far = np.array([-1e30, -1e6, -1.5, 1e6, 1e30, np.inf, -np.inf, np.nan], np.float32)
    x = np.tile(far, (1, 3, 4, 1)).astype(np.float32)
    y = np.tile(far[::-1], (1, 3, 4, 1)).astype(np.float32)
    fields_t = tf.constant(fields)
    x_t, y_t = tf.constant(x), tf.constant(y)
    sampled = model.bilinear_sample(fields_t, x_t, y_t, [0] * far.size)
    grads = tf.gradients(tf.reduce_sum(sampled), [fields_t, x_t, y_t])
    with _session() as sess:
        values, (g_fields, g_x, g_y) = sess.run([sampled, grads])
    assert np.all(np.isfinite(values)) and np.all(np.isfinite(g_fields))
    assert np.all(np.isfinite(g_x)) and np.all(np.isfinite(g_y))
    # Clamped: (x=-1e30, y=nan->0) reads cell (0, 0); (x=inf, y=-1.5) the top-right corner (row 0, col 3);
    # (x=1e30, y=1e6) the bottom-right corner.
    np.testing.assert_array_equal(values[0, 0, 0, 0], fields[0, 0, 0, 0])
    np.testing.assert_array_equal(values[0, 0, 0, 5], fields[0, 0, 3, 0])
    np.testing.assert_array_equal(values[0, 0, 0, 4], fields[0, 2, 3, 0])


def test_refinement_with_offsets_pointing_far_outside_stays_finite():
    rng = np.random.RandomState(2)
    offsets = rng.choice([-1e7, 1e7, 3.0], (2, 5, 6, 2 * E)).astype(np.float32)
    short = rng.randn(2, 5, 6, 2 * K).astype(np.float32) * 10
    offsets_t, short_t = tf.constant(offsets), tf.constant(short)
    refined = model.refine_offsets(offsets_t, short_t, MID_TARGETS, stride=16, steps=2)
    grads = tf.gradients(tf.reduce_sum(refined), [offsets_t, short_t])
    with _session() as sess:
        values, grad_values = sess.run([refined, grads])
    assert all(np.all(np.isfinite(v)) for v in [values] + grad_values)


# ----------------------------------------------------------------------------------------------------------
# Refinement (Eq. 2)
# ----------------------------------------------------------------------------------------------------------

def _two_people_fields(stride, height, width, rng):
    """Keypoints of two people well apart, their exact short offsets (nearest same-type keypoint) and true
    mid offsets (field e at x: keypoint l of the person whose keypoint k is nearest, minus x)."""
    xs = np.arange(width) * stride
    ys = np.arange(height) * stride
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).astype(np.float64)  # [H, W, 2] input px (x, y)
    centres = np.array([[0.3 * xs[-1], 0.5 * ys[-1]], [0.72 * xs[-1], 0.45 * ys[-1]]])
    people = centres[:, None, :] + rng.uniform(-0.1, 0.1, (2, K, 2)) * np.array([xs[-1], ys[-1]])
    # [H, W, person, K, 2]: keypoint - x
    to_keypoint = people[None, None] - grid[:, :, None, None, :]
    nearest = np.argmin(np.linalg.norm(to_keypoint, axis=-1), axis=2)  # [H, W, K]
    short = np.take_along_axis(to_keypoint, nearest[:, :, None, :, None], axis=2)[:, :, 0]  # [H, W, K, 2]
    mid = np.stack([np.take_along_axis(to_keypoint[:, :, :, l], nearest[:, :, None, k, None], axis=2)[:, :, 0]
                    for k, l in config.DIRECTED_EDGES], axis=2)  # [H, W, E, 2]
    return people, short.reshape(1, height, width, 2 * K), mid.reshape(1, height, width, 2 * E)


@pytest.mark.parametrize('stride', [8, 16])
def test_refinement_shrinks_the_error_of_noisy_mid_offsets_when_short_offsets_are_exact(stride):
    rng = np.random.RandomState(stride)
    height, width = 17, 21
    _, short, mid = _two_people_fields(stride, height, width, rng)
    noisy = mid + rng.normal(0, 0.6 * stride, mid.shape)
    short_t = tf.constant(short, tf.float32)
    noisy_t = tf.constant(noisy, tf.float32)
    once = model.refine_offsets(noisy_t, short_t, MID_TARGETS, stride, steps=1)
    twice = model.refine_offsets(noisy_t, short_t, MID_TARGETS, stride, steps=2)
    with _session() as sess:
        once, twice = sess.run([once, twice])
    error = lambda o: np.mean(np.linalg.norm((o - mid).reshape(-1, 2), axis=1))
    before, after_one, after_two = error(noisy), error(once), error(twice)
    assert after_one < 0.25 * before, (before, after_one)
    assert after_two <= after_one + 1e-3, (after_one, after_two)


def test_refinement_moves_an_offset_by_the_short_offset_sampled_where_it_points():
    """One step by hand: cell (i=1, j=2) at stride 8 is at (16, 8); offset (+4, +8) points at (20, 16),
    grid (2.5, 2): halfway between cells (2, 2) and (2, 3) of the target keypoint's short offsets."""
    short = np.zeros((1, 4, 5, 2 * K), np.float32)
    target = 3
    short[0, 2, 2, 2 * target:2 * target + 2] = [2.0, -4.0]
    short[0, 2, 3, 2 * target:2 * target + 2] = [6.0, 0.0]
    offsets = np.zeros((1, 4, 5, 2), np.float32)
    offsets[0, 1, 2] = [4.0, 8.0]
    refined = model.refine_offsets(tf.constant(offsets), tf.constant(short), [target], stride=8, steps=1)
    with _session() as sess:
        refined = sess.run(refined)
    np.testing.assert_allclose(refined[0, 1, 2], [4.0 + 4.0, 8.0 - 2.0], atol=1e-5)


def test_build_heads_refines_mid_field_k_to_l_with_short_l_and_long_field_k_with_short_k():
    """Eq. 2 wiring inside build_heads: one feature channel of ones and hand-set kernels give constant short
    fields S_k, distinct for every k, and zero raw mid/long offsets; after `steps` refinements mid field
    e = (k -> l) is steps * S_l and long field k is steps * S_k (swapping k and l would read S_k)."""
    steps, stride = 2, 8
    features = tf.ones([1, 4, 5, 1])
    outputs = model.build_heads(features, stride, scope='heads', refinement_steps=steps)
    short_px = np.stack([np.arange(K) + 1.0, 20.0 - 3 * np.arange(K)], axis=1)  # S_k = (dx, dy), input px
    variables = {v.op.name: v for v in tf.global_variables()}
    values = {name: np.zeros(v.shape.as_list(), np.float32) for name, v in variables.items()}
    values['heads/short/weights'][0, 0, 0] = short_px.reshape(-1) / config.OFFSET_OUTPUT_SCALE
    with _session() as sess:
        sess.run([tf.assign(variables[name], value) for name, value in values.items()])
        short, mid, long_ = sess.run([outputs['short_offsets'], outputs['mid_offsets'], outputs['long_offsets']])
    np.testing.assert_allclose(short.reshape(4, 5, K, 2), np.broadcast_to(short_px, (4, 5, K, 2)), rtol=1e-6)
    expected_mid = steps * short_px[[l for _, l in config.DIRECTED_EDGES]]
    np.testing.assert_allclose(mid.reshape(4, 5, E, 2), np.broadcast_to(expected_mid, (4, 5, E, 2)), rtol=1e-5)
    np.testing.assert_allclose(long_.reshape(4, 5, K, 2), np.broadcast_to(steps * short_px, (4, 5, K, 2)),
                               rtol=1e-5)


def test_heatmap_and_segmentation_heads_start_at_their_prior_probabilities():
    """Biases -log((1 - pi) / pi): on features of 0 the sigmoid heads give pi, the offsets 0."""
    features = tf.zeros([1, 3, 4, 8])
    default = model.build_heads(features, 16, scope='default')
    chosen = model.build_heads(features, 16, scope='chosen', heatmap_prior=0.2, segmentation_prior=0.7)
    with _session() as sess:
        sess.run(tf.global_variables_initializer())
        default, chosen = sess.run([default, chosen])
    for outputs, heatmap, segmentation in ((default, config.HEATMAP_PRIOR, config.SEGMENTATION_PRIOR),
                                           (chosen, 0.2, 0.7)):
        np.testing.assert_allclose(outputs['heatmaps'], heatmap, rtol=1e-5)
        np.testing.assert_allclose(outputs['segmentation'], segmentation, rtol=1e-5)
        for name in ('short_offsets', 'mid_offsets', 'long_offsets'):
            assert not outputs[name].any(), name
    with pytest.raises(ValueError, match='prior probability'):
        model.prior_bias(1.0)


# ----------------------------------------------------------------------------------------------------------
# Losses on synthetic maps
# ----------------------------------------------------------------------------------------------------------

def _synthetic_targets(rng, batch=2, height=9, width=11):
    """Target maps with the contract's names and shapes; random but consistent (offsets 0 where invalid)."""
    def binary(*shape, p=0.3):
        return (rng.uniform(size=shape) < p).astype(np.float32)
    targets = {
        'heatmaps': binary(batch, height, width, K),
        'short_valid': binary(batch, height, width, K),
        'mid_valid': binary(batch, height, width, E),
        'long_valid': binary(batch, height, width, K),
        'segmentation': binary(batch, height, width, 1, p=0.4),
        'seg_weights': 1 - binary(batch, height, width, 1, p=0.2),
        'kp_weights': 1 - binary(batch, height, width, 1, p=0.3),
    }
    for name, valid in (('short_offsets', 'short_valid'), ('mid_offsets', 'mid_valid'),
                        ('long_offsets', 'long_valid')):
        offsets = rng.uniform(-80, 80, targets[valid].shape + (2,)).astype(np.float32)
        offsets *= targets[valid][..., None]
        targets[name] = offsets.reshape(batch, height, width, -1)
    return targets


def _outputs_from(maps, logit=8.0):
    """An outputs dict (model names) whose logits are +-logit at the given binary heatmap/segmentation."""
    heat = (2 * maps['heatmaps'] - 1) * logit
    seg = (2 * maps['segmentation'] - 1) * logit
    return {'heatmap_logits': tf.constant(heat), 'heatmaps': tf.sigmoid(heat),
            'segmentation_logits': tf.constant(seg), 'segmentation': tf.sigmoid(seg),
            'short_offsets': tf.constant(maps['short_offsets']),
            'mid_offsets': tf.constant(maps['mid_offsets']),
            'long_offsets': tf.constant(maps['long_offsets'])}


def _numpy_head_losses(predicted, targets, logit, norm):
    """Independent reference of the five head losses of _outputs_from(predicted, logit), float64:
    cross-entropy from the probabilities, offset errors from the even (dx) and odd (dy) channels over `norm`."""
    def xent(binary, labels, weights):
        p = 1 / (1 + np.exp(-(2 * binary.astype(np.float64) - 1) * logit))
        loss = -labels * np.log(p) - (1 - labels) * np.log(1 - p)
        weights = np.broadcast_to(weights, loss.shape)
        return (loss * weights).sum() / weights.sum()

    def l1(name, valid):
        error = predicted[name].astype(np.float64) - targets[name]
        per_field = np.abs(error[..., 0::2]) + np.abs(error[..., 1::2])
        return (per_field * targets[valid]).sum() / targets[valid].sum() / norm

    return {'heatmap': xent(predicted['heatmaps'], targets['heatmaps'], targets['kp_weights']),
            'segmentation': xent(predicted['segmentation'], targets['segmentation'], targets['seg_weights']),
            'short': l1('short_offsets', 'short_valid'), 'mid': l1('mid_offsets', 'mid_valid'),
            'long': l1('long_offsets', 'long_valid')}


# loss name -> (its config name, the paper's weight); distinct weights, so that a swap of two shows.
PAPER_LOSS_WEIGHTS = {'heatmap': ('HEATMAP_LOSS_WEIGHT', 4.0), 'segmentation': ('SEGMENTATION_LOSS_WEIGHT', 2.0),
                      'short': ('SHORT_OFFSET_LOSS_WEIGHT', 1.0), 'mid': ('MID_OFFSET_LOSS_WEIGHT', 0.25),
                      'long': ('LONG_OFFSET_LOSS_WEIGHT', 0.125)}


def test_losses_are_exact_on_a_hand_computed_example(monkeypatch):
    # Set here, not read from config.py (which users edit): the paper's weights, and an offset normaliser
    # unlike RADIUS (they differ in the quickstart preset), so that dividing by the wrong one shows.
    for name, value in PAPER_LOSS_WEIGHTS.values():
        monkeypatch.setattr(config, name, value)
    monkeypatch.setattr(config, 'OFFSET_LOSS_NORM', 20.0)
    assert config.RADIUS != 20.0
    rng = np.random.RandomState(3)
    targets = _synthetic_targets(rng, batch=1, height=3, width=4)
    predicted = _synthetic_targets(rng, batch=1, height=3, width=4)
    outputs = _outputs_from(predicted, logit=1.5)
    losses = model.compute_losses(outputs, targets, variables=[])
    with _session() as sess:
        values = sess.run(losses)
    expected = _numpy_head_losses(predicted, targets, logit=1.5, norm=20.0)
    for name in heads.NAMES:
        np.testing.assert_allclose(values[name], expected[name], rtol=1e-5, err_msg=name)
    expected_total = sum(PAPER_LOSS_WEIGHTS[name][1] * expected[name] for name in heads.NAMES)
    np.testing.assert_allclose(values['total'], expected_total, rtol=1e-5)
    assert values['intermediate'] == 0 and values['weight_decay'] == 0


def test_intermediate_loss_is_its_weight_times_the_weighted_intermediate_head_losses(monkeypatch):
    monkeypatch.setattr(config, 'INTERMEDIATE_LOSS_WEIGHT', 0.3)  # read at call time; 1 would hide it
    rng = np.random.RandomState(13)
    targets = _synthetic_targets(rng, batch=1, height=3, width=4)
    final = _synthetic_targets(rng, batch=1, height=3, width=4)
    intermediate = _synthetic_targets(rng, batch=1, height=3, width=4)
    outputs = _outputs_from(final, logit=1.5)
    outputs['intermediate'] = _outputs_from(intermediate, logit=2.5)
    with _session() as sess:
        values = sess.run(model.compute_losses(outputs, targets, variables=[]))
    weights = model.loss_weights()
    expected_final = _numpy_head_losses(final, targets, logit=1.5, norm=config.OFFSET_LOSS_NORM)
    expected_intermediate = _numpy_head_losses(intermediate, targets, logit=2.5, norm=config.OFFSET_LOSS_NORM)
    expected = 0.3 * sum(weights[name] * expected_intermediate[name] for name in heads.NAMES)
    np.testing.assert_allclose(values['intermediate'], expected, rtol=1e-5)
    for name in heads.NAMES:  # the five keys stay those of the final heads
        np.testing.assert_allclose(values[name], expected_final[name], rtol=1e-5, err_msg=name)
    np.testing.assert_allclose(values['total'], expected + sum(weights[name] * expected_final[name]
                                                               for name in heads.NAMES), rtol=1e-5)


def test_loss_is_lower_for_the_true_targets_than_for_random_outputs_synthetic():
    rng = np.random.RandomState(4)
    targets = _synthetic_targets(rng)
    true_losses = model.compute_losses(_outputs_from(targets), targets, variables=[])
    random_losses = model.compute_losses(_outputs_from(_synthetic_targets(rng)), targets, variables=[])
    with _session() as sess:
        true_values, random_values = sess.run([true_losses, random_losses])
    for name in heads.NAMES:
        assert true_values[name] < 0.1 * random_values[name], name
    for name in ('short', 'mid', 'long'):
        assert true_values[name] == 0, name


def test_offset_losses_are_zero_not_nan_when_nothing_is_valid():
    rng = np.random.RandomState(5)
    targets = _synthetic_targets(rng)
    for name in ('short_valid', 'mid_valid', 'long_valid', 'kp_weights', 'seg_weights'):
        targets[name] = np.zeros_like(targets[name])
    outputs = _outputs_from(_synthetic_targets(rng))
    losses = model.compute_losses(outputs, targets, variables=[])
    grads = tf.gradients(losses['total'], [outputs['mid_offsets'], outputs['heatmap_logits']])
    with _session() as sess:
        values, grad_values = sess.run([losses, grads])
    for name in heads.NAMES + ('total',):
        assert values[name] == 0.0, (name, values[name])
    assert all(np.all(g == 0) for g in grad_values)


def test_compute_losses_names_a_missing_target_and_a_grid_mismatch():
    rng = np.random.RandomState(6)
    targets = _synthetic_targets(rng)
    outputs = _outputs_from(targets)
    incomplete = dict(targets)
    del incomplete['long_valid']
    with pytest.raises(KeyError, match='long_valid'):
        model.compute_losses(outputs, incomplete, variables=[])
    other_grid = _synthetic_targets(rng, height=5)
    with pytest.raises(ValueError, match='heatmaps'):
        model.compute_losses(outputs, other_grid, variables=[])


# ----------------------------------------------------------------------------------------------------------
# Losses and refinement on real COCO targets (data_generator.py)
# ----------------------------------------------------------------------------------------------------------

CROWD_IMAGE_ID = 34246  # 14 persons and a crowd region: every mask of the losses is exercised


@pytest.fixture(scope='module')
def coco_train(coco_sample):
    import data_generator
    return data_generator.CocoPersons(coco_sample['train_annotations'], coco_sample['train_images'])


@pytest.fixture(scope='module')
def crowd_targets(coco_train):
    """Targets of the crowd image, unaugmented, at stride 8 (a batch of one)."""
    import data_generator
    targets = data_generator.encode_example(coco_train.load_example(CROWD_IMAGE_ID), 8)
    return {name: value[None] for name, value in targets.items() if name != 'image'}


def _random_outputs(rng, targets):
    """Random logits and offsets on the targets' grid."""
    shape = targets['heatmaps'].shape[:3]
    heat = rng.normal(0, 3, shape + (K,)).astype(np.float32)
    seg = rng.normal(0, 3, shape + (1,)).astype(np.float32)
    return {'heatmap_logits': heat, 'segmentation_logits': seg,
            'short_offsets': rng.uniform(-40, 40, shape + (2 * K,)).astype(np.float32),
            'mid_offsets': rng.uniform(-100, 100, shape + (2 * E,)).astype(np.float32),
            'long_offsets': rng.uniform(-150, 150, shape + (2 * K,)).astype(np.float32)}


def _loss_values(outputs, targets):
    with tf.Graph().as_default():
        tensors = {name: tf.constant(value) for name, value in outputs.items()}
        losses = model.compute_losses(tensors, targets, variables=[])
        with _session() as sess:
            return sess.run(losses)


def test_loss_is_lower_for_the_true_targets_than_for_random_outputs_real(crowd_targets):
    rng = np.random.RandomState(7)
    true_outputs = {
        'heatmap_logits': (2 * crowd_targets['heatmaps'] - 1) * 6,
        'segmentation_logits': (2 * crowd_targets['segmentation'] - 1) * 6,
        'short_offsets': crowd_targets['short_offsets'], 'mid_offsets': crowd_targets['mid_offsets'],
        'long_offsets': crowd_targets['long_offsets']}
    true_losses = _loss_values(true_outputs, crowd_targets)
    random_losses = _loss_values(_random_outputs(rng, crowd_targets), crowd_targets)
    for name in heads.NAMES:
        assert true_losses[name] < 0.1 * random_losses[name], (name, true_losses[name], random_losses[name])
    assert true_losses['total'] < 0.05 * random_losses['total']


def test_masked_positions_do_not_change_the_loss_when_their_predictions_change(crowd_targets):
    rng = np.random.RandomState(8)
    masks = {'heatmap_logits': crowd_targets['kp_weights'], 'segmentation_logits': crowd_targets['seg_weights'],
             'short_offsets': np.repeat(crowd_targets['short_valid'], 2, axis=3),
             'mid_offsets': np.repeat(crowd_targets['mid_valid'], 2, axis=3),
             'long_offsets': np.repeat(crowd_targets['long_valid'], 2, axis=3)}
    for name, mask in masks.items():  # the sample really has masked and unmasked positions of every kind
        assert 0 < mask.mean() < 1, name
    outputs = _random_outputs(rng, crowd_targets)
    other = _random_outputs(rng, crowd_targets)
    masked_changed = {name: np.where(masks[name] > 0, outputs[name], 1e3 * other[name]) for name in outputs}
    valid_changed = {name: np.where(masks[name] > 0, other[name], outputs[name]) for name in outputs}
    base = _loss_values(outputs, crowd_targets)
    after_masked = _loss_values(masked_changed, crowd_targets)
    after_valid = _loss_values(valid_changed, crowd_targets)
    for name in heads.NAMES:
        np.testing.assert_allclose(after_masked[name], base[name], rtol=1e-6, err_msg=name)
        assert abs(after_valid[name] - base[name]) > 1e-3 * base[name], name


def test_refinement_shrinks_noisy_mid_offsets_with_exact_short_offsets_real(crowd_targets):
    """Real targets: the mid offsets of every person, with noise, refined with the exact short offsets."""
    rng = np.random.RandomState(9)
    stride = 8
    valid = crowd_targets['mid_valid'] > 0
    truth = crowd_targets['mid_offsets']
    noisy = truth + rng.normal(0, 5.0, truth.shape).astype(np.float32)
    refined = model.refine_offsets(tf.constant(noisy), tf.constant(crowd_targets['short_offsets']),
                                   MID_TARGETS, stride)
    with _session() as sess:
        refined = sess.run(refined)
    error = lambda o: np.linalg.norm((o - truth).reshape(truth.shape[:3] + (E, 2)), axis=-1)[valid]
    before, after = error(noisy), error(refined)
    # Inside the disks the short offsets are an affine field, which bilinear sampling reproduces exactly.
    assert np.median(after) < 0.01 * np.median(before), (np.median(before), np.median(after))
    assert np.mean(after) < 0.2 * np.mean(before), (np.mean(before), np.mean(after))


# ----------------------------------------------------------------------------------------------------------
# The whole network (ResNet-50 backbone)
# ----------------------------------------------------------------------------------------------------------

@pytest.fixture(scope='module')
def backbone_checkpoint(make_slim_checkpoint):
    """A TF-Slim-named checkpoint with the reference's deterministic, well-scaled weights: a stand-in for the
    ImageNet release (tests/conftest.py, shared with test_resnet.py)."""
    return make_slim_checkpoint(TEST_DEPTH)


def _init(sess, checkpoint):
    sess.run(tf.global_variables_initializer())
    resnet.load_backbone_checkpoint(sess, checkpoint, 'resnet_v2_%d' % TEST_DEPTH)


def _check_outputs(outputs, grid):
    channels = {'heatmap_logits': K, 'heatmaps': K, 'short_offsets': 2 * K, 'mid_offsets': 2 * E,
                'long_offsets': 2 * K, 'segmentation_logits': 1, 'segmentation': 1}
    for name, count in channels.items():
        assert outputs[name].shape == (1, grid, grid, count), name
        assert np.all(np.isfinite(outputs[name])), name
    np.testing.assert_allclose(outputs['heatmaps'], 1 / (1 + np.exp(-outputs['heatmap_logits'])), atol=1e-5)
    np.testing.assert_allclose(outputs['segmentation'], 1 / (1 + np.exp(-outputs['segmentation_logits'])),
                               atol=1e-5)


def test_build_model_outputs_and_the_same_weights_serve_strides_16_and_8(backbone_checkpoint):
    images = tf.placeholder(tf.uint8, [None, None, None, 3])
    train_outputs = model.build_model(images, is_training=True, output_stride=16, depth=TEST_DEPTH)
    variables = tf.global_variables()
    eval_outputs = model.build_model(images, is_training=False, output_stride=8, depth=TEST_DEPTH, reuse=True)
    assert tf.global_variables() == variables  # inference at stride 8 creates no variable of its own
    head_variables = [v.op.name for v in variables if v.op.name.startswith(model.HEADS_SCOPE + '/')]
    assert sorted(head_variables) == sorted('%s/%s/%s' % (model.HEADS_SCOPE, head, leaf)
                                   for head in heads.NAMES for leaf in ('weights', 'biases'))
    image = np.random.RandomState(10).randint(0, 256, (1, 65, 65, 3)).astype(np.uint8)
    with _session() as sess:
        _init(sess, backbone_checkpoint)
        at16, at8 = sess.run([train_outputs, eval_outputs], {images: image})
    _check_outputs(at16, 5)
    _check_outputs(at8, 9)
    _check_outputs(at16['intermediate'], 5)
    _check_outputs(at8['intermediate'], 9)
    # Atrous convolution at stride 8 computes, at every other cell, what the stride-16 network computes
    # (the grids share the input corners): the 1x1 heads see the same features there. Refined offsets
    # differ, as they sample the short offsets on grids of different resolution.
    for outputs_16, outputs_8 in ((at16, at8), (at16['intermediate'], at8['intermediate'])):
        for name in ('heatmap_logits', 'segmentation_logits', 'short_offsets'):
            scale = np.abs(outputs_16[name]).max()
            np.testing.assert_allclose(outputs_8[name][:, ::2, ::2], outputs_16[name], atol=1e-4 * scale,
                                       err_msg=name)


def test_build_model_is_the_heads_on_resnet_of_images_scaled_to_minus1_1(backbone_checkpoint):
    """build_model(uint8) preprocesses inside the graph (images / 127.5 - 1); the final heads read the backbone
    output and the intermediate heads block3 normalised by block4/unit_1's preact batch norm."""
    images = tf.placeholder(tf.uint8, [1, 65, 65, 3])
    outputs = model.build_model(images, is_training=False, output_stride=16, depth=TEST_DEPTH,
                                intermediate=True)
    variables = tf.global_variables()
    scope = 'resnet_v2_%d' % TEST_DEPTH
    with tf.variable_scope(tf.get_variable_scope(), reuse=True):
        net, end_points = resnet.resnet_v2(tf.cast(images, tf.float32) / 127.5 - 1.0, TEST_DEPTH,
                                           is_training=False, output_stride=16, scope=scope)
        expected = model.build_heads(net, 16, scope=model.HEADS_SCOPE)
        normalised_block3 = end_points[scope + '/block4/unit_1/bottleneck_v2/preact']
        expected['intermediate'] = model.build_heads(normalised_block3, 16, scope=model.INTERMEDIATE_SCOPE)
    assert tf.global_variables() == variables
    image = np.random.RandomState(14).randint(0, 256, (1, 65, 65, 3)).astype(np.uint8)
    with _session() as sess:
        _init(sess, backbone_checkpoint)
        got, want = sess.run([outputs, expected], {images: image})
    for which in ('final', 'intermediate'):
        got_heads = got if which == 'final' else got['intermediate']
        want_heads = want if which == 'final' else want['intermediate']
        for name, value in want_heads.items():
            if name == 'intermediate':
                continue
            assert np.abs(value).max() > 0, (which, name)
            np.testing.assert_allclose(got_heads[name], value, rtol=1e-5, atol=1e-5 * np.abs(value).max(),
                                       err_msg='%s %s' % (which, name))


def test_intermediate_features_follow_the_configured_block():
    end_points = {'resnet_v2_50/block%d/unit_1/bottleneck_v2/preact' % i: i for i in (2, 3, 4)}
    assert model.intermediate_features(end_points, 50) == 4  # config.INTERMEDIATE_BLOCK 'block3'
    assert model.intermediate_features(end_points, 101, block='block1') == 2
    with pytest.raises(ValueError, match='block4'):
        model.intermediate_features(end_points, 50, block='block4')


def test_weight_decay_is_half_the_decay_times_the_squared_kernels_of_backbone_and_heads(backbone_checkpoint):
    rng = np.random.RandomState(15)
    images = tf.constant(rng.randint(0, 256, (1, 33, 33, 3)).astype(np.uint8))
    outputs = model.build_model(images, is_training=True, output_stride=16, depth=TEST_DEPTH)
    losses = model.compute_losses(outputs, _synthetic_targets(rng, batch=1, height=3, width=3))
    scope = 'resnet_v2_%d' % TEST_DEPTH
    kernels = [name for name, _ in resnet.backbone_variables(TEST_DEPTH, scope)
               if name.rsplit('/', 1)[-1] == 'weights']
    kernels += ['%s/%s/weights' % (scope, head) for scope in (model.HEADS_SCOPE, model.INTERMEDIATE_SCOPE)
                for head in heads.NAMES]
    variables = {v.op.name: v for v in tf.global_variables()}
    # Non-zero head biases: biases, gamma and beta would all change the sum if they were decayed.
    set_biases = [tf.assign(v, rng.normal(0, 1, v.shape.as_list()).astype(np.float32))
                  for name, v in variables.items() if 'heads/' in name and name.endswith('/biases')]
    with _session() as sess:
        _init(sess, backbone_checkpoint)
        sess.run(set_biases)
        values = sess.run({name: variables[name] for name in kernels})
        decay, trainable = sess.run([losses['weight_decay'], tf.trainable_variables()])
    expected = config.WEIGHT_DECAY * sum(np.sum(np.square(w, dtype=np.float64)) for w in values.values()) / 2
    np.testing.assert_allclose(decay, expected, rtol=1e-5)
    everything = config.WEIGHT_DECAY * sum(np.sum(np.square(w, dtype=np.float64)) for w in trainable) / 2
    assert everything > expected * (1 + 1e-3)  # the excluded variables would have shown


def test_build_model_rejects_a_bad_stride_or_depth_by_name():
    images = tf.placeholder(tf.uint8, [1, 65, 65, 3])
    with pytest.raises(ValueError, match='output_stride'):
        model.build_model(images, is_training=True, output_stride=12, depth=TEST_DEPTH)
    with pytest.raises(ValueError, match='depth'):
        model.build_model(images, is_training=True, output_stride=16, depth=34)


def test_build_model_takes_its_settings_as_an_argument_and_leaves_config_alone():
    # The run's Settings reach the backbone (batch norm, residual initialisation) and the heads without
    # config.py being touched: unfrozen batch norm puts two moving-average updates per batch norm in UPDATE_OPS,
    # conv3 kernels start random, no intermediate heads are built.
    options = settings.make(overrides={'FREEZE_BATCH_NORM': False, 'ZERO_INIT_RESIDUAL': False,
                                       'INTERMEDIATE_SUPERVISION': False, 'BACKBONE_DEPTH': TEST_DEPTH})
    before = settings.defaults()
    outputs = model.build_model(tf.placeholder(tf.uint8, [1, 33, 33, 3]), is_training=True, options=options)
    graph = tf.get_default_graph()
    batch_norms = sum(v.op.name.endswith('/moving_mean') for v in tf.global_variables())
    assert len(graph.get_collection(tf.GraphKeys.UPDATE_OPS)) == 2 * batch_norms == 2 * (1 + 3 * 16)
    assert 'intermediate' not in outputs
    assert outputs['heatmaps'].shape.as_list()[1] == (33 - 1) // options.TRAIN_OUTPUT_STRIDE + 1
    conv3 = [v for v in tf.global_variables() if v.op.name.endswith('/conv3/weights')]
    with _session() as sess:
        sess.run(tf.global_variables_initializer())
        assert len(conv3) == 16 and all(k.std() > 0 for k in sess.run(conv3))
    assert settings.defaults() == before


def test_every_head_receives_gradient_and_refinement_feeds_the_short_head(backbone_checkpoint):
    rng = np.random.RandomState(11)
    images = tf.constant(rng.randint(0, 256, (1, 65, 65, 3)).astype(np.uint8))
    outputs = model.build_model(images, is_training=True, output_stride=16, depth=TEST_DEPTH)
    targets = _synthetic_targets(rng, batch=1, height=5, width=5)
    losses = model.compute_losses(outputs, targets)
    head_vars = {v.op.name: v for v in tf.trainable_variables() if 'heads/' in v.op.name}
    assert len(head_vars) == 2 * 2 * len(heads.NAMES)  # final and intermediate heads
    backbone_kernel = [v for v in tf.trainable_variables() if v.op.name.endswith('conv1/weights')][0]
    names = sorted(head_vars)
    grads = tf.gradients(losses['total'], [head_vars[n] for n in names] + [backbone_kernel])
    short_kernel = head_vars[model.HEADS_SCOPE + '/short/weights']
    via_refinement = tf.gradients([losses['mid'], losses['long']], [short_kernel])[0]
    with _session() as sess:
        _init(sess, backbone_checkpoint)
        grad_values, refinement_grad = sess.run([grads, via_refinement])
    for name, grad in zip(names + ['backbone conv1'], grad_values):
        assert np.all(np.isfinite(grad)) and np.abs(grad).max() > 0, name
    # The mid and long losses reach the short head only through the sampled short offsets of Eq. 2.
    assert np.abs(refinement_grad).max() > 0


def test_random_resnet101_with_frozen_batch_norm_has_unit_features_and_trains_finitely():
    """No checkpoint, frozen unit statistics (train.py --from-scratch without unfreezing batch norm): the
    zero-initialised conv3 of every unit (config.ZERO_INIT_RESIDUAL) keeps the features of order 1, so the
    offsets start near 0 and SGD steps give finite, decreasing losses (He-scale conv3: feature rms ~1e4, NaN
    after a step)."""
    assert config.FREEZE_BATCH_NORM and config.ZERO_INIT_RESIDUAL  # the defaults this test is about
    rng = np.random.RandomState(12)
    tf.set_random_seed(12)
    images = tf.constant(rng.randint(0, 256, (2, 33, 33, 3)).astype(np.uint8))
    features, _ = resnet.resnet_v2_101(model.preprocess(images), is_training=True, output_stride=16)
    outputs = model.build_heads(features, 16)
    losses = model.compute_losses(outputs, _synthetic_targets(rng, batch=2, height=3, width=3))
    train = tf.train.MomentumOptimizer(config.LEARNING_RATE, config.MOMENTUM).minimize(losses['total'])
    with _session() as sess:
        sess.run(tf.global_variables_initializer())
        # The short offsets are a head's own output; the long ones are refined with themselves and then with the
        # short ones (up to 3x their raw size by design), which says nothing about the features' scale.
        feature_values, offsets = sess.run([features, outputs['short_offsets']])
        steps = []
        for _ in range(4):  # the losses each step starts from (the first: before any update)
            steps.append(sess.run([losses, train])[0])
    rms = np.sqrt(np.mean(feature_values ** 2))
    assert np.all(np.isfinite(feature_values)) and 0.1 < rms < 10, rms
    assert np.std(offsets) < config.RADIUS, np.std(offsets)  # of order one disk radius at most
    for values in steps:
        for name, value in values.items():
            assert np.isfinite(value), (name, value)
    totals = [values['total'] for values in steps]
    assert all(later < earlier for earlier, later in zip(totals, totals[1:])), totals


def test_a_few_sgd_steps_on_one_real_sample_lower_its_loss_markedly(coco_train, backbone_checkpoint):
    import data_generator
    example = coco_train.load_example(151408)  # one large person, 12 labelled keypoints
    sample = data_generator.augment_example(example, np.random.default_rng(0), input_size=129, stride=16)
    for name in ('short_valid', 'mid_valid', 'long_valid', 'segmentation'):
        assert sample[name].sum() > 10, name  # the crop holds the person: every head has targets
    batch = {name: value[None] for name, value in sample.items()}
    outputs = model.build_model(tf.constant(batch.pop('image')), is_training=True, output_stride=16,
                                depth=TEST_DEPTH)
    losses = model.compute_losses(outputs, batch)
    train = tf.train.MomentumOptimizer(config.LEARNING_RATE, config.MOMENTUM).minimize(losses['total'])
    with _session() as sess:
        _init(sess, backbone_checkpoint)
        before = sess.run(losses)
        for _ in range(15):
            sess.run(train)
        after = sess.run(losses)
    assert after['total'] - after['weight_decay'] < 0.6 * (before['total'] - before['weight_decay']), (
        before, after)
    for name in heads.NAMES + ('intermediate',):
        assert after[name] < before[name], (name, before[name], after[name])


def test_long_offsets_are_refined_with_themselves_before_the_short_offsets():
    """Constant fields: each self-refinement adds L_k(x + L_k(x)) = L_k, each short-range one S_k, so after
    n self steps and m short steps the long field is (1 + n) L_k + m S_k (0 self steps: Eq. 2 alone)."""
    stride, steps = 8, 2
    long_px = np.stack([np.arange(K) - 3.0, 2.0 * np.arange(K) - 5.0], axis=1)
    short_px = np.stack([np.arange(K) + 1.0, 20.0 - 3 * np.arange(K)], axis=1)
    features = tf.ones([1, 4, 5, 1])
    outputs = {n: model.build_heads(features, stride, scope='heads_%d' % n, refinement_steps=steps, long_self_steps=n)
               for n in (0, 2)}
    variables = {v.op.name: v for v in tf.global_variables()}
    assigns = []
    for n in (0, 2):
        for name, v in variables.items():
            if name.startswith('heads_%d/' % n):
                value = np.zeros(v.shape.as_list(), np.float32)
                if name.endswith('short/weights'):
                    value[0, 0, 0] = short_px.reshape(-1) / config.OFFSET_OUTPUT_SCALE
                if name.endswith('long/weights'):
                    value[0, 0, 0] = long_px.reshape(-1) / config.OFFSET_OUTPUT_SCALE
                assigns.append(tf.assign(v, value))
    with _session() as sess:
        sess.run(assigns)
        values = sess.run({n: outputs[n]['long_offsets'] for n in (0, 2)})
    for n in (0, 2):
        expected = (1 + n) * long_px + steps * short_px
        np.testing.assert_allclose(values[n].reshape(4, 5, K, 2), np.broadcast_to(expected, (4, 5, K, 2)),
                                   rtol=1e-5, err_msg=str(n))


def test_self_refinement_corrects_shrunk_long_offsets_on_real_targets(crowd_targets):
    """Real targets: long offsets shrunk towards 0 (a = 0.6, as an under-fit network's), refined twice with
    themselves, land much nearer their keypoints: a T becomes a (2 - a) T, then nearer still."""
    valid = crowd_targets['long_valid'] > 0
    truth = crowd_targets['long_offsets']
    shrunk = tf.constant(0.6 * truth)
    refined = model.refine_offsets(shrunk, shrunk, list(range(K)), 8, steps=2)
    with _session() as sess:
        refined = sess.run(refined)
    error = lambda o: np.linalg.norm((o - truth).reshape(truth.shape[:3] + (K, 2)), axis=-1)[valid]
    before, after = np.median(error(0.6 * truth)), np.median(error(refined))
    assert after < 0.4 * before, (before, after)


def test_upsampling_keeps_the_cells_and_is_exact_on_linear_fields():
    """upsample_grid: fine cell i*f is coarse cell i, and a field linear in x (an offset y - x) is exact between
    cells: the losses on a finer grid (config.LOSS_STRIDE) compare the network's own interpolated maps."""
    rng = np.random.RandomState(0)
    coarse = rng.normal(0, 10, (2, 5, 7, 3)).astype(np.float32)
    jj, ii = np.meshgrid(np.arange(7) * 16.0, np.arange(5) * 16.0)
    linear = np.stack([30.0 - jj, -12.0 - ii], axis=-1)[None].astype(np.float32)  # y - x for y = (30, -12)
    with _session() as sess:
        up, up_linear = sess.run([model.upsample_grid(tf.constant(coarse), 4),
                                  model.upsample_grid(tf.constant(linear), 4)])
    assert up.shape == (2, 17, 25, 3)
    np.testing.assert_array_equal(up[:, ::4, ::4], coarse)
    fine_j, fine_i = np.meshgrid(np.arange(25) * 4.0, np.arange(17) * 4.0)
    np.testing.assert_allclose(up_linear[0], np.stack([30.0 - fine_j, -12.0 - fine_i], axis=-1), atol=1e-4)


def test_stride_16_targets_upsampled_meet_the_stride_4_targets_of_the_same_image(coco_train):
    """The crowd image's targets at stride 16, upsampled by 4, equal its targets made at stride 4 wherever all
    four surrounding coarse cells are valid: both grids put cell i at pixel i*s, and upsample_outputs reads
    them alike (a half-cell shift of either would miss by 2-8 px everywhere)."""
    import grid
    import targets
    import transformer
    example = coco_train.load_example(CROWD_IMAGE_ID)
    padded = grid.pad_to_grid(example['image'], 16)
    identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])

    def encode(stride):
        masks = transformer.warp_masks_to_grid(example['masks'], identity, padded.shape[:2], stride)
        crowd = transformer.warp_masks_to_grid(example['crowd_mask'], identity, padded.shape[:2], stride)
        return targets.make_targets(example['keypoints'], masks, crowd, padded.shape, stride)

    coarse, fine = encode(16), encode(4)
    for head in heads.OFFSET_HEADS:
        upsampled = model.upsample_outputs({h.logits or h.output: tf.constant(coarse[h.target][None])
                                            for h in heads.HEADS}, 4)[head.output]
        valid = model.upsample_grid(tf.constant(coarse[head.validity][None]), 4)
        with _session() as sess:
            upsampled, valid = sess.run([upsampled, valid])
        assert upsampled.shape[1:] == fine[head.target].shape
        inside = (valid[0] > 0.999) & (fine[head.validity] > 0)  # [H, W, F]
        assert inside.sum() > 100, head.name
        error = np.abs(upsampled[0] - fine[head.target]).reshape(inside.shape + (2,)).max(axis=-1)[inside]
        # Cells whose four corners point at different persons' keypoints interpolate between them.
        assert np.mean(error < 1e-3) > 0.9, (head.name, np.mean(error < 1e-3), np.median(error))
