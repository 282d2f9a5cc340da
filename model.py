"""PersonLab network: preprocessing, the five 1x1-conv heads, recurrent offset refinement and the losses.

Graph mode through tensorflow.compat.v1. The backbone is resnet.py's TF-Slim-compatible ResNet-v2; the heads
are 1x1 convolutions on its output (and, for intermediate supervision, on `block3` normalised by the next
unit's `preact` batch norm). Every map is on the output grid of stride s: cell (row i, col j) sits at input
pixel (x=j*s, y=i*s); every offset is in input pixels (config.py, "Coordinate convention"). Nothing in the
heads depends on the stride except those positions, so the weights trained at output stride 16 serve
inference at 8.

Settings: every function that has a setting to read takes `options` (a settings.Settings; None -> config.py's
values now) and passes it on; an explicit argument (depth=, steps=, ...) wins over it. The backbone gets the
values as resnet.py's keyword arguments.

Public functions:
  preprocess(images)                      RGB 0..255 -> float32 [-1, 1] (what TF-Slim ResNet-v2 expects)
  build_model(images, is_training, ...)   -> dict of output tensors (names of the output contract)
  intermediate_features(end_points, ...)  what the intermediate heads read: a block, batch-normalised
  build_heads(features, stride, ...)      the heads and refinement on any feature map (used by build_model)
  prior_bias(probability)                 the bias that makes a sigmoid head start at that probability
  refine_offsets(offsets, short, ...)     Eq. 2 of the paper, `steps` times
  bilinear_sample(fields, x, y, index)    border-clamped bilinear sampling from TF ops
  upsample_outputs(outputs, factor)       the heads' outputs on a grid `factor` times finer (the losses')
  compute_losses(outputs, targets)        -> dict of scalar loss tensors
"""
import math

import tensorflow.compat.v1 as tf

import config
import heads
import resnet
import settings

HEADS_SCOPE = 'personlab_heads'
INTERMEDIATE_SCOPE = 'personlab_intermediate_heads'


def preprocess(images):
    """Scales RGB images to what TF-Slim ResNet-v2 expects; the same op for training and inference.

    Args:
      images: [B, H, W, 3] tensor (or array), RGB values in 0..255, any integer or float dtype.
    Returns:
      float32 [B, H, W, 3] in [-1, 1] (0 -> -1, 255 -> 1), as TF-Slim's inception preprocessing.
    """
    images = tf.convert_to_tensor(images)
    if images.shape.ndims is not None and (images.shape.ndims != 4 or images.shape[-1] not in (None, 3)):
        raise ValueError('preprocess: images must be [batch, height, width, 3] RGB, got shape %s'
                         % images.shape)
    images = tf.cast(images, tf.float32)
    return images * (2.0 / 255.0) - 1.0


def _output_stride(output_stride, is_training, options):
    """The stride actually used: None means the settings' stride for training or inference."""
    if output_stride is None:
        output_stride = options.TRAIN_OUTPUT_STRIDE if is_training else options.EVAL_OUTPUT_STRIDE
    if output_stride not in resnet.REACHABLE_OUTPUT_STRIDES:
        raise ValueError('output_stride must be one of %s (resnet.REACHABLE_OUTPUT_STRIDES), got %r'
                         % (resnet.REACHABLE_OUTPUT_STRIDES, output_stride))
    return output_stride


def _end_point(end_points, name):
    """The backbone end point whose key ends with '/<name>' (outer scopes may prefix the key)."""
    keys = [key for key in end_points if key == name or key.endswith('/' + name)]
    if len(keys) != 1:
        raise KeyError('backbone end point %r: expected exactly one match, found %s among %s'
                       % (name, keys, sorted(end_points)))
    return end_points[keys[0]]


