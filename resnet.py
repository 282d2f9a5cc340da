"""ResNet-v2 backbone that creates and computes exactly what TF-Slim's nets/resnet_v2.py does.

Built from tf.compat.v1.get_variable and tf.nn ops only (tf_slim is dead on TensorFlow >= 2.16 and
tf.compat.v1.layers is broken on 2.21), so that TF-Slim's released ImageNet checkpoints
(`resnet_v2_101_2017_04_14`, ...) load unchanged: variable names, shapes and creation order are those of
TF-Slim's `resnet_v2_{50,101,152}(..., num_classes=None, global_pool=False)` under `resnet_arg_scope()`, and
tests/test_resnet.py proves the outputs equal TF-Slim's at output strides 8, 16 and 32. Depth 26 (two units per
block, the same unit and block code) is this project's addition, not one of TF-Slim's: no ImageNet checkpoint
exists for it; it trains from scratch, about 1.5x as many steps per second as depth 50 (the CPU quickstart).

The TF-Slim details that decide equality:
  * `conv1` is a 7x7/2 convolution with biases and no batch norm (the first unit's `preact` normalises it),
    followed by `pool1`, a 3x3/2 max pool with SAME padding;
  * a strided 3x3 convolution pads its input explicitly and symmetrically (`conv2d_same`), never 'SAME';
  * the stride of each block sits in its LAST unit; once the requested output stride is reached, later
    strides turn into dilation rates (atrous convolution), the unit that had the stride still using the old
    rate;
  * each unit opens with `preact` (batch norm + relu); its shortcut is a 1x1 convolution with biases on
    `preact` when the depth changes, else a subsample of the unit's (not pre-activated) input; `conv3` has
    biases and no batch norm; `postnorm` (batch norm + relu) closes the network.

Settings are keyword arguments with TF-Slim's defaults, as TF-Slim's resnet_arg_scope; this module reads no
config (model.py passes the run's values).

Batch norm: with frozen statistics (freeze_batch_norm=True, the default) or is_training=False it uses the
checkpoint's moving mean and variance and never updates them; gamma and beta stay trainable unless
batch_norm_train_affine=False. Unfrozen and training, it normalises with the batch statistics
and puts the moving-average updates in tf.GraphKeys.UPDATE_OPS, as TF-Slim does.

Weight decay: this module adds no loss. Every convolution kernel (a variable named '.../weights'; biases and
batch-norm parameters are not decayed, as in TF-Slim's resnet_arg_scope) is put in tf.GraphKeys.WEIGHTS;
model.py's L2 decay over the trainable '.../weights' variables covers that set and the heads' kernels.

Initialisation (random weights, before or without a checkpoint): kernels He-initialised, except each unit's
conv3 kernel, which starts at 0 (zero_init_residual=True): every unit then starts as its shortcut, so a
random network with frozen unit batch-norm statistics keeps activations of order 1 instead of doubling them
unit after unit. Loading a checkpoint overwrites all of it.

Every variable also goes to tf.GraphKeys.MODEL_VARIABLES and to BACKBONE_VARIABLES, the collection that
load_backbone_checkpoint restores from (optimizer slots and moving-average shadows are not in it).

Public functions:
  resnet_v2_50/101/152(inputs, is_training, output_stride, ...)  -> (net, end_points), as TF-Slim
  resnet_v2(inputs, depth, ...)                                  the same for a depth given as a number (26 too)
  backbone_variables(depth, scope)                               [(name, shape)] in creation order, no graph
  check_backbone_checkpoint(path, scope)                         checks a checkpoint without a graph
  load_backbone_checkpoint(sess, path, scope)                    restores the backbone of the session's graph
  backbone_restorer(path, scope)                                 the same as a function, for finalized graphs
"""
import re

import tensorflow.compat.v1 as tf

import checkpoints
# Collection of every variable the backbone creates: what load_backbone_checkpoint restores.
BACKBONE_VARIABLES = 'resnet_v2_backbone_variables'

