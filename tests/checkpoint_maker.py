"""Writes a small PersonLab checkpoint in train.py's layout, for the inference tests (demo, eval, export).

Same variables (the model with its intermediate heads, global_step), same Polyak-average names
('<variable>/ExponentialMovingAverage' from tf.train.ExponentialMovingAverage), same Saver options and the
same config.json as train.py writes, without the cost of building the gradients.

The weights are random, but tamed so that decoding has something to do: the batch-norm moving statistics are
those of one forward pass over a noise image (a random ResNet with unit statistics would blow its activations
up to offsets of thousands of pixels) and the averaged head kernels are shrunk. The raw weights are drawn
again after the averages were taken, so a program that ran the raw weights instead of the Polyak
averages would give other outputs.
"""
import os

import numpy as np

import checkpoints
import config
import settings
import train

DEPTH = 50  # the smallest ResNet-v2
STEP = 2  # global step in the checkpoint's name
HEAD_WEIGHT_SCALE = 0.25  # averaged head kernels shrunk by this: offsets of tens of pixels, not hundreds


def write_checkpoint(train_dir, depth=DEPTH, input_size=65, seed=0, radius=None):
    """Writes <train_dir>/model.ckpt-<STEP>.*, checkpoint and config.json. Returns the checkpoint prefix.
    radius: the run's RADIUS in config.json (default config.RADIUS), what decoding must then use."""
    import tensorflow.compat.v1 as tf
    import model
    tf.disable_eager_execution()
    os.makedirs(train_dir, exist_ok=True)
    overrides = {'BACKBONE_DEPTH': depth, 'INPUT_SIZE': input_size, 'TRAIN_DIR': train_dir,
                 'FREEZE_BATCH_NORM': False, 'BATCH_NORM_DECAY': 0.0,  # decay 0: moving stats := batch stats
                 # He-scale conv3 and zero head biases: outputs with enough contrast for decoding to find people
                 'ZERO_INIT_RESIDUAL': False, 'HEATMAP_PRIOR': 0.5, 'SEGMENTATION_PRIOR': 0.5}
    if radius is not None:
        overrides['RADIUS'] = radius
    options = settings.make(overrides=overrides)
    with tf.Graph().as_default():
        tf.set_random_seed(seed)
        images = tf.placeholder(tf.uint8, [1, input_size, input_size, 3])
        model.build_model(images, is_training=True, output_stride=config.TRAIN_OUTPUT_STRIDE, depth=depth,
                          options=options)
        update_statistics = tf.group(*tf.get_collection(tf.GraphKeys.UPDATE_OPS))
        global_step = tf.train.get_or_create_global_step()
        weights = tf.trainable_variables()
        ema = tf.train.ExponentialMovingAverage(config.MOVING_AVERAGE_DECAY, num_updates=global_step)
        ema.apply(weights)
        head_kernels = [ema.average(v) for v in weights if v.op.name.startswith(model.HEADS_SCOPE + '/')
                        and v.op.name.endswith('/weights')]
        shrink_heads = tf.group(*[tf.assign(v, v * HEAD_WEIGHT_SCALE) for v in head_kernels])
        redraw = tf.variables_initializer(weights)
        set_step = tf.assign(global_step, STEP)
        saver = tf.train.Saver(save_relative_paths=True)
        noise = np.random.RandomState(seed).randint(0, 256, (1, input_size, input_size, 3)).astype(np.uint8)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())  # averages start at the first draw of the weights
            sess.run(update_statistics, {images: noise})
            sess.run([shrink_heads, set_step])
            sess.run(redraw)  # the raw weights: a second, different draw
            prefix = saver.save(sess, os.path.join(train_dir, checkpoints.CHECKPOINT_PREFIX), global_step=STEP,
                                write_meta_graph=False)
        train.write_config_snapshot(train_dir, STEP, lambda *args, **kwargs: None, options=options)
    return prefix