def intermediate_features(end_points, depth, block=None, options=None):
    """Features of the intermediate heads: `block`'s output normalised as the backbone itself normalises it.

    A ResNet-v2 block ends on the raw residual stream (no batch norm); the next unit's `preact`, relu(batch
    norm) with that unit's checkpoint statistics, normalises it. No variable of its own.

    Args:
      end_points: the backbone's end points (resnet.resnet_v2).
      depth: the backbone's depth (its block names).
      block: 'block1'..'block3'; None -> options.INTERMEDIATE_BLOCK.
    Returns:
      float32 [B, H', W', C], the end point '<next block>/unit_1/bottleneck_v2/preact' (on block's grid).
    """
    block = settings.resolve(options).INTERMEDIATE_BLOCK if block is None else block
    names = [name for name, _, _, _ in resnet.BLOCKS[depth]]
    if block not in names[:-1]:
        raise ValueError('intermediate block must be one of %s (the last block feeds the final heads), got %r'
                         % (names[:-1], block))
    following = names[names.index(block) + 1]
    return _end_point(end_points, '%s/unit_1/%s/preact' % (following, resnet.UNIT_SCOPE))


def build_model(images, is_training, output_stride=None, depth=None, intermediate=None, reuse=None, options=None):
    """The whole PersonLab network on a batch of RGB images.

    Args:
      images: [B, H, W, 3] RGB in 0..255 (uint8 or float); preprocessed inside the graph. Sides of the form
        n*s+1 align the output grid with the input corners (config.py, "Coordinate convention").
      is_training: Python bool, passed to the backbone (batch norm follows options.FREEZE_BATCH_NORM).
      output_stride: 8, 16 or 32; None -> options.TRAIN_OUTPUT_STRIDE if is_training else
        options.EVAL_OUTPUT_STRIDE. The variables do not depend on it.
      depth: ResNet-v2 depth (a key of resnet.BLOCKS); None -> options.BACKBONE_DEPTH. Scope 'resnet_v2_<depth>'.
      intermediate: build the intermediate-supervision heads; None -> options.INTERMEDIATE_SUPERVISION.
      reuse: variable reuse for a second copy of the network in the same graph (e.g. another stride).
      options: settings.Settings (None -> config.py's): the backbone's batch norm, the heads, the strides.
    Returns:
      dict of float32 tensors with the batch axis first, on the output grid H' x W' (H' = (H-1)//s + 1):
        'heatmap_logits' [B,H',W',K], 'heatmaps' (sigmoid) [B,H',W',K], 'short_offsets' [B,H',W',2K],
        'mid_offsets' [B,H',W',2E] and 'long_offsets' [B,H',W',2K] (both refined), 'segmentation_logits'
        and 'segmentation' [B,H',W',1]; offsets in input px. Plus 'intermediate' (the same dict from the
        heads on intermediate_features: options.INTERMEDIATE_BLOCK, normalised) when intermediate
        supervision is on.
    """
    options = settings.resolve(options)
    depth = options.BACKBONE_DEPTH if depth is None else depth
    stride = _output_stride(output_stride, is_training, options)
    intermediate = options.INTERMEDIATE_SUPERVISION if intermediate is None else intermediate
    with tf.variable_scope(tf.get_variable_scope(), reuse=reuse):
        inputs = preprocess(images)
        backbone_stride = None if stride == options.NOMINAL_OUTPUT_STRIDE else stride
        net, end_points = resnet.resnet_v2(
            inputs, depth, is_training=is_training, output_stride=backbone_stride, scope='resnet_v2_%d' % depth,
            freeze_batch_norm=options.FREEZE_BATCH_NORM, batch_norm_epsilon=options.BATCH_NORM_EPSILON,
            batch_norm_decay=options.BATCH_NORM_DECAY, batch_norm_train_affine=options.BATCH_NORM_TRAIN_AFFINE,
            zero_init_residual=options.ZERO_INIT_RESIDUAL)
        outputs = build_heads(net, stride, scope=HEADS_SCOPE, options=options)
        if intermediate:
            outputs['intermediate'] = build_heads(intermediate_features(end_points, depth, options=options), stride,
                                                  scope=INTERMEDIATE_SCOPE, options=options)
    return outputs