# The units of each depth: (block scope, base depth, number of units, stride of the block's last unit), as
# TF-Slim's resnet_v2_block(). A unit outputs 4 * base depth channels through a base-depth bottleneck.
BLOCKS = {
    26: (('block1', 64, 2, 2), ('block2', 128, 2, 2), ('block3', 256, 2, 2), ('block4', 512, 2, 1)),  # ours
    50: (('block1', 64, 3, 2), ('block2', 128, 4, 2), ('block3', 256, 6, 2), ('block4', 512, 3, 1)),
    101: (('block1', 64, 3, 2), ('block2', 128, 4, 2), ('block3', 256, 23, 2), ('block4', 512, 3, 1)),
    152: (('block1', 64, 3, 2), ('block2', 128, 8, 2), ('block3', 256, 36, 2), ('block4', 512, 3, 1)),
}
ROOT_DEPTH = 64  # channels of conv1, TF-Slim's root block
ROOT_STRIDE = 4  # conv1 (2) times pool1 (2)
REACHABLE_OUTPUT_STRIDES = (4, 8, 16, 32)  # root stride times the strides of the first blocks
UNIT_SCOPE = 'bottleneck_v2'  # TF-Slim's variable scope of a unit, inside 'unit_<i>'
# TensorFlow's fused batch norm (what TF-Slim ran) raises any smaller epsilon to this cuDNN minimum.
_FUSED_MIN_EPSILON = 1.001e-5
BATCH_NORM_EPSILON = 1e-5  # TF-Slim resnet_arg_scope's batch_norm_epsilon
BATCH_NORM_DECAY = 0.997  # TF-Slim resnet_arg_scope's batch_norm_decay


def _units(depth):
    """The units of a ResNet-v2 of this depth: list of (block, unit index from 1, base depth, stride)."""
    if depth not in BLOCKS:
        raise ValueError('ResNet-v2 depth must be one of %s, got %r' % (sorted(BLOCKS), depth))
    return [(block, i + 1, base, stride if i == num - 1 else 1)
            for block, base, num, stride in BLOCKS[depth] for i in range(num)]


# ----------------------------------------------------------------------------------------------------------
# Layers
# ----------------------------------------------------------------------------------------------------------
def _variable(name, shape, initializer, trainable=True, extra_collections=()):
    """A float32 backbone variable in the current variable scope (reused if the scope reuses)."""
    collections = [tf.GraphKeys.GLOBAL_VARIABLES, tf.GraphKeys.MODEL_VARIABLES, BACKBONE_VARIABLES]
    return tf.get_variable(name, shape, tf.float32, initializer=initializer, trainable=trainable,
                           collections=collections + list(extra_collections))


def _conv_weights(inputs, num_outputs, kernel_size, zero_init=False):
    """'weights' [k, k, channels_in, num_outputs] in the current scope, in tf.GraphKeys.WEIGHTS.

    He initialisation (truncated normal, fan in), or zeros with zero_init.
    """
    channels_in = inputs.shape[-1]
    if channels_in is None:
        raise ValueError('%s: the input channels must be static, got shape %s'
                         % (tf.get_variable_scope().name, inputs.shape))
    initializer = (tf.zeros_initializer() if zero_init
                   else tf.variance_scaling_initializer(2.0, 'fan_in', 'truncated_normal'))
    return _variable('weights', [kernel_size, kernel_size, int(channels_in), num_outputs], initializer,
                     extra_collections=[tf.GraphKeys.WEIGHTS])


def _convolve(inputs, weights, stride, rate):
    """SAME convolution, or TF-Slim's conv2d_same (explicit symmetric padding, then VALID) when strided.

    A strided convolution with SAME padding would pad more at the bottom/right on even input sizes;
    conv2d_same pads (k - 1) // 2 before and k // 2 after whatever the size, so output cell i is centred on
    input pixel i * stride (and an input of side n * stride + 1 keeps its corners on the output grid).

    Args:
      inputs: float32 [batch, height, width, channels_in].
      weights: float32 [k, k, channels_in, channels_out].
      stride, rate: ints, not both above 1 (TF-Slim never combines them).
    Returns:
      float32 [batch, ceil(height / stride), ceil(width / stride), channels_out].
    """
    kernel_size = int(weights.shape[0])
    if rate > 1:
        if stride > 1:
            raise ValueError('%s: stride %d with rate %d (TF-Slim never combines them)'
                             % (tf.get_variable_scope().name, stride, rate))
        # Conv2D with dilations, not space-to-batch (tf.nn.atrous_conv2d): oneDNN's filter gradient of the
        # space-to-batched grid was 4x slower, 0.39 against 0.34 s per quickstart step (docs/network.md).
        return tf.nn.conv2d(inputs, weights, strides=[1, 1, 1, 1], padding='SAME', dilations=[1, rate, rate, 1])
    padding = 'SAME'
    if stride > 1 and kernel_size > 1:
        pad_begin, pad_end = (kernel_size - 1) // 2, kernel_size // 2
        inputs = tf.pad(inputs, [[0, 0], [pad_begin, pad_end], [pad_begin, pad_end], [0, 0]])
        padding = 'VALID'
    return tf.nn.conv2d(inputs, weights, strides=[1, stride, stride, 1], padding=padding)


