"""The training graph of train.py: towers, their summed loss and gradients, the optimiser, its schedule.

One tower per device (GPU, or the CPU), variables shared and kept on the CPU when there are several; the
towers' loss sums are added and divided once by the whole batch's valid-position counts, so their gradients
add up to one synchronous update on the whole batch, followed by the moving-average (Polyak) update. On
several machines (distributed.Runtime) the sums and gradients are also summed over the workers.
"""
import math
import sys

import heads
import settings
import targets  # the fed arrays are data_generator's samples: targets.sample_layout's names, shapes, dtypes


class DeviceError(ValueError):
    """More towers (NUM_GPUS) than visible GPUs."""


def tensorflow_v1():
    """tensorflow.compat.v1, imported on first use: train.py's bad paths must fail before TF's seconds of import."""
    import tensorflow.compat.v1 as tf
    return tf


_tf = tensorflow_v1


def learning_rate_schedule(global_step, num_steps=None, options=None):
    """Learning rate tensor at `global_step`, from options (LEARNING_RATE, LEARNING_RATE_SCHEDULE, ...).

    'constant' [R: the paper], 'cosine' (decays to 0 at num_steps) or 'step' (times
    LEARNING_RATE_DECAY_FACTOR at each of LEARNING_RATE_DECAY_STEPS), after a linear warm-up from 0 over
    LEARNING_RATE_WARMUP_STEPS.
    """
    options = settings.resolve(options)
    tf = _tf()
    num_steps = options.NUM_STEPS if num_steps is None else num_steps
    base = float(options.LEARNING_RATE)
    step = tf.cast(global_step, tf.float32)
    schedule = options.LEARNING_RATE_SCHEDULE
    if schedule == 'constant':
        rate = tf.constant(base)
    elif schedule == 'cosine':
        progress = tf.minimum(step / float(max(num_steps, 1)), 1.0)
        rate = base * 0.5 * (1.0 + tf.cos(math.pi * progress))
    elif schedule == 'step':
        rate = tf.constant(base)
        for boundary in options.LEARNING_RATE_DECAY_STEPS:
            rate = tf.where(step >= float(boundary), rate * options.LEARNING_RATE_DECAY_FACTOR, rate)
    else:
        raise ValueError("LEARNING_RATE_SCHEDULE must be 'constant', 'cosine' or 'step', got %r" % schedule)
    warmup = options.LEARNING_RATE_WARMUP_STEPS
    if warmup > 0:
        rate = rate * tf.minimum((step + 1.0) / float(warmup), 1.0)
    return tf.identity(rate, name='learning_rate')


def make_optimizer(learning_rate, options=None):
    """options.OPTIMIZER: 'momentum' (SGD with options.MOMENTUM, the paper's) or 'adam' (options.ADAM_BETAS)."""
    options = settings.resolve(options)
    tf = _tf()
    if options.OPTIMIZER == 'momentum':
        return tf.train.MomentumOptimizer(learning_rate, options.MOMENTUM)
    if options.OPTIMIZER == 'adam':
        beta1, beta2 = options.ADAM_BETAS
        return tf.train.AdamOptimizer(learning_rate, beta1, beta2)
    raise ValueError("OPTIMIZER must be 'momentum' or 'adam', got %r" % options.OPTIMIZER)


def _placement(variable_device, compute_device):
    """Device function: variables on `variable_device`, every other op on `compute_device`."""
    def place(op):
        if op.type in ('Variable', 'VariableV2', 'VarHandleOp'):
            return variable_device
        return compute_device
    return place


def sum_gradients(tower_grads):
    """Adds (gradient, variable) lists over towers: list of (summed gradient, variable).

    Each tower differentiates its share of the whole batch's loss (tower_share_loss), so the shares'
    gradients add up to the gradient of the whole batch.
    Args:
      tower_grads: one list of (gradient, variable) per tower, in the same variable order.
    """
    tf = _tf()
    if len(tower_grads) == 1:
        return list(tower_grads[0])
    summed = []
    for pairs in zip(*tower_grads):
        variable = pairs[0][1]
        grads = [g for g, _ in pairs]
        if any(g is None for g in grads):
            summed.append((None, variable))
            continue
        summed.append((tf.add_n(grads), variable))
    return summed


def add_sums(tower_sums):
    """Adds the (numerator, denominator) loss sums of model.loss_sums over towers: dict name -> pair."""
    tf = _tf()
    return {name: (tf.add_n([t[name][0] for t in tower_sums]), tf.add_n([t[name][1] for t in tower_sums]))
            for name in tower_sums[0]}


def tower_share_loss(sums, batch_sums, weight_decay, num_shares, options=None):
    """A tower's share of the whole batch's total loss: its numerators over the whole batch's denominators.

    Every loss is sum(numerators) / sum(denominators) over the towers, and the denominators (valid-position
    counts, from the targets) carry no gradient, so the shares' gradients add up to the whole batch's
    gradient whatever each tower's number of valid positions; each of the num_shares towers (over all
    workers) carries 1/num_shares of the weight decay. `options`: the run's settings.Settings (loss weights).
    """
    import model
    shares = {name: (numerator, batch_sums[name][1]) for name, (numerator, _) in sums.items()}
    return model.losses_from_sums(shares, weight_decay / float(num_shares), options=options)['total']