def prior_bias(probability):
    """The logit of `probability`, -log((1 - pi) / pi): a sigmoid head with this bias starts at pi."""
    if not 0.0 < probability < 1.0:
        raise ValueError('prior probability must be in (0, 1), got %r' % probability)
    return -math.log((1.0 - probability) / probability)


def _fused_conv1x1(features, scope, init_stddev, initial_biases):
    """One 1x1 convolution per head of heads.HEADS, run as a single fused convolution.

    Each head owns its variables '<scope>/<head>/weights' [1, 1, C, n] and '<scope>/<head>/biases' [n];
    their kernels are concatenated so the 2048-channel features are read once. Kernels start from a truncated
    normal of stddev init_stddev, biases at initial_biases[head] (a float, every channel the same).
    Returns dict head name -> [B, H, W, n] float32 tensor.
    """
    in_channels = features.shape[-1]
    if in_channels is None:
        raise ValueError('%s: the features need a static channel count, got shape %s' % (scope, features.shape))
    kernels, biases = [], []
    with tf.variable_scope(scope):
        for head in heads.HEADS:
            with tf.variable_scope(head.name):
                kernels.append(tf.get_variable(
                    'weights', [1, 1, int(in_channels), head.channels], tf.float32,
                    initializer=tf.truncated_normal_initializer(stddev=init_stddev)))
                biases.append(tf.get_variable('biases', [head.channels], tf.float32,
                                              initializer=tf.constant_initializer(initial_biases[head.name])))
        net = tf.nn.conv2d(features, tf.concat(kernels, axis=3), strides=[1, 1, 1, 1], padding='SAME')
        net = tf.nn.bias_add(net, tf.concat(biases, axis=0))
    return dict(zip(heads.NAMES, tf.split(net, [head.channels for head in heads.HEADS], axis=3)))


def build_heads(features, stride, scope=HEADS_SCOPE, refinement_steps=None, offset_scale=None,
                init_stddev=None, heatmap_prior=None, segmentation_prior=None, long_self_steps=None, options=None):
    """The five PersonLab heads (1x1 convs) and the recurrent refinement on one feature map.

    Args:
      features: float32 [B, H', W', C] backbone features on the output grid of `stride` (C static).
      stride: Python int, the output stride s (positions of the cells: x=j*s, y=i*s input px).
      scope: variable scope of the head variables.
      refinement_steps, offset_scale, init_stddev: None -> options.REFINEMENT_STEPS,
        options.OFFSET_OUTPUT_SCALE, options.HEAD_INIT_STDDEV.
      heatmap_prior, segmentation_prior: initial probabilities of the two sigmoid heads (their biases start
        at prior_bias(pi)); None -> the settings each head names (heads.Head.prior). Offset biases start at 0.
      long_self_steps: refinements of the long-range field with itself before those with the short-range
        field; None -> options.LONG_SELF_REFINEMENT_STEPS.
      options: settings.Settings; None -> config.py's.
    Returns:
      dict as build_model's (without 'intermediate').
    """
    options = settings.resolve(options)
    steps = options.REFINEMENT_STEPS if refinement_steps is None else refinement_steps
    long_self_steps = options.LONG_SELF_REFINEMENT_STEPS if long_self_steps is None else long_self_steps
    scale = options.OFFSET_OUTPUT_SCALE if offset_scale is None else offset_scale
    stddev = options.HEAD_INIT_STDDEV if init_stddev is None else init_stddev
    priors = {'heatmap': heatmap_prior, 'segmentation': segmentation_prior}
    initial_biases = {}
    for head in heads.HEADS:
        if head.prior is None:
            initial_biases[head.name] = 0.0
        else:
            prior = priors.get(head.name)
            initial_biases[head.name] = prior_bias(getattr(options, head.prior) if prior is None else prior)
    raw = _fused_conv1x1(features, scope, stddev, initial_biases)
    with tf.name_scope(scope + '_outputs'):
        short = raw['short'] * scale
        mid = raw['mid'] * scale
        long_ = raw['long'] * scale
        # Eq. 2: mid field (k -> l) is refined with S_l, long field k with S_k [P/I]. A long offset can point
        # across a whole person, far from any short-range disk: first it walks with itself, L_k(x + L_k(x)),
        # which lands nearer y_k wherever the field is right on the landing pixel of the same person [I].
        mid_targets = [l for _, l in config.DIRECTED_EDGES]
        long_targets = list(range(config.NUM_KEYPOINTS))
        mid = refine_offsets(mid, short, mid_targets, stride, steps)
        long_ = refine_offsets(long_, long_, long_targets, stride, long_self_steps)
        long_ = refine_offsets(long_, short, long_targets, stride, steps)
        offsets = {'short': short, 'mid': mid, 'long': long_}
        outputs = {}
        for head in heads.HEADS:
            if head.kind == 'logistic':
                outputs[head.logits] = raw[head.name]
                outputs[head.output] = tf.sigmoid(raw[head.name])
            else:
                outputs[head.output] = offsets[head.name]
        return outputs