def conv2d(inputs, num_outputs, kernel_size, stride=1, rate=1, biases=False, scope=None, zero_init=False):
    """TF-Slim's conv2d (SAME padding), or its conv2d_same when strided, without normaliser or activation.

    Args:
      inputs: float32 [batch, height, width, channels_in], channels_in static.
      num_outputs: channels_out.
      kernel_size: odd int k (a k x k kernel).
      stride: int; rate: dilation rate (int, only with stride 1).
      biases: add '<scope>/biases' [channels_out] (zeros at initialisation).
      scope: variable scope of '<scope>/weights' [k, k, channels_in, channels_out].
      zero_init: the kernel starts at 0 instead of He initialisation.
    Returns:
      float32 [batch, ceil(height / stride), ceil(width / stride), channels_out], linear.
    """
    with tf.variable_scope(scope):
        outputs = _convolve(inputs, _conv_weights(inputs, num_outputs, kernel_size, zero_init), stride, rate)
        if biases:
            outputs = tf.nn.bias_add(outputs, _variable('biases', [num_outputs], tf.zeros_initializer()))
    return outputs


def _batch_norm_variables(channels, train_affine):
    """beta, gamma, moving_mean, moving_variance [channels] in the current scope, in TF-Slim's order."""
    shape = [channels]
    return (_variable('beta', shape, tf.zeros_initializer(), trainable=train_affine),
            _variable('gamma', shape, tf.ones_initializer(), trainable=train_affine),
            _variable('moving_mean', shape, tf.zeros_initializer(), trainable=False),
            _variable('moving_variance', shape, tf.ones_initializer(), trainable=False))


def _frozen_scale_shift(variables, epsilon):
    """(scale, shift) [channels] with frozen batch norm(x) = x * scale + shift."""
    beta, gamma, moving_mean, moving_variance = variables
    scale = gamma * tf.math.rsqrt(moving_variance + epsilon)
    return scale, beta - moving_mean * scale


def _uses_frozen_statistics(is_training, freeze):
    return bool(freeze) or is_training is False


def _normalize(inputs, variables, is_training, epsilon, decay):
    """Batch norm of inputs [batch, height, width, channels] with unfrozen statistics (see batch_norm)."""
    beta, gamma, moving_mean, moving_variance = variables

    def frozen():
        scale, shift = _frozen_scale_shift(variables, epsilon)
        return inputs * scale + shift, moving_mean.value(), moving_variance.value()

    def batch_statistics():
        # `variance` comes back as the unbiased (n - 1) estimate: what TF-Slim's moving averages receive.
        return tf.nn.fused_batch_norm(inputs, gamma, beta, epsilon=epsilon, is_training=True)

    if is_training is True:
        outputs, mean, variance = batch_statistics()
    else:
        is_training = tf.convert_to_tensor(is_training, tf.bool)
        outputs, mean, variance = tf.cond(is_training, batch_statistics, frozen)
    # Inference through the tensor branch gives back the moving values, so the update leaves them alone.
    for moving, batch in ((moving_mean, mean), (moving_variance, variance)):
        tf.add_to_collection(tf.GraphKeys.UPDATE_OPS, tf.assign_sub(moving, (1.0 - decay) * (moving - batch)))
    return outputs