def tower_devices(num_towers, gpus=None):
    """One device per tower: '/gpu:<i>'; ['/cpu:0'] for one tower on a machine without a GPU.

    Args:
      gpus: number of visible GPUs; None -> tf.config.list_physical_devices('GPU').
    Raises:
      DeviceError if num_towers exceeds the visible GPUs: soft placement would silently run every extra tower
      on the CPU. (Tests place towers on CPUs explicitly through build_training_graph's devices.)
    """
    if gpus is None:
        import tensorflow as tf2
        gpus = len(tf2.config.list_physical_devices('GPU'))
    if gpus == 0 and num_towers == 1:
        return ['/cpu:0']
    if num_towers > gpus:
        raise DeviceError('NUM_GPUS is %d but %d GPU(s) are visible to TensorFlow (CUDA_VISIBLE_DEVICES, '
                          'drivers?): set --num-gpus (config.NUM_GPUS) to at most %d'
                          % (num_towers, gpus, max(gpus, 1)))
    return ['/gpu:%d' % i for i in range(num_towers)]


def _image_summary(images, outputs, targets, max_images):
    """One image per sample: input | predicted heatmaps | target heatmaps | predicted seg | target seg.

    The heatmaps are the maximum over the K keypoint types, resized to the input size.
    """
    tf = _tf()
    images = tf.cast(images[:max_images], tf.float32) / 255.0
    size = tf.shape(images)[1:3]

    def panel(maps):
        maps = tf.reduce_max(maps[:max_images], axis=3, keepdims=True)
        maps = tf.image.resize(maps, size, method='nearest')
        return tf.tile(tf.clip_by_value(maps, 0.0, 1.0), [1, 1, 1, 3])

    row = tf.concat([images, panel(outputs['heatmaps']), panel(targets['heatmaps']),
                     panel(outputs['segmentation']), panel(targets['segmentation'])], axis=2)
    return tf.summary.image('input_heatmaps_target_segmentation_target', row, max_outputs=max_images)


def build_training_graph(batch_size=None, input_size=None, devices=None, num_steps=None, runtime=None,
                         options=None):
    """Builds the synchronous multi-tower training graph in the default graph.

    Args:
      batch_size: images per step over this process's towers; None -> options.BATCH_SIZE.
      input_size: square input side (n*stride+1); None -> options.INPUT_SIZE.
      devices: one device per tower; None -> tower_devices(options.NUM_GPUS).
      num_steps: for the cosine schedule; None -> options.NUM_STEPS.
      runtime: distributed.Runtime on several machines (batch_size is then this worker's share): the
        towers run in the strategy's replica, the loss sums and gradients are summed over the workers.
      options: the run's settings.Settings (model, losses, optimiser, schedule); None -> config.py's.
    Returns:
      dict with 'inputs' (placeholders by name: 'image' uint8 [B,S,S,3] and the targets), 'losses' (scalar
      tensors of the whole batch, names of model.compute_losses), 'grads_and_vars' (of this process's
      batch), 'train_op', 'global_step', 'learning_rate', 'ema', 'summary_op', 'saver', 'all_finite' (bool:
      every weight finite), 'reset_averages' (copies the weights into their moving averages), 'towers';
      with a runtime also 'stop_request' (float placeholder, scalar: 1 asks every worker to stop) and
      'stop_requests' (its sum over the workers).
    """
    options = settings.resolve(options)
    tf = _tf()

    batch_size = options.BATCH_SIZE if batch_size is None else batch_size
    input_size = options.INPUT_SIZE if input_size is None else input_size
    devices = tower_devices(options.NUM_GPUS) if devices is None else list(devices)
    if batch_size % len(devices):
        raise ValueError('batch size %d is not a multiple of the %d towers' % (batch_size, len(devices)))
    with tf.device('/cpu:0'):
        inputs = {name: tf.placeholder(tf.as_dtype(dtype), (batch_size,) + shape, name=name)
                  for name, shape, dtype in targets.sample_layout(input_size, options.LOSS_STRIDE)}
        stop_request = tf.placeholder_with_default(0.0, [], name='stop_request') if runtime else None
    graph = {'inputs': inputs}
    if runtime is None:
        _build_step(graph, devices, num_steps, None, stop_request, options)
    else:
        # One replica per worker, so its outputs are plain tensors: _build_step fills `graph` itself.
        runtime.call_in_replica(lambda: _build_step(graph, devices, num_steps, runtime, stop_request, options))
        graph['stop_request'] = stop_request
    graph['saver'] = tf.train.Saver(max_to_keep=options.CHECKPOINTS_TO_KEEP, save_relative_paths=True)
    return graph