def grid_positions(height, width, stride):
    """Input-pixel positions of the output-grid cells: x [1, 1, W', 1] = j*s and y [1, H', 1, 1] = i*s."""
    x = tf.reshape(tf.cast(tf.range(width), tf.float32) * float(stride), [1, 1, -1, 1])
    y = tf.reshape(tf.cast(tf.range(height), tf.float32) * float(stride), [1, -1, 1, 1])
    return x, y


def bilinear_sample(fields, x, y, field_index):
    """Bilinear sampling of 2-vector fields at arbitrary grid positions, clamped at the border.

    Positions outside the grid read the nearest border value (coordinates are clipped before interpolation),
    so no index ever leaves the tensor: the gather runs on a flattened tensor with clipped integer indices.
    Differentiable with respect to the fields and to the positions (inside the grid).

    Args:
      fields: float32 [B, H, W, K, 2], K vector fields on the grid (float64 works too, for gradient checks).
      x, y: [B, H, W, F] of the fields' dtype, sampling positions in GRID units (column, row), any value.
      field_index: length-F sequence of ints in [0, K): sample f reads field field_index[f].
    Returns:
      [B, H, W, F, 2] of the fields' dtype: fields[b, y, x, field_index[f], :] interpolated.
    """
    shape = tf.shape(fields)
    batch, height, width, num_fields = shape[0], shape[1], shape[2], shape[3]
    # A NaN position (diverged offsets) would cast to an arbitrary index: read cell 0 instead of crashing.
    x = tf.where(tf.math.is_nan(x), tf.zeros_like(x), x)
    y = tf.where(tf.math.is_nan(y), tf.zeros_like(y), y)
    x = tf.clip_by_value(x, tf.zeros([], x.dtype), tf.cast(width - 1, x.dtype))
    y = tf.clip_by_value(y, tf.zeros([], y.dtype), tf.cast(height - 1, y.dtype))
    x0f, y0f = tf.floor(x), tf.floor(y)
    wx, wy = x - x0f, y - y0f  # gradients w.r.t. the positions flow through these
    x0, y0 = tf.cast(x0f, tf.int32), tf.cast(y0f, tf.int32)
    x1, y1 = tf.minimum(x0 + 1, width - 1), tf.minimum(y0 + 1, height - 1)
    flat = tf.reshape(fields, [-1, 2])
    b = tf.reshape(tf.range(batch), [-1, 1, 1, 1])
    k = tf.reshape(tf.constant(list(field_index), tf.int32), [1, 1, 1, -1])

    def corner(yi, xi):
        return tf.gather(flat, ((b * height + yi) * width + xi) * num_fields + k)

    wx, wy = wx[..., None], wy[..., None]
    top = corner(y0, x0) * (1.0 - wx) + corner(y0, x1) * wx
    bottom = corner(y1, x0) * (1.0 - wx) + corner(y1, x1) * wx
    return top * (1.0 - wy) + bottom * wy