def batch_norm(inputs, is_training, freeze=True, epsilon=BATCH_NORM_EPSILON, decay=BATCH_NORM_DECAY,
               train_affine=True, scope='BatchNorm'):
    """TF-Slim's batch_norm (center and scale) followed by relu, as every ResNet-v2 layer uses it.

    Variables, in TF-Slim's creation order: '<scope>/beta', '<scope>/gamma' (trainable unless train_affine is
    False), '<scope>/moving_mean', '<scope>/moving_variance' (never trainable), all [channels].

    Args:
      inputs: float32 [batch, height, width, channels], channels static.
      is_training: Python bool or scalar bool tensor. It matters only when freeze is False: then training
        normalises with the batch's statistics and adds the moving-average updates
        moving <- moving - (1 - decay) * (moving - batch) to tf.GraphKeys.UPDATE_OPS (run them with the
        train op, as with TF-Slim); inference uses the moving statistics.
      freeze: always use the moving statistics and never update them.
      epsilon: variance epsilon (raised to 1.001e-5 like TensorFlow's fused batch norm, which TF-Slim runs).
      decay: moving-average decay.
      train_affine: gamma and beta trainable.
      scope: variable scope.
    Returns:
      float32 [batch, height, width, channels]: relu(gamma * (x - mean) / sqrt(variance + epsilon) + beta).
    """
    epsilon = max(epsilon, _FUSED_MIN_EPSILON)
    channels = inputs.shape[-1]
    if channels is None:
        raise ValueError('%s: the input channels must be static, got shape %s' % (scope, inputs.shape))
    with tf.variable_scope(scope):
        variables = _batch_norm_variables(int(channels), train_affine)
        if _uses_frozen_statistics(is_training, freeze):
            scale, shift = _frozen_scale_shift(variables, epsilon)
            outputs = inputs * scale + shift
        else:
            outputs = _normalize(inputs, variables, is_training, epsilon, decay)
    return tf.nn.relu(outputs)


def conv2d_bn(inputs, num_outputs, kernel_size, stride, rate, is_training, freeze=True, scope=None,
              epsilon=BATCH_NORM_EPSILON, decay=BATCH_NORM_DECAY, train_affine=True):
    """TF-Slim's conv2d under resnet_arg_scope: convolution without biases, '<scope>/BatchNorm', relu.

    Variables: '<scope>/weights' [k, k, channels_in, num_outputs], then batch_norm's under
    '<scope>/BatchNorm'. With frozen statistics the normalisation is folded into the kernel and a bias
    (conv(x, w * scale) + shift: the same function, one pass less over the activations).

    Args:
      inputs: float32 [batch, height, width, channels_in]; the rest as conv2d and batch_norm.
    Returns:
      float32 [batch, ceil(height / stride), ceil(width / stride), num_outputs], after relu.
    """
    epsilon = max(epsilon, _FUSED_MIN_EPSILON)
    with tf.variable_scope(scope):
        weights = _conv_weights(inputs, num_outputs, kernel_size)
        with tf.variable_scope('BatchNorm'):
            variables = _batch_norm_variables(num_outputs, train_affine)
        if _uses_frozen_statistics(is_training, freeze):
            scale, shift = _frozen_scale_shift(variables, epsilon)
            outputs = tf.nn.bias_add(_convolve(inputs, weights * scale, stride, rate), shift)
        else:
            outputs = _convolve(inputs, weights, stride, rate)
            outputs = _normalize(outputs, variables, is_training, epsilon, decay)
    return tf.nn.relu(outputs)


def subsample(inputs, stride):
    """TF-Slim's resnet_utils.subsample: a 1x1 max pool of this stride, i.e. every stride-th row and column.

    Args:
      inputs: [batch, height, width, channels].
    Returns:
      [batch, ceil(height / stride), ceil(width / stride), channels] (inputs itself if stride is 1).
    """
    return inputs if stride == 1 else inputs[:, ::stride, ::stride, :]