def _build_step(graph, devices, num_steps, runtime, stop_request, options):
    """build_training_graph's step on graph['inputs'], in the strategy's replica under a runtime; adds the
    tensors and ops it documents to `graph`."""
    tf = _tf()
    import model

    inputs = graph['inputs']
    num_towers = len(devices)
    workers = 1 if runtime is None else runtime.cluster.size
    stride = options.TRAIN_OUTPUT_STRIDE
    variable_device = '/cpu:0' if num_towers > 1 else devices[0]
    with tf.device('/cpu:0'):
        split = {name: tf.split(tensor, num_towers, axis=0) for name, tensor in inputs.items()}
        global_step = tf.train.get_or_create_global_step()
        learning_rate = learning_rate_schedule(global_step, num_steps, options=options)
        optimizer = make_optimizer(learning_rate, options=options)

    tower_sums, first = [], None
    for i, device in enumerate(devices):
        with tf.device(_placement(variable_device, device)), tf.name_scope('tower_%d' % i):
            images = split['image'][i]
            maps = {name: split[name][i] for name in heads.TARGET_CHANNELS}
            outputs = model.build_model(images, is_training=True, output_stride=stride,
                                        depth=options.BACKBONE_DEPTH, reuse=True if i else None, options=options)
            outputs = model.upsample_outputs(outputs, stride // options.LOSS_STRIDE)
            with tf.name_scope('losses'):
                tower_sums.append(model.loss_sums(outputs, maps, options=options))
            if i == 0:
                weight_decay = model.weight_decay_loss(options=options)  # counted once, over the shared variables
            if i == 0:
                first = (images, outputs, maps)
                # Batch-norm statistics (when they train) follow the first tower, as in TF's multi-GPU recipes
                # (and, on several machines, each worker's own first tower: the chief's are saved).
                update_ops = tf.get_collection(tf.GraphKeys.UPDATE_OPS, scope='tower_0')

    # Each loss is divided once, by the valid-position count of the whole batch: averaging per-tower means
    # would weight a sample by how few valid positions its tower's other samples have.
    with tf.device('/cpu:0'), tf.name_scope('batch_losses'):
        batch_sums = add_sums(tower_sums)
        if runtime is not None:  # the whole global batch's sums, and whether any worker asks to stop
            batch_sums, graph['stop_requests'] = runtime.all_reduce_sum((batch_sums, stop_request))
        losses = model.losses_from_sums(batch_sums, weight_decay, options=options)
    tower_grads = []
    variables = tf.trainable_variables()
    for i, device in enumerate(devices):
        with tf.device(_placement(variable_device, device)), tf.name_scope('tower_%d' % i):
            share = tower_share_loss(tower_sums[i], batch_sums, weight_decay, num_towers * workers, options)
            tower_grads.append(optimizer.compute_gradients(share, variables, colocate_gradients_with_ops=True))
    grads_and_vars = sum_gradients(tower_grads)
    unused = [v.op.name for g, v in grads_and_vars if g is None]
    if unused:
        print('train: no gradient reaches %d trainable variables (not updated): %s'
              % (len(unused), ', '.join(unused[:5]) + (' ...' if len(unused) > 5 else '')), file=sys.stderr)
    grads_and_vars = [(g, v) for g, v in grads_and_vars if g is not None]
    trained = [v for _, v in grads_and_vars]

    with tf.device(variable_device):
        with tf.control_dependencies(update_ops):
            # In the strategy's replica this sums the workers' gradients (MultiWorkerMirroredStrategy's
            # all-reduce) before the one update every worker applies.
            apply_op = optimizer.apply_gradients(grads_and_vars, global_step=global_step)
        # num_updates makes the averaging decay min(decay, (1 + step) / (10 + step)): early averages are not
        # dominated by the initial weights, and the value is restored with global_step on resume.
        ema = tf.train.ExponentialMovingAverage(options.MOVING_AVERAGE_DECAY, num_updates=global_step)
        with tf.control_dependencies([apply_op]):
            train_op = ema.apply(trained)
        reset_averages = tf.group(*[tf.assign(ema.average(v), v) for v in trained], name='reset_averages')
        all_finite = tf.reduce_all(tf.stack([tf.reduce_all(tf.is_finite(v)) for v in trained]))

    summaries = [tf.summary.scalar('losses/' + name, losses[name]) for name in heads.LOSS_KEYS if name in losses]
    summaries.append(tf.summary.scalar('optimizer/learning_rate', learning_rate))
    gradient_norm = tf.global_norm([g for g, _ in grads_and_vars])  # of this worker's share on several machines
    summaries.append(tf.summary.scalar('optimizer/gradient_norm', gradient_norm))
    summaries.append(_image_summary(*first, max_images=options.SUMMARY_IMAGES))
    graph.update({'losses': losses, 'grads_and_vars': grads_and_vars, 'train_op': train_op,
                  'global_step': global_step, 'learning_rate': learning_rate, 'ema': ema,
                  'summary_op': tf.summary.merge(summaries), 'all_finite': all_finite,
                  'reset_averages': reset_averages, 'towers': num_towers})