def refine_offsets(offsets, short_offsets, target_keypoints, stride, steps=None, options=None):
    """Recurrent offset refinement (Eq. 2): O_f(x) <- x' + S_t(x') - x with x' = x + O_f(x), t = target[f].

    Equivalently O_f(x) += S_t(x + O_f(x)), the short offsets sampled bilinearly (border-clamped) at the
    position the offset points to, at output resolution. Gradients flow into both the refined offsets and
    the sampled short offsets.

    Args:
      offsets: float32 [B, H', W', 2F] offset fields (dx, dy interleaved), input px.
      short_offsets: float32 [B, H', W', 2K] short-range offsets, input px.
      target_keypoints: length-F ints: the keypoint type each field points to.
      stride: Python int output stride.
      steps: refinement iterations; None -> options.REFINEMENT_STEPS (options None -> config.py's).
    Returns:
      float32 [B, H', W', 2F], the refined offsets.
    """
    steps = settings.resolve(options).REFINEMENT_STEPS if steps is None else steps
    num_fields = len(target_keypoints)
    if offsets.shape[-1] is not None and int(offsets.shape[-1]) != 2 * num_fields:
        raise ValueError('refine_offsets: offsets have %s channels, expected 2 x %d target keypoints'
                         % (offsets.shape[-1], num_fields))
    num_keypoints = short_offsets.shape[-1]
    if num_keypoints is None or int(num_keypoints) % 2:
        raise ValueError('refine_offsets: short offsets need a static, even channel count, got %s'
                         % short_offsets.shape)
    shape = tf.shape(offsets)
    batch, height, width = shape[0], shape[1], shape[2]
    grid_x, grid_y = grid_positions(height, width, stride)
    short = tf.reshape(short_offsets, [batch, height, width, int(num_keypoints) // 2, 2])
    for _ in range(steps):
        vectors = tf.reshape(offsets, [batch, height, width, num_fields, 2])
        x = (grid_x + vectors[..., 0]) / float(stride)
        y = (grid_y + vectors[..., 1]) / float(stride)
        vectors = vectors + bilinear_sample(short, x, y, target_keypoints)
        offsets = tf.reshape(vectors, [batch, height, width, 2 * num_fields])
    return offsets


# ----------------------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------------------

def upsample_grid(maps, factor):
    """Bilinear upsampling of maps on the grid of stride s to the grid of stride s / factor, corners aligned.

    Fine cell i*factor sits on coarse cell i (both at input pixel i*s), so an H' side becomes (H' - 1) * factor + 1
    and an offset field that is linear in x between cells, as y - x is, comes out exact.
    Args:
      maps: float32 [B, H', W', C]; factor: Python int >= 1.
    Returns:
      float32 [B, (H'-1)*factor + 1, (W'-1)*factor + 1, C] (`maps` itself for factor 1).
    """
    if factor == 1:
        return maps
    size = (tf.shape(maps)[1:3] - 1) * factor + 1
    upsampled = tf.raw_ops.ResizeBilinear(images=maps, size=size, align_corners=True)
    static = maps.shape.as_list()
    if static[1] is not None and static[2] is not None:
        upsampled.set_shape([static[0], (static[1] - 1) * factor + 1, (static[2] - 1) * factor + 1, static[3]])
    return upsampled


def upsample_outputs(outputs, factor):
    """build_model's outputs with every head's loss input (logits, offsets) on a grid `factor` times finer
    (upsample_grid), the probabilities recomputed from the upsampled logits, 'intermediate' likewise; for losses
    on targets of stride TRAIN_OUTPUT_STRIDE / factor (config.LOSS_STRIDE). Refinement stays on the output grid."""
    if factor == 1:
        return outputs
    upsampled = dict(outputs)
    with tf.name_scope('upsample_outputs'):
        for head in heads.HEADS:
            if head.kind == 'logistic':
                upsampled[head.logits] = upsample_grid(outputs[head.logits], factor)
                upsampled[head.output] = tf.sigmoid(upsampled[head.logits])
            else:
                upsampled[head.output] = upsample_grid(outputs[head.output], factor)
    if outputs.get('intermediate') is not None:
        upsampled['intermediate'] = upsample_outputs(outputs['intermediate'], factor)
    return upsampled


def _target(targets, name):
    if name not in targets:
        raise KeyError('compute_losses: target %r is missing (have %s)' % (name, sorted(targets)))
    return tf.cast(tf.convert_to_tensor(targets[name]), tf.float32)


def _check_same_grid(prediction, target, name):
    """Static check (where shapes are known) that prediction and target share batch, grid and channels."""
    ps, ts = prediction.shape, target.shape
    if ps.ndims is None or ts.ndims is None:
        return
    if ps.ndims != ts.ndims or not ps.is_compatible_with(ts):
        raise ValueError('compute_losses: %r target has shape %s but the network output has %s '
                         '(same stride and input size?)' % (name, ts, ps))


def logistic_loss_sums(logits, labels, weights):
    """Weighted logistic loss as (numerator sum(w * xent), denominator sum(w)), scalar float32 tensors, over
    all positions and channels; losses_from_sums divides them (0 if sum(w) = 0).

    Args:
      logits, labels: float32 [B, H', W', C]; weights: float32 [B, H', W', 1] (broadcast over channels).
    """
    xent = tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits)
    weights = weights * tf.ones_like(xent)
    return tf.reduce_sum(xent * weights), tf.reduce_sum(weights)


def offset_loss_sums(offsets, targets, valid, norm):
    """L1 offset loss divided by `norm` as (numerator sum(valid L1 errors) / norm, denominator sum(valid)),
    scalar float32; losses_from_sums divides them: the mean over the valid (position, field) pairs, 0 if none.

    Per pair the L1 norm |dx| + |dy| of the error (input px) counts once.
    Args:
      offsets, targets: float32 [B, H', W', 2F] (dx, dy interleaved); valid: float32 [B, H', W', F] in {0, 1}.
    """
    error = tf.abs(offsets - targets)
    fields = tf.shape(valid)
    error = tf.reduce_sum(tf.reshape(error, tf.concat([fields, [2]], axis=0)), axis=-1)  # |dx| + |dy|
    # tf.where keeps the gradient of invalid pairs at exactly 0 even if their predictions are inf.
    error = tf.where(valid > 0, error * valid, tf.zeros_like(error))
    return tf.reduce_sum(error) / norm, tf.reduce_sum(valid)


def head_loss_sums(outputs, targets, norm=None, options=None):
    """The unweighted loss of each head of one set of heads before its division: dict head name -> (numerator,
    denominator), scalar float32 tensors. A logistic head's loss reads its logits, weighted by its validity map
    (one channel); an offset head's its offsets, counted where its per-field validity map is 1, divided by
    `norm` (None -> options.OFFSET_LOSS_NORM).

    Sums add up over sub-batches (e.g. multi-GPU towers): dividing the added sums once gives the loss of the
    whole batch, whatever the number of valid positions in each part.
    """
    norm = settings.resolve(options).OFFSET_LOSS_NORM if norm is None else norm
    for head in heads.HEADS:
        key = head.logits or head.output
        if key not in outputs:
            raise KeyError('compute_losses: network output %r is missing' % key)
        if head.target in targets:
            _check_same_grid(outputs[key], tf.convert_to_tensor(targets[head.target]), head.target)
    sums = {}
    for head in heads.HEADS:
        target, validity = _target(targets, head.target), _target(targets, head.validity)
        if head.kind == 'logistic':
            sums[head.name] = logistic_loss_sums(outputs[head.logits], target, validity)
        else:
            sums[head.name] = offset_loss_sums(outputs[head.output], target, validity, norm)
    return sums


def loss_weights(options=None):
    """Weight of each head loss in the total, the setting each head names: dict head name -> float."""
    options = settings.resolve(options)
    return {head.name: getattr(options, head.loss_weight) for head in heads.HEADS}


def conv_weights(variables=None):
    """Convolution kernels that weight decay applies to: trainable variables named '.../weights'.

    As TF-Slim's resnet_arg_scope: kernels only, no biases or batch-norm parameters.
    """
    variables = tf.trainable_variables() if variables is None else variables
    return [v for v in variables if v.op.name.endswith('/weights')]


def weight_decay_loss(variables=None, decay=None, options=None):
    """L2 weight decay as TF-Slim's l2_regularizer: decay * sum(w^2) / 2 over conv kernels.
    decay None -> options.WEIGHT_DECAY."""
    decay = settings.resolve(options).WEIGHT_DECAY if decay is None else decay
    kernels = conv_weights(variables)
    if not kernels or not decay:
        return tf.constant(0.0)
    return decay * tf.add_n([tf.nn.l2_loss(v) for v in kernels])


def loss_sums(outputs, targets, options=None):
    """(numerator, denominator) of every head loss: dict 'heatmap', ..., 'long' of the final heads and
    'intermediate/heatmap', ... when outputs hold 'intermediate' (head_loss_sums). Sums of several sub-batches
    add up; losses_from_sums turns them into the losses of the whole batch."""
    sums = head_loss_sums(outputs, targets, options=options)
    if outputs.get('intermediate') is not None:
        with tf.name_scope('intermediate'):
            extra = head_loss_sums(outputs['intermediate'], targets, options=options)
        sums.update(('intermediate/' + name, value) for name, value in extra.items())
    return sums


def compute_losses(outputs, targets, weights=None, variables=None, options=None):
    """The PersonLab losses (docs/method.md#losses), each exposed separately.

    Args:
      outputs: build_model's dict (batch axis first); 'intermediate' is used when present.
      targets: dict of tensors or arrays named as heads.TARGET_CHANNELS, batch axis first, on the same grid.
      weights: dict head name -> weight; None -> loss_weights(options).
      variables: variables that weight decay applies to (their '.../weights' kernels); None -> all trainable.
      options: settings.Settings; None -> config.py's.
    Returns:
      dict of scalar float32 tensors (keys heads.LOSS_KEYS): one per head of heads.HEADS (unweighted, of the final
      heads), 'intermediate' (weighted sum of the intermediate heads' losses times
      options.INTERMEDIATE_LOSS_WEIGHT; 0 without intermediate heads), 'weight_decay' and 'total'
      (weighted sum of the heads' losses + intermediate + weight decay). Multi-tower training adds the towers'
      loss_sums and calls losses_from_sums once instead.
    """
    options = settings.resolve(options)
    with tf.name_scope('losses'):
        return losses_from_sums(loss_sums(outputs, targets, options=options),
                                weight_decay_loss(variables, options=options), weights, options=options)


def losses_from_sums(sums, weight_decay, weights=None, options=None):
    """compute_losses' dict from (numerator, denominator) sums (see compute_losses) and the weight decay.

    Args:
      sums: dict head name -> (numerator, denominator) scalar tensors; 'intermediate/<name>' keys optional.
      weight_decay: scalar tensor added to the total.
      weights: dict head name -> weight; None -> loss_weights(options).
      options: settings.Settings; None -> config.py's.
    """
    options = settings.resolve(options)
    weights = loss_weights(options) if weights is None else weights
    losses = {name: tf.math.divide_no_nan(*sums[name]) for name in heads.NAMES}
    total = tf.add_n([weights[name] * losses[name] for name in heads.NAMES])
    if 'intermediate/' + heads.NAMES[0] in sums:
        losses['intermediate'] = options.INTERMEDIATE_LOSS_WEIGHT * tf.add_n(
            [weights[name] * tf.math.divide_no_nan(*sums['intermediate/' + name]) for name in heads.NAMES])
    else:
        losses['intermediate'] = tf.constant(0.0)
    losses['weight_decay'] = weight_decay
    losses['total'] = total + losses['intermediate'] + losses['weight_decay']
    return losses