def bottleneck(inputs, depth, depth_bottleneck, stride, rate, is_training, end_points, scope=UNIT_SCOPE,
               zero_init_residual=True, **batch_norm_params):
    """TF-Slim's ResNet-v2 bottleneck unit (pre-activation), with its variables under `scope`.

    Args:
      inputs: float32 [batch, height, width, depth_in], depth_in static.
      depth: output channels (4 * depth_bottleneck).
      depth_bottleneck: channels of conv1 and conv2.
      stride: stride of conv2 (3x3, conv2d_same) and of the shortcut.
      rate: dilation rate of conv2 (only with stride 1).
      is_training: see batch_norm.
      end_points: dict the unit adds its layers' outputs to, keyed by full variable-scope name:
        '<unit>/preact' (relu(batch norm(inputs)), same shape as inputs), '<unit>/shortcut' (if a
        convolution), '<unit>/conv1', '<unit>/conv2', '<unit>/conv3' and '<unit>'.
      scope: variable scope of the unit.
      zero_init_residual: conv3's kernel starts at 0, so that the unit starts as its shortcut.
      batch_norm_params: freeze, epsilon, decay, train_affine of every batch norm (see batch_norm).
    Returns:
      float32 [batch, ceil(height / stride), ceil(width / stride), depth]: shortcut + residual, no activation.
    """
    with tf.variable_scope(scope) as sc:
        depth_in = int(inputs.shape[-1])
        # [batch, height, width, depth_in]
        preact = batch_norm(inputs, is_training, scope='preact', **batch_norm_params)
        end_points[sc.name + '/preact'] = preact
        if depth == depth_in:
            # The identity shortcut skips preact: [batch, height / stride, width / stride, depth]
            shortcut = subsample(inputs, stride)
        else:
            shortcut = conv2d(preact, depth, 1, stride, biases=True, scope='shortcut')
            end_points[sc.name + '/shortcut'] = shortcut
        # [batch, height, width, depth_bottleneck]
        residual = conv2d_bn(preact, depth_bottleneck, 1, 1, 1, is_training, scope='conv1', **batch_norm_params)
        end_points[sc.name + '/conv1'] = residual
        # [batch, height / stride, width / stride, depth_bottleneck]
        residual = conv2d_bn(residual, depth_bottleneck, 3, stride, rate, is_training, scope='conv2',
                             **batch_norm_params)
        end_points[sc.name + '/conv2'] = residual
        # [batch, height / stride, width / stride, depth]
        residual = conv2d(residual, depth, 1, 1, biases=True, scope='conv3', zero_init=zero_init_residual)
        end_points[sc.name + '/conv3'] = residual
        outputs = shortcut + residual
        end_points[sc.name] = outputs
    return outputs


# ----------------------------------------------------------------------------------------------------------
# Networks
# ----------------------------------------------------------------------------------------------------------
def resnet_v2(inputs, depth, is_training=True, output_stride=None, freeze_batch_norm=True, reuse=None,
              scope=None, batch_norm_epsilon=BATCH_NORM_EPSILON, batch_norm_decay=BATCH_NORM_DECAY,
              batch_norm_train_affine=True, zero_init_residual=True):
    """ResNet-v2 of the given depth, as TF-Slim's resnet_v2_<depth>(num_classes=None, global_pool=False).

    Args:
      inputs: float32 [batch, height_in, width_in, 3], RGB scaled to [-1, 1] (model.preprocess).
      depth: 26, 50, 101 or 152 (a key of BLOCKS).
      is_training: Python bool or scalar bool tensor; matters only for unfrozen batch norm (see batch_norm).
      output_stride: None (nominal stride 32), 4, 8, 16 or 32 (8 and 16 in PersonLab): the block strides
        past it become dilation rates. An input of side n * output_stride + 1 gives an output of side
        n + 1 whose corners sit on the input's corners.
      freeze_batch_norm: every batch norm uses its moving statistics and never updates them (see batch_norm).
      reuse: variable reuse (None inherits the enclosing scope's).
      scope: variable scope; None -> 'resnet_v2_<depth>' (the name in TF-Slim's checkpoints).
      batch_norm_epsilon, batch_norm_decay, batch_norm_train_affine: see batch_norm (TF-Slim's defaults).
      zero_init_residual: each unit's conv3 kernel starts at 0 (see bottleneck).
    Returns:
      net: float32 [batch, height_out, width_out, 2048] after `postnorm` (batch norm + relu), with
        height_out = (height_in - 1) // s + 1 for s = output_stride or 32 (odd sizes; ceil otherwise).
      end_points: dict, keys the full variable-scope names as TF-Slim's (e.g. 'resnet_v2_101/conv1',
        'resnet_v2_101/block1/unit_1/bottleneck_v2/conv2', 'resnet_v2_101/block1/unit_1/bottleneck_v2',
        'resnet_v2_101/block1' ... 'resnet_v2_101/block4'), in creation order. With s = output_stride:
          '<scope>/conv1'  [batch, ceil(height_in / 2), ceil(width_in / 2), 64], linear;
          '<scope>/block1' [batch, height_in / min(8, s), ..., 256], before any batch norm (pre-activation);
          '<scope>/block2' [batch, height_in / min(16, s), ..., 512];
          '<scope>/block3' [batch, height_in / min(32, s), ..., 1024];
          '<scope>/block4' [batch, height_in / s, ..., 2048] (net before postnorm);
          '<unit>/preact' the unit's relu(batch norm(input)) with its checkpoint statistics: e.g.
          '<scope>/block4/unit_1/bottleneck_v2/preact' is block3 normalised, on block3's grid.
        (each division rounds up.)
    Raises:
      ValueError: bad depth, input shape or output stride.
    """
    _units(depth)  # checks the depth
    if inputs.dtype != tf.float32 or inputs.shape.ndims != 4:
        raise ValueError('resnet_v2: inputs must be float32 [batch, height, width, channels], got %s %s'
                         % (inputs.dtype.name, inputs.shape))
    target = None
    if output_stride is not None:
        # The strides TF-Slim's stack_blocks_dense can reach (others raise there too).
        if output_stride not in REACHABLE_OUTPUT_STRIDES:
            raise ValueError('output_stride must be None or one of %s, got %r'
                             % (REACHABLE_OUTPUT_STRIDES, output_stride))
        target = output_stride // ROOT_STRIDE  # stride wanted from the blocks after the root
    end_points = {}
    batch_norm_params = dict(freeze=freeze_batch_norm, epsilon=batch_norm_epsilon, decay=batch_norm_decay,
                             train_affine=batch_norm_train_affine)
    with tf.variable_scope(scope, 'resnet_v2_%d' % depth, [inputs], reuse=reuse) as sc:
        # Root: [batch, height_in / 2, width_in / 2, 64], then [batch, height_in / 4, width_in / 4, 64].
        net = conv2d(inputs, ROOT_DEPTH, 7, stride=2, biases=True, scope='conv1')
        end_points[sc.name + '/conv1'] = net
        net = tf.nn.max_pool2d(net, 3, 2, 'SAME', name='pool1')
        # TF-Slim's stack_blocks_dense: strides multiply until the target, then rates do.
        current_stride, rate = 1, 1
        for block, base, num_units, block_stride in BLOCKS[depth]:
            with tf.variable_scope(block, values=[net]) as block_sc:
                for unit in range(1, num_units + 1):
                    stride = block_stride if unit == num_units else 1
                    with tf.variable_scope('unit_%d' % unit, values=[net]):
                        if target is not None and current_stride == target:
                            net = bottleneck(net, 4 * base, base, 1, rate, is_training, end_points,
                                             zero_init_residual=zero_init_residual, **batch_norm_params)
                            rate *= stride
                        else:
                            net = bottleneck(net, 4 * base, base, stride, 1, is_training, end_points,
                                             zero_init_residual=zero_init_residual, **batch_norm_params)
                            current_stride *= stride
                end_points[block_sc.name] = net
        # postnorm: [batch, height_out, width_out, 2048]
        net = batch_norm(net, is_training, scope='postnorm', **batch_norm_params)
    return net, end_points


def resnet_v2_50(inputs, is_training=True, output_stride=None, reuse=None, scope='resnet_v2_50', **settings):
    """ResNet-v2-50 (block units 3, 4, 6, 3), as TF-Slim's; see resnet_v2 for arguments (`settings`: its keyword
    settings, freeze_batch_norm, ...) and shapes."""
    return resnet_v2(inputs, 50, is_training, output_stride, reuse=reuse, scope=scope, **settings)


def resnet_v2_101(inputs, is_training=True, output_stride=None, reuse=None, scope='resnet_v2_101', **settings):
    """ResNet-v2-101 (block units 3, 4, 23, 3), as TF-Slim's; see resnet_v2 for arguments (`settings`: its keyword
    settings, freeze_batch_norm, ...) and shapes."""
    return resnet_v2(inputs, 101, is_training, output_stride, reuse=reuse, scope=scope, **settings)


def resnet_v2_152(inputs, is_training=True, output_stride=None, reuse=None, scope='resnet_v2_152', **settings):
    """ResNet-v2-152 (block units 3, 8, 36, 3), as TF-Slim's; see resnet_v2 for arguments (`settings`: its keyword
    settings, freeze_batch_norm, ...) and shapes."""
    return resnet_v2(inputs, 152, is_training, output_stride, reuse=reuse, scope=scope, **settings)


def backbone_variables(depth, scope=None, input_channels=3):
    """What resnet_v2(depth) creates, without a graph: list of (name, shape tuple) in creation order.

    Names are '<scope>/...' (scope None -> 'resnet_v2_<depth>'), exactly TF-Slim's checkpoint names.
    """
    scope = 'resnet_v2_%d' % depth if scope is None else scope
    out = [(scope + '/conv1/weights', (7, 7, input_channels, ROOT_DEPTH)),
           (scope + '/conv1/biases', (ROOT_DEPTH,))]

    def bn(prefix, channels):
        return [(prefix + '/' + leaf, (channels,))
                for leaf in ('beta', 'gamma', 'moving_mean', 'moving_variance')]

    depth_in = ROOT_DEPTH
    for block, unit, base, _ in _units(depth):
        prefix = '%s/%s/unit_%d/%s' % (scope, block, unit, UNIT_SCOPE)
        out += bn(prefix + '/preact', depth_in)
        if 4 * base != depth_in:
            out += [(prefix + '/shortcut/weights', (1, 1, depth_in, 4 * base)),
                    (prefix + '/shortcut/biases', (4 * base,))]
        out += [(prefix + '/conv1/weights', (1, 1, depth_in, base))] + bn(prefix + '/conv1/BatchNorm', base)
        out += [(prefix + '/conv2/weights', (3, 3, base, base))] + bn(prefix + '/conv2/BatchNorm', base)
        out += [(prefix + '/conv3/weights', (1, 1, base, 4 * base)), (prefix + '/conv3/biases', (4 * base,))]
        depth_in = 4 * base
    return out + bn(scope + '/postnorm', depth_in)


# ----------------------------------------------------------------------------------------------------------
# Checkpoint initialisation
# ----------------------------------------------------------------------------------------------------------
def _depth_of_scope(scope):
    """101 from '.../resnet_v2_101'; ValueError if the scope does not name a depth."""
    match = re.fullmatch(r'resnet_v2_(\d+)', scope.rsplit('/', 1)[-1])
    if match is None or int(match.group(1)) not in BLOCKS:
        raise ValueError("cannot tell the ResNet-v2 depth from scope %r: pass depth= (%s) or a "
                         "scope named 'resnet_v2_<depth>'" % (scope, ', '.join(map(str, sorted(BLOCKS)))))
    return int(match.group(1))


def _read_checkpoint(path):
    """(prefix, {name: shape tuple}, {name: tf.DType}) of every variable in the checkpoint at `path`."""
    prefix = checkpoints.backbone_prefix(path)
    try:
        reader = tf.train.NewCheckpointReader(prefix)
    except Exception as error:  # TensorFlow raises several types for an unreadable file
        raise ValueError('backbone checkpoint %s cannot be read: %s' % (prefix, error)) from error
    shapes = {name: tuple(shape) for name, shape in reader.get_variable_to_shape_map().items()}
    return prefix, shapes, reader.get_variable_to_dtype_map()


def _mismatches(prefix, expected, shapes, dtypes, what):
    """Raises ValueError listing every expected variable the checkpoint lacks or holds with another shape.

    Args:
      prefix: checkpoint path, for the message.
      expected: list of (checkpoint name, shape tuple) the backbone needs.
      shapes, dtypes: what the checkpoint holds, by name.
      what: the backbone, for the message (e.g. "resnet_v2_101 (542 variables)").
    """
    missing = ['  missing: %s %s' % (name, list(shape)) for name, shape in expected if name not in shapes]
    wrong = ['  wrong shape: %s: checkpoint %s, backbone %s' % (name, list(shapes[name]), list(shape))
             for name, shape in expected if name in shapes and shapes[name] != tuple(shape)]
    wrong += ['  wrong dtype: %s: checkpoint %s, backbone float32' % (name, dtypes[name].name)
              for name, _ in expected if name in dtypes and dtypes[name] != tf.float32]
    if not missing and not wrong:
        return
    scopes = {}
    for name in shapes:
        top = name.split('/', 1)[0]
        scopes[top] = scopes.get(top, 0) + 1
    raise ValueError(
        'backbone checkpoint %s does not fit %s: %d missing, %d wrong:\n%s\nThe checkpoint holds: %s'
        % (prefix, what, len(missing), len(wrong), '\n'.join(missing + wrong),
           ', '.join('%s/ (%d variables)' % item for item in sorted(scopes.items()))))


def check_backbone_checkpoint(path, scope, depth=None):
    """Checks that a TF-Slim checkpoint holds every backbone variable with its shape, without a graph.

    Variables the backbone does not have ('<scope>/logits/*', 'global_step', anything else) are ignored.

    Args:
      path: checkpoint prefix, V1 file or folder.
      scope: the backbone's scope in the checkpoint ('resnet_v2_<depth>' in TF-Slim's releases).
      depth: a key of BLOCKS; None -> read from the scope's name ('resnet_v2_<depth>').
    Returns:
      the checkpoint's path (prefix or V1 file), as Saver.restore takes it.
    Raises:
      FileNotFoundError: no checkpoint at `path`.
      ValueError: the checkpoint lacks variables or has other shapes: the message lists every one.
    """
    depth = _depth_of_scope(scope) if depth is None else depth
    prefix, shapes, dtypes = _read_checkpoint(path)
    expected = backbone_variables(depth, scope)
    what = '%s (ResNet-v2-%d, %d variables)' % (scope, depth, len(expected))
    _mismatches(prefix, expected, shapes, dtypes, what)
    return prefix


def backbone_restorer(path, scope, checkpoint_scope=None, graph=None):
    """Checks the checkpoint against the graph's backbone now and returns `restore(sess)` that loads it.

    For graphs that get finalized (tf.train.MonitoredTrainingSession): call this before, and pass
    `tf.train.Scaffold(init_fn=lambda scaffold, sess: restore(sess))`. Run it after the variables'
    initializer: it overwrites every backbone variable and leaves the rest (heads, optimizer slots) alone.

    Args:
      path: checkpoint prefix, V1 file or folder.
      scope: the backbone's full variable scope in the graph (e.g. 'resnet_v2_101' or 'tower/resnet_v2_101').
      checkpoint_scope: the same scope's name in the checkpoint; None -> the last part of `scope`.
      graph: None -> the default graph.
    Returns:
      restore: function(sess) that restores the backbone variables of `graph` in session `sess`.
    Raises:
      FileNotFoundError: no checkpoint at `path`.
      ValueError: no backbone variables under `scope` in the graph, or a checkpoint that lacks some of them or
        holds other shapes (every one listed). Nothing is restored then.
    """
    scope = scope.rstrip('/')
    checkpoint_scope = scope.rsplit('/', 1)[-1] if checkpoint_scope is None else checkpoint_scope
    graph = tf.get_default_graph() if graph is None else graph
    variables = [v for v in graph.get_collection(BACKBONE_VARIABLES) if v.op.name.startswith(scope + '/')]
    if not variables:
        raise ValueError('load_backbone_checkpoint: no backbone variables under scope %r in the graph '
                         '(build resnet_v2_* with that scope first)' % scope)
    by_name = {checkpoint_scope + v.op.name[len(scope):]: v for v in variables}
    prefix, shapes, dtypes = _read_checkpoint(path)
    expected = [(name, tuple(v.shape.as_list())) for name, v in by_name.items()]
    _mismatches(prefix, expected, shapes, dtypes, 'the graph\'s %s (%d variables)' % (scope, len(expected)))
    with graph.as_default():
        saver = tf.train.Saver(by_name, sharded=False, name='backbone_restorer')

    def restore(sess):
        with sess.graph.as_default():  # outside a graph context, Saver.restore would run eagerly
            saver.restore(sess, prefix)

    return restore


def load_backbone_checkpoint(sess, path, scope, checkpoint_scope=None):
    """Restores every backbone variable of the session's graph from a TF-Slim checkpoint.

    Skips what the backbone does not have (logits, global_step); raises before restoring anything if a
    backbone variable is missing from the checkpoint or has another shape, so none is left at random.
    See backbone_restorer for the arguments and errors (FileNotFoundError, ValueError listing every problem).
    """
    with sess.graph.as_default():
        restore = backbone_restorer(path, scope, checkpoint_scope, sess.graph)
    restore(sess)
