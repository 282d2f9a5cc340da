"""PersonLab inference: one image in, people out. The project's single inference path.

demo.py, eval.py (both modes), export_model.py, serve_example.py and bench/infer_bench.py all run images
through `Predictor`, which does:

  source image, H x W RGB uint8, any size
    -> resized so its longer side is L px (cv2.resize; area averaging when shrinking)
    -> padded bottom/right with config.PAD_VALUE to n*s + 1 px, so the output grid meets the input corners
    -> the network at output stride s = config.EVAL_OUTPUT_STRIDE, with the Polyak-averaged weights
    -> with several scales: the maps of each scale resampled onto the output grid of the largest one,
       offsets rescaled to its pixels, then averaged (offsets weighted by their heatmap / segmentation)
    -> post_proc.decode on that grid
    -> keypoints and masks mapped back to source-image pixels.

Geometry. cv2.resize maps pixel centres (integer coordinates, config.py) as x_in = (x + 0.5) * f_x - 0.5 with
f_x = W_in / W (likewise y), so decoded points map back exactly through x = (x_in + 0.5) / f_x - 0.5; padding
adds pixels after the image and moves nothing. `Geometry` records one image's sizes and factors.

A network is anything with a `stride` attribute and `__call__(image)` -> dict name -> float32 [H', W', C]
(no batch axis, the names of heads.OUTPUTS) for a uint8 [H, W, 3] image of n*stride+1 sides:
  CheckpointNetwork  a train.py checkpoint in a tf.compat.v1 Session (Polyak averages restored)
  SavedModelNetwork  export_model.py's SavedModel (tf.compat.v1.saved_model loader)
  FrozenGraphNetwork export_model.py's frozen GraphDef
  GroundTruthNetwork the annotations of a COCO example as maps (eval.py --oracle, tests, benchmark)
The first three run the graph `build_inference_graph` makes: input 'image' uint8 [H, W, 3] or [1, H, W, 3] of any
size, padding and preprocessing inside, outputs 'outputs/<name>' [1, H', W', C].

Also here: finding the newest checkpoint without TensorFlow (`find_checkpoint`, `NoCheckpointError` says how
to train one), the model settings a checkpoint was trained with (`checkpoint_settings`), and reading images
of any common kind (`read_image`, `to_rgb_uint8`: grey, RGBA, 16-bit, float).
"""
import collections
import contextlib
import os
import re
import sys
import time

import cv2
import numpy as np

import config
import data_generator
import heads
import post_proc
from checkpoints import UnreadableCheckpointError, checkpoint_prefix as _checkpoint_prefix, latest_in, \
    step_of as _step_of

INPUT_NAME = 'image'  # graph input: uint8 [H, W, 3] or [1, H, W, 3]
OUTPUT_SCOPE = 'outputs'  # graph outputs are 'outputs/<name>', name in OUTPUT_NAMES
OUTPUT_NAMES = heads.OUTPUTS
EMA_SUFFIX = '/ExponentialMovingAverage'  # Polyak averages in a train.py checkpoint: '<variable>' + this
MIN_LONGER_SIDE = 2  # px: the smallest input the resize takes (demo.py and eval.py check their sizes with it)


class NoCheckpointError(FileNotFoundError):
    """No usable checkpoint where one was looked for; the message says how to train one or where to put it."""


class UnusableImageError(data_generator.ImageReadError):
    """An image that was read but cannot be used (too small, unsupported pixel type); the message says why."""


def _tf():
    import tensorflow.compat.v1 as tf  # late: finding checkpoints and reading images must not wait for TF
    tf.disable_eager_execution()
    return tf


# ----------------------------------------------------------------------------------------------------------
# Checkpoints (no TensorFlow needed)
# ----------------------------------------------------------------------------------------------------------
def how_to_get_a_checkpoint():
    """The lines NoCheckpointError ends with: how to train a model or where to put one."""
    return ('  Train one:  python train.py                     (COCO; README, "Training")\n'
            '     or, on a CPU (synthetic people, minutes to an hour: docs/training.md):\n'
            '              python train.py --preset quickstart  (synthetic people; then: python demo.py '
            '--preset quickstart)\n'
            '  or put a train.py checkpoint (checkpoint, model.ckpt-<step>.index, model.ckpt-<step>.data-*, '
            'config.json)\n'
            '  in %s (config.TRAIN_DIR), or pass --checkpoint DIR_OR_PREFIX.' % config.TRAIN_DIR)


def find_checkpoint(path=None):
    """The checkpoint prefix to run.

    Args:
      path: a train dir (its newest checkpoint), a checkpoint prefix (or its .index / .data file), or None:
        the newest checkpoint of config.TRAIN_DIR, else the newest under any folder of config.MODEL_DIR
        (e.g. model/quickstart/).
    Raises:
      NoCheckpointError naming where it looked and how to train a model.
    """
    if path:
        if os.path.isdir(path):
            prefix = latest_in(path)
            if prefix is None:
                raise NoCheckpointError('no checkpoint in %s.\n%s' % (path, how_to_get_a_checkpoint()))
            return prefix
        prefix = _checkpoint_prefix(path)
        if prefix is None:
            raise NoCheckpointError('checkpoint not found: %s (neither a folder nor a checkpoint prefix with '
                                    'a .index file).\n%s' % (path, how_to_get_a_checkpoint()))
        return prefix
    prefix = latest_in(config.TRAIN_DIR)
    if prefix:
        return prefix
    found = []
    if os.path.isdir(config.MODEL_DIR):
        for name in sorted(os.listdir(config.MODEL_DIR)):
            folder = os.path.join(config.MODEL_DIR, name)
            candidate = latest_in(folder)
            if candidate:
                found.append(candidate)
    if not found:
        raise NoCheckpointError('no trained PersonLab checkpoint found: looked in %s (config.TRAIN_DIR) and in '
                                'the folders of %s (config.MODEL_DIR).\n%s'
                                % (config.TRAIN_DIR, config.MODEL_DIR, how_to_get_a_checkpoint()))
    return max(found, key=lambda p: os.path.getmtime(p + '.index'))


def checkpoint_settings(prefix):
    """How to build the network a checkpoint holds.

    Returns dict:
      'overrides'   config values to build the model with (train.model_overrides of its train dir, plus
                    BATCH_NORM_TRAIN_AFFINE); without a config.json beside the checkpoint, the depth read from
                    its variable names
      'input_size'  the run's training INPUT_SIZE, or None if unknown
      'radius'      the run's disk radius RADIUS (px), the one its targets were made with and decoding must use,
                    or None if unknown (then config.RADIUS)
      'step'        the global step in the checkpoint's name (-1 if none)
      'warnings'    list of messages for the user
      'train_annotations'     the run's TRAIN_ANNOTATIONS, or None if unknown
      'trained_on_synthetic'  True if those were a synthetic.py set (synthetic.is_synthetic_run)
    """
    import synthetic
    import train
    train_dir = os.path.dirname(os.path.abspath(prefix))
    warnings = []
    run = {}
    if os.path.isfile(os.path.join(train_dir, train.CONFIG_SNAPSHOT)):
        run = train.load_run_config(train_dir)
        overrides = dict(train.model_overrides(train_dir))
        if 'BATCH_NORM_TRAIN_AFFINE' in run:  # decides which variables the run averaged
            overrides['BATCH_NORM_TRAIN_AFFINE'] = run['BATCH_NORM_TRAIN_AFFINE']
        input_size = run.get('INPUT_SIZE')
        radius = run.get('RADIUS')
    else:
        tf = _tf()
        try:
            names = [name for name, _ in tf.train.list_variables(prefix)]
        except tf.errors.OpError as error:
            raise UnreadableCheckpointError('%s cannot be read: %s' % (prefix, str(error).strip().splitlines()[0]))

        depths = sorted({int(m.group(1)) for m in (re.match(r'resnet_v2_(\d+)/', n) for n in names) if m})
        if len(depths) != 1:
            raise ValueError('%s is not a PersonLab checkpoint: expected the variables of one ResNet-v2 '
                             '(resnet_v2_<depth>/...), found depths %s' % (prefix, depths))
        overrides = {'BACKBONE_DEPTH': depths[0]}
        input_size = radius = None
        warnings.append('no %s beside %s: building ResNet-v2-%d with the other model settings of config.py'
                        % (train.CONFIG_SNAPSHOT, prefix, depths[0]))
    return {'overrides': overrides, 'input_size': input_size, 'radius': radius, 'step': _step_of(prefix),
            'warnings': warnings, 'train_annotations': run.get('TRAIN_ANNOTATIONS'),
            'trained_on_synthetic': synthetic.is_synthetic_run(run)}


# ----------------------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------------------
def to_rgb_uint8(image, name='image'):
    """Any common image array -> uint8 [H, W, 3] RGB.

    Accepts [H, W] or [H, W, 1] grey, [H, W, 3] RGB, [H, W, 4] RGBA (composited over config.ALPHA_BACKGROUND);
    uint8, uint16 (scaled by 255/65535) or float (0..1, clipped). Raises UnusableImageError naming `name`.
    """
    image = np.asarray(image)
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[..., 0]
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise UnusableImageError('%s has shape %s: expected [H, W] grey, [H, W, 3] RGB or [H, W, 4] RGBA'
                                 % (name, image.shape))
    if image.dtype == np.uint8:
        values = image.astype(np.float32) if image.ndim == 3 and image.shape[2] == 4 else image
    elif image.dtype == np.uint16:
        values = image.astype(np.float32) * (255.0 / 65535.0)
    elif np.issubdtype(image.dtype, np.floating):
        if not np.isfinite(image).all():
            raise UnusableImageError('%s holds NaN or infinite pixel values' % name)
        values = np.clip(image.astype(np.float32), 0.0, 1.0) * 255.0
    else:
        raise UnusableImageError('%s has pixel type %s: expected uint8, uint16 or float' % (name, image.dtype))
    if values.ndim == 2:
        values = np.repeat(values[..., None], 3, axis=2)
    elif values.shape[2] == 4:
        alpha = values[..., 3:].astype(np.float32) / 255.0
        background = np.asarray(config.ALPHA_BACKGROUND, np.float32)
        values = values[..., :3].astype(np.float32) * alpha + background * (1.0 - alpha)
    if values.dtype != np.uint8:
        values = np.clip(np.rint(values), 0, 255).astype(np.uint8)
    return np.ascontiguousarray(values)


def check_size(image, name='image', min_side=None):
    """Raises UnusableImageError if the image's shorter side is below config.MIN_INPUT_SIDE."""
    min_side = config.MIN_INPUT_SIDE if min_side is None else min_side
    height, width = image.shape[:2]
    if min(height, width) < min_side:
        raise UnusableImageError('%s is only %dx%d px: at least %d px per side are needed to hold a person '
                                 '(config.MIN_INPUT_SIDE)' % (name, width, height, min_side))
    return image


def header_size(path):
    """(width, height) from the file's header without decoding it (Pillow, which scikit-image installs), or
    None if Pillow is missing or does not read the file (OpenCV may still)."""
    try:
        from PIL import Image
    except ImportError:
        return None
    limit, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # we judge the size ourselves
    try:
        with Image.open(path) as image:
            return image.size
    except Exception:  # noqa: BLE001  any file Pillow cannot parse: OpenCV decides
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def check_image_header(path):
    """Judges an image file from its first bytes only, in milliseconds: demo.py checks every input this way
    before it loads the model. Raises data_generator.ImageReadError naming the file if it is missing or no
    image format OpenCV reads starts like it (a text file, a video), UnusableImageError if its header gives
    a size above config.MAX_INPUT_PIXELS (decoding it could exhaust the memory). A file that passes may
    still fail to decode (truncated): read_image says so."""
    if not os.path.isfile(path):
        raise data_generator.ImageReadError('%s does not exist' % path)
    if not cv2.haveImageReader(path):
        raise data_generator.ImageReadError('%s is not an image: no image format OpenCV reads starts like it'
                                            % path)
    size = header_size(path)
    if size and size[0] * size[1] > config.MAX_INPUT_PIXELS:
        raise UnusableImageError(
            '%s is %dx%d px (%.0f megapixels), above config.MAX_INPUT_PIXELS (%.0f): shrink it first; the '
            'network sees it resized anyway' % (path, size[0], size[1], size[0] * size[1] / 1e6,
                                                config.MAX_INPUT_PIXELS / 1e6))


def read_image(path):
    """uint8 [H, W, 3] RGB of an image file of any common kind (grey, RGBA, 16-bit, float TIFF).

    JPEG orientation (EXIF) is applied, as viewers show the picture. The header is checked first
    (check_image_header): an image above config.MAX_INPUT_PIXELS is refused before decoding could exhaust
    the memory.
    Raises data_generator.ImageReadError naming the file if it is missing or cannot be decoded, and
    UnusableImageError if it is too small (check_size), too large or of an unsupported pixel type.
    """
    check_image_header(path)
    data = np.fromfile(path, np.uint8)
    # IMREAD_COLOR | ANYDEPTH keeps 16 bits and applies EXIF orientation; only IMREAD_UNCHANGED keeps alpha.
    image = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH) if data.size else None
    if image is None or image.size == 0:
        raise data_generator.ImageReadError(
            '%s cannot be decoded: not an image OpenCV reads, truncated, or above its limit of 2^30 pixels'
            % path)
    if data[:2].tobytes() != b'\xff\xd8':  # JPEG has no alpha: skip the second decode
        unchanged = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
        if unchanged is not None and unchanged.ndim == 3 and unchanged.shape[2] == 4:
            return check_size(to_rgb_uint8(cv2.cvtColor(unchanged, cv2.COLOR_BGRA2RGBA), path), path)
    return check_size(to_rgb_uint8(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), path), path)


# ----------------------------------------------------------------------------------------------------------
# Geometry: resize, pad, map back
# ----------------------------------------------------------------------------------------------------------
Geometry = collections.namedtuple('Geometry', [
    'source_shape',  # (H, W) of the source image
    'input_shape',   # (H_in, W_in) after resizing
    'padded_shape',  # (H_pad, W_pad) = n*s + 1 sides, what the network sees (decode's image_shape)
    'scale',         # (f_x, f_y) = (W_in / W, H_in / H)
])


def resize_longer_side(image, longer_side):
    """Resizes so the longer side is `longer_side` px (None: unchanged). Returns (image, (f_x, f_y))."""
    height, width = image.shape[:2]
    if longer_side is None:
        return image, (1.0, 1.0)
    longer_side = int(longer_side)
    if longer_side < MIN_LONGER_SIDE:
        raise ValueError('longer side must be at least %d px, got %d' % (MIN_LONGER_SIDE, longer_side))
    factor = longer_side / float(max(height, width))
    size = (max(1, int(round(width * factor))), max(1, int(round(height * factor))))
    if size == (width, height):
        return image, (1.0, 1.0)
    interpolation = cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR
    return cv2.resize(image, size, interpolation=interpolation), (size[0] / float(width), size[1] / float(height))


def prepare(image, longer_side, stride):
    """Source image -> (network input uint8 [H_pad, W_pad, 3], Geometry)."""
    resized, scale = resize_longer_side(image, longer_side)
    padded = data_generator.pad_to_grid(resized, stride)
    return padded, Geometry(tuple(image.shape[:2]), tuple(resized.shape[:2]), tuple(padded.shape[:2]), scale)


def to_source_points(points, geometry):
    """float [..., 2] (x, y) input px -> source px (the inverse of cv2.resize's pixel-centre mapping)."""
    points = np.array(points, np.float32, copy=True)
    fx, fy = geometry.scale
    points[..., 0] = (points[..., 0] + 0.5) / fx - 0.5
    points[..., 1] = (points[..., 1] + 0.5) / fy - 0.5
    return points


def to_source_mask(mask, geometry):
    """bool [H_pad, W_pad] mask on the network input -> bool [H, W] on the source image.

    Each source pixel reads the input mask bilinearly at its input position (> 0.5); only the mask's box is
    resampled, so big images with many people stay cheap.
    """
    height, width = geometry.source_shape
    out = np.zeros((height, width), bool)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if not len(rows):
        return out
    if geometry.scale == (1.0, 1.0):
        out[:] = mask[:height, :width]
        return out
    fx, fy = geometry.scale
    # Input box (one pixel of margin for the interpolation) -> source box.
    x0, x1 = max(cols[0] - 1, 0), min(cols[-1] + 2, mask.shape[1])
    y0, y1 = max(rows[0] - 1, 0), min(rows[-1] + 2, mask.shape[0])
    sx0 = int(np.clip(np.floor((x0 + 0.5) / fx - 0.5), 0, width))
    sx1 = int(np.clip(np.ceil((x1 - 1 + 0.5) / fx - 0.5) + 1, 0, width))
    sy0 = int(np.clip(np.floor((y0 + 0.5) / fy - 0.5), 0, height))
    sy1 = int(np.clip(np.ceil((y1 - 1 + 0.5) / fy - 0.5) + 1, 0, height))
    if sx1 <= sx0 or sy1 <= sy0:
        return out
    crop = mask[y0:y1, x0:x1].astype(np.float32)
    # Source pixel (sx0 + u) reads input x = (sx0 + u + 0.5) * fx - 0.5, i.e. crop column x - x0.
    warp = np.float32([[fx, 0, (sx0 + 0.5) * fx - 0.5 - x0], [0, fy, (sy0 + 0.5) * fy - 0.5 - y0]])
    sampled = cv2.warpAffine(crop, warp, (sx1 - sx0, sy1 - sy0), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    out[sy0:sy1, sx0:sx1] = sampled > 0.5
    return out


def to_source(people, geometry):
    """Decoded people (input px) -> the same people in source-image px: new dicts, keypoint (x, y) mapped,
    scores kept, masks resampled to [H, W] (None stays None)."""
    converted = []
    for person in people:
        keypoints = person['keypoints'].copy()
        keypoints[:, :2] = to_source_points(keypoints[:, :2], geometry)
        mask = person.get('mask')
        converted.append(dict(person, keypoints=keypoints,
                              mask=None if mask is None else to_source_mask(mask, geometry)))
    return converted


# ----------------------------------------------------------------------------------------------------------
# Multi-scale: maps of every scale on one grid
# ----------------------------------------------------------------------------------------------------------
def _axis_weights(out_size, in_size, a, b):
    """Linear interpolation along one axis, out index o reading input position a*o + b (clamped):
    (lower indices, upper indices, upper weights)."""
    position = np.clip(a * np.arange(out_size, dtype=np.float64) + b, 0, in_size - 1)
    lower = np.floor(position).astype(np.int64)
    upper = np.minimum(lower + 1, in_size - 1)
    return lower, upper, (position - lower).astype(np.float32)


def resample_maps(maps, geometry, target, stride):
    """One scale's maps moved onto the output grid of another geometry of the same source image.

    Target cell (i, j) sits at target input px (j*s, i*s), i.e. at source x = (j*s + 0.5)/F_x - 0.5 and at
    this scale's input x = (x + 0.5)*f_x - 0.5: bilinear (border-clamped) reading of each map there, exact
    (no fixed-point positions). Offsets are then multiplied by F/f to be in target input px.
    Returns dict name -> float32 [H'_target, W'_target, C].
    """
    rows, cols = post_proc.grid_shape(target.padded_shape, stride)
    resampled = {}
    axes = []
    for axis, size in ((1, rows), (0, cols)):  # scale index: 0 = x, 1 = y
        ratio = geometry.scale[axis] / target.scale[axis]
        in_size = next(iter(maps.values())).shape[1 - axis]
        axes.append(_axis_weights(size, in_size, ratio, (0.5 * ratio - 0.5) / stride))
    (y0, y1, wy), (x0, x1, wx) = axes
    for name, array in maps.items():
        top, bottom = array[y0], array[y1]
        along_y = top + (bottom - top) * wy[:, None, None]
        left, right = along_y[:, x0], along_y[:, x1]
        value = left + (right - left) * wx[None, :, None]
        if name in heads.OFFSET_OUTPUTS:
            value[..., 0::2] *= target.scale[0] / geometry.scale[0]
            value[..., 1::2] *= target.scale[1] / geometry.scale[1]
        resampled[name] = value.astype(np.float32)
    return resampled


def offset_weights(maps):
    """Confidence of each offset field of one scale, to weight it when scales merge: dict offset name ->
    float32 [H', W', F]. A short-range field S_k counts where p_k is high, a mid-range field k -> l where p_k
    is (its disk), a long-range field where p_S is (a person's pixels); elsewhere the field is unsupervised."""
    weights = {}
    if 'short_offsets' in maps:
        weights['short_offsets'] = maps['heatmaps']
    if 'mid_offsets' in maps:
        weights['mid_offsets'] = maps['heatmaps'][..., [k for k, _ in config.DIRECTED_EDGES]]
    if 'long_offsets' in maps:
        weights['long_offsets'] = np.repeat(maps['segmentation'], maps['long_offsets'].shape[2] // 2, axis=2)
    for head in heads.OFFSET_HEADS:  # target maps: undefined offsets weigh nothing
        if head.validity in maps and head.output in weights:
            weights[head.output] = weights[head.output] * maps[head.validity]
    return weights


def merge_scales(maps_per_scale, geometries, stride, epsilon=1e-6):
    """Merges the maps of several scales on the grid of the largest (multi-scale testing [R]).

    Heatmaps and segmentation are averaged as probabilities. Offsets, rescaled to the reference pixels, are
    averaged with the weights of offset_weights [C]: each scale's field counts where that scale sees its
    keypoint or person, not where it was never trained to point anywhere (a plain mean would pull the
    offsets of a large person, inside the disk at one scale but outside at another, towards garbage).
    Validity maps (ground truth only) weight their offsets too and merge by maximum.
    Returns (maps dict, Geometry of that grid).
    """
    reference = int(np.argmax([g.input_shape[0] * g.input_shape[1] for g in geometries]))
    target = geometries[reference]
    if len(maps_per_scale) == 1:
        return maps_per_scale[0], target
    sums, weights, valid = {}, {}, {}
    validity_names = [head.validity for head in heads.OFFSET_HEADS]
    for n, (maps, geometry) in enumerate(zip(maps_per_scale, geometries)):
        if n != reference:
            maps = resample_maps(maps, geometry, target, stride)
        fields = offset_weights(maps)
        for name, value in maps.items():
            if name in validity_names:  # a merged offset is defined where any scale defines it
                valid[name] = np.maximum(valid[name], value) if name in valid else value
                continue
            if name in fields:
                weight = np.repeat(fields[name], 2, axis=2) + epsilon  # one weight for dx and dy
                value = value * weight
                weights[name] = weights.get(name, 0.0) + weight
            sums[name] = sums[name] + value if name in sums else np.array(value, np.float32, copy=True)
    count = float(len(maps_per_scale))
    merged = {name: (value / weights[name] if name in weights else value / count).astype(np.float32)
              for name, value in sums.items()}
    merged.update(valid)
    return merged, target


# ----------------------------------------------------------------------------------------------------------
# The network graph and its three runners
# ----------------------------------------------------------------------------------------------------------
def build_inference_graph(stride=None, depth=None):
    """The inference network in the default graph (model settings from config at call time).

    Input placeholder 'image': uint8 [H, W, 3] or [1, H, W, 3], any H, W >= 1. Inside: padding bottom/right
    with config.PAD_VALUE to n*stride+1 sides, model.preprocess, model.build_model(is_training=False) at
    `stride` (default config.EVAL_OUTPUT_STRIDE) without the intermediate heads.
    Returns (image placeholder, dict name -> float32 [1, H', W', C] tensors named 'outputs/<name>').
    """
    tf = _tf()
    import model
    stride = config.EVAL_OUTPUT_STRIDE if stride is None else int(stride)
    image = tf.placeholder(tf.uint8, shape=None, name=INPUT_NAME)
    with tf.name_scope('prepare'):
        shape = tf.shape(image)
        rank = tf.rank(image)
        is_rgb = tf.logical_and(tf.logical_or(tf.equal(rank, 3), tf.logical_and(tf.equal(rank, 4),
                                                                               tf.equal(shape[0], 1))),
                                tf.equal(shape[-1], 3))
        check = tf.Assert(is_rgb, ['image must be uint8 [H, W, 3] or [1, H, W, 3], got shape', shape])
        with tf.control_dependencies([check]):
            height, width = shape[-3], shape[-2]
            batch = tf.reshape(image, tf.stack([1, height, width, 3]))
        batch.set_shape([1, None, None, 3])
        pad_value = tf.constant([float(v) for v in config.PAD_VALUE], tf.float32)
        pad_h = (stride - (height - 1) % stride) % stride
        pad_w = (stride - (width - 1) % stride) % stride
        padded = tf.pad(tf.cast(batch, tf.float32) - pad_value, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])
        padded = padded + pad_value
    outputs = model.build_model(padded, is_training=False, output_stride=stride, depth=depth, intermediate=False)
    with tf.name_scope(OUTPUT_SCOPE + '/'):  # trailing slash: exactly this scope, never 'outputs_1'
        named = {name: tf.identity(outputs[name], name=name) for name in OUTPUT_NAMES}
    return image, named


def output_tensor_names():
    """Graph names of the outputs: dict name -> 'outputs/<name>:0'."""
    return {name: '%s/%s:0' % (OUTPUT_SCOPE, name) for name in OUTPUT_NAMES}


def _session_config(threads=None):
    tf = _tf()
    kwargs = {}
    if threads:
        kwargs.update(intra_op_parallelism_threads=threads, inter_op_parallelism_threads=threads)
    return tf.ConfigProto(allow_soft_placement=True, **kwargs)


def restore_polyak_weights(sess, prefix):
    """Restores a train.py checkpoint into the model of the session's graph, every variable from its Polyak
    average ('<name>/ExponentialMovingAverage') where the checkpoint has one, else from its own value
    (batch-norm moving statistics are never averaged). train.restore_averaged_weights does the restoring.

    Returns a list of warnings. Raises ValueError naming the variables the checkpoint lacks.
    """
    tf = _tf()
    import train
    available = dict(tf.train.list_variables(prefix))
    graph_variables = tf.global_variables()
    averaged = [v for v in graph_variables if v.op.name + EMA_SUFFIX in available]
    missing = [v.op.name for v in graph_variables
               if v.op.name + EMA_SUFFIX not in available and v.op.name not in available]
    if missing:
        raise ValueError('%s lacks %d variables of this model, e.g. %s: was it trained with another '
                         'BACKBONE_DEPTH or head layout? (config.json beside it decides the model)'
                         % (prefix, len(missing), ', '.join(missing[:5])))
    wrong = [v.op.name for v in graph_variables if tuple(available.get(
        v.op.name + EMA_SUFFIX, available.get(v.op.name))) != tuple(v.shape.as_list())]
    if wrong:
        raise ValueError('%s: %d variables have other shapes than this model, e.g. %s'
                         % (prefix, len(wrong), ', '.join(wrong[:5])))
    warnings = []
    if not averaged:
        warnings.append('%s holds no Polyak averages (%s): using its raw weights' % (prefix, EMA_SUFFIX))
    train.restore_averaged_weights(sess, prefix, variables=averaged)
    return warnings


class _GraphNetwork(object):
    """Runs an inference graph: the checkpoint's, or an imported one (SavedModel or frozen GraphDef) whose
    input is 'image' and outputs 'outputs/<name>'. Call: uint8 [H, W, 3] -> dict name -> float32 [H', W', C]
    (padding to n*stride+1 happens inside the graph)."""

    def _bind(self, input_name, output_names):
        self.image = self.graph.get_tensor_by_name(input_name)
        self.outputs = {name: self.graph.get_tensor_by_name(tensor)[0] for name, tensor in output_names.items()}

    def __call__(self, image):
        return self.session.run(self.outputs, {self.image: image})

    def close(self):
        self.session.close()


class CheckpointNetwork(_GraphNetwork):
    """The network of a train.py checkpoint, Polyak-averaged weights, in its own graph and session.

    Args:
      checkpoint: train dir or checkpoint prefix (find_checkpoint; None: the newest under config's folders).
      stride: output stride (default config.EVAL_OUTPUT_STRIDE).
      random_weights: no checkpoint: random initial weights with the model settings of config.py (benchmarks).
      depth: with random_weights, the ResNet depth (default config.BACKBONE_DEPTH).
      threads: TensorFlow intra/inter-op threads (None: TensorFlow's default, all cores).
      finalize: freeze the graph once built (False lets export_model.py add its savers).
    Attributes: stride, checkpoint (prefix or None), settings (checkpoint_settings), warnings, graph, session,
      image (the input placeholder), batch_outputs (name -> [1, H', W', C] tensors).
    A folder's newest checkpoint that vanishes while the graph is built (deleted by a training still writing
    there) or cannot be read (truncated) gives way to the next newest readable one (a warning if damaged).
    Raises NoCheckpointError (before building anything) and ValueError for a checkpoint that does not fit or
    that cannot be read (checkpoints.UnreadableCheckpointError, also when no checkpoint of the folder can).
    """

    def __init__(self, checkpoint=None, stride=None, random_weights=False, depth=None, threads=None,
                 finalize=True):
        import train
        self.stride = config.EVAL_OUTPUT_STRIDE if stride is None else int(stride)
        if random_weights:
            self.checkpoint = None
            self.settings = {'overrides': {'BACKBONE_DEPTH': config.BACKBONE_DEPTH if depth is None else depth},
                             'input_size': None, 'radius': None, 'step': -1, 'warnings': []}
        else:
            self.checkpoint = find_checkpoint(checkpoint)
            self.settings = checkpoint_settings(self.checkpoint)  # the folder's config.json: any of its checkpoints
        self.warnings = list(self.settings['warnings'])
        tf = _tf()
        self.graph = tf.Graph()
        with self.graph.as_default(), train.config_overrides(self.settings['overrides']):
            self.image, self.batch_outputs = build_inference_graph(self.stride)
            self.outputs = {name: tensor[0] for name, tensor in self.batch_outputs.items()}
            self.session = tf.Session(config=_session_config(threads))
            if random_weights:
                self.session.run(tf.global_variables_initializer())
            else:
                self._restore(checkpoint)
        if finalize:  # export_model.py adds its savers to the graph
            self.graph.finalize()

    def _restore(self, asked):
        """Restores the newest readable checkpoint of the folder `asked` names (None: the folder
        find_checkpoint chose): a training may delete or be writing its newest one meanwhile, and a damaged
        one falls back to the previous with a warning. A prefix asked for by name is restored or fails."""
        import train
        source = asked if asked and os.path.isdir(asked) else (os.path.dirname(self.checkpoint) if not asked
                                                                else self.checkpoint)

        def restore(prefix):
            self.warnings += restore_polyak_weights(self.session, prefix)

        self.checkpoint, _ = train.restore_newest_readable(source, restore, self.warnings.append)
        if self.checkpoint is None:
            raise NoCheckpointError('no checkpoint left in %s.\n%s' % (source, how_to_get_a_checkpoint()))
        self.settings['step'] = _step_of(self.checkpoint)

    @property
    def depth(self):
        return self.settings['overrides'].get('BACKBONE_DEPTH', config.BACKBONE_DEPTH)


class SavedModelNetwork(_GraphNetwork):
    """export_model.py's SavedModel, through its 'serving_default' signature; stride, settings['input_size'] and
    settings['radius'] from export_info.json."""

    def __init__(self, export_dir, stride=None, threads=None):
        tf = _tf()
        import export_model
        saved_model_dir = export_model.saved_model_dir(export_dir)
        info = export_model.read_info(export_dir)
        self.stride = info['stride'] if stride is None else int(stride)
        self.settings = {'input_size': info.get('training_input_size'), 'radius': info.get('radius')}
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.session = tf.Session(config=_session_config(threads))
            meta_graph = tf.saved_model.loader.load(self.session, [tf.saved_model.tag_constants.SERVING],
                                                    saved_model_dir)
        signature = meta_graph.signature_def[export_model.SIGNATURE_NAME]
        self._bind(signature.inputs[INPUT_NAME].name,
                   {name: signature.outputs[name].name for name in OUTPUT_NAMES})


class FrozenGraphNetwork(_GraphNetwork):
    """export_model.py's frozen GraphDef (weights as constants); stride, settings['input_size'] and
    settings['radius'] from export_info.json beside it."""

    def __init__(self, export_dir, stride=None, threads=None):
        tf = _tf()
        import export_model
        info = export_model.read_info(export_dir)
        self.stride = info['stride'] if stride is None else int(stride)
        self.settings = {'input_size': info.get('training_input_size'), 'radius': info.get('radius')}
        graph_def = tf.GraphDef()
        with open(export_model.frozen_graph_path(export_dir), 'rb') as f:
            graph_def.ParseFromString(f.read())
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf.import_graph_def(graph_def, name='')
            self.session = tf.Session(config=_session_config(threads))
        self._bind(INPUT_NAME + ':0', output_tensor_names())


class GroundTruthNetwork(object):
    """Stands in for the network with the ground truth of one COCO example, encoded as target maps
    (data_generator.make_targets) at the geometry of the input it is given: what a perfect network outputs.

    eval.py's oracle mode, the tests (resizing, multi-scale merging and mapping back checked against the
    annotations) and bench/infer_bench.py (decoding as much as on a real result) run it through Predictor.
    The geometry is recognised among `longer_sides` (None: the source size) by the padded shape it gives;
    keypoints move with cv2.resize's pixel-centre mapping, masks are sampled onto the grid through the same map.

    Args:
      example: dict of data_generator.CocoPersons.load_example (replace with set_example for the next image).
      longer_sides: the longer sides the Predictor uses.
      stride: output stride (default config.EVAL_OUTPUT_STRIDE).
      radius: disk radius R of the encoded maps (default config.RADIUS); settings['radius'] tells the Predictor.
    """

    def __init__(self, example=None, longer_sides=(None,), stride=None, radius=None):
        self.example = example
        self.stride = config.EVAL_OUTPUT_STRIDE if stride is None else int(stride)
        self.settings = {'radius': radius}
        self.longer_sides = list(longer_sides)
        self.calls = []  # the Geometry of every call

    def set_example(self, example):
        self.example = example

    def _geometry(self, padded):
        for side in self.longer_sides:
            _, geometry = prepare(self.example['image'], side, self.stride)
            if geometry.padded_shape == padded.shape[:2]:
                return geometry
        raise ValueError('GroundTruthNetwork: no longer side of %s turns image %s into the padded shape %s'
                         % (self.longer_sides, self.example.get('image_id'), padded.shape[:2]))

    def __call__(self, padded):
        import transformer
        geometry = self._geometry(padded)
        self.calls.append(geometry)
        fx, fy = geometry.scale
        matrix = np.array([[fx, 0.0, 0.5 * fx - 0.5], [0.0, fy, 0.5 * fy - 0.5]])  # source px -> input px
        keypoints = np.array(self.example['keypoints'], np.float32, copy=True)
        keypoints[..., 0] = keypoints[..., 0] * fx + matrix[0, 2]
        keypoints[..., 1] = keypoints[..., 1] * fy + matrix[1, 2]
        masks = transformer.warp_masks_to_grid(self.example['masks'], matrix, geometry.padded_shape, self.stride)
        crowd = transformer.warp_masks_to_grid(self.example['crowd_mask'], matrix, geometry.padded_shape,
                                               self.stride)
        targets = data_generator.make_targets(keypoints, masks, crowd, geometry.padded_shape, self.stride,
                                              radius=self.settings['radius'])
        # The validity maps tell the decoder where a target offset is undefined (a network has none).
        names = OUTPUT_NAMES + tuple(head.validity for head in heads.OFFSET_HEADS)
        return {name: targets[name] for name in names}


# The network outputs a partial oracle can replace, by the short names eval.py --oracle-heads takes.
ORACLE_HEADS = collections.OrderedDict((('heatmaps', 'heatmaps'), ('short', 'short_offsets'),
                                        ('mid', 'mid_offsets'), ('long', 'long_offsets'),
                                        ('segmentation', 'segmentation')))


def parse_oracle_heads(text):
    """'short,mid' (any subset of ORACLE_HEADS' names, or 'all') -> tuple of output names in ORACLE_HEADS'
    order. Raises ValueError naming an unknown head."""
    names = [name.strip() for name in text.split(',') if name.strip()]
    if names == ['all']:
        names = list(ORACLE_HEADS)
    unknown = [name for name in names if name not in ORACLE_HEADS]
    if unknown or not names:
        raise ValueError('unknown head %s: --oracle-heads takes a comma-separated subset of %s, or all'
                         % (', '.join(repr(n) for n in unknown) or "''", ', '.join(ORACLE_HEADS)))
    return tuple(ORACLE_HEADS[name] for name in ORACLE_HEADS if name in names)


class PartialOracleNetwork(object):
    """A network with some of its outputs replaced by the ground truth (GroundTruthNetwork) encoded for the same
    input: the AP it reaches says what a perfect version of those heads would be worth (eval.py --oracle-heads).

    A replaced offset head comes with its validity map, as the oracle's does, so replacing all five outputs
    gives exactly the oracle's maps. The ground truth is encoded with the network's run's disk radius.

    Args:
      network: the real network (CheckpointNetwork, ...); its stride and settings are this one's.
      outputs: output names to replace (parse_oracle_heads).
      longer_sides: the longer sides the Predictor uses (the ground truth's geometry is found among them).
    """

    def __init__(self, network, outputs, longer_sides):
        self.network = network
        self.outputs = tuple(outputs)
        self.stride = network.stride
        self.settings = getattr(network, 'settings', {})
        self.truth = GroundTruthNetwork(longer_sides=longer_sides, stride=network.stride,
                                        radius=decode_radius(network))
        validity = {head.output: head.validity for head in heads.OFFSET_HEADS}
        self.replaced = self.outputs + tuple(validity[name] for name in self.outputs if name in validity)

    def set_example(self, example):
        self.truth.set_example(example)

    def __call__(self, padded):
        maps = dict(self.network(padded))
        truth = self.truth(padded)
        maps.update((name, truth[name]) for name in self.replaced)
        return maps

    def close(self):
        self.network.close()


# ----------------------------------------------------------------------------------------------------------
# The predictor
# ----------------------------------------------------------------------------------------------------------
Prediction = collections.namedtuple('Prediction', [
    'people',    # list of {'keypoints' float32 [K, 3] (x, y, score) source px, 'score', 'mask' bool [H, W],
                 # 'mask_score'}, best first
    'maps',      # decoded maps, dict name -> float32 [H', W', C] on the grid of `geometry` (debug pictures)
    'geometry',  # Geometry of the grid the maps and decoding used (the largest scale)
    'timings',   # seconds: 'prepare' (resize, pad), 'network', 'merge' (multi-scale), 'decode', 'to_source'
])


class Prediction(Prediction):
    """What Predictor.predict returns; network_seconds and decode_seconds are how every caller reports time."""
    __slots__ = ()

    @property
    def network_seconds(self):
        """Resizing, padding and the network at every scale."""
        return self.timings['prepare'] + self.timings['network']

    @property
    def decode_seconds(self):
        """Multi-scale merging, post_proc.decode and mapping back to source pixels."""
        return self.timings['merge'] + self.timings['decode'] + self.timings['to_source']


def mask_rle(mask):
    """COCO RLE of a bool [H, W] mask as JSON takes it: {'size': [H, W], 'counts': str}."""
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {'size': [int(v) for v in rle['size']], 'counts': rle['counts'].decode('ascii')}


def check_scales(scales):
    """The list of `scales` (None -> [None]: the source size); ValueError naming the bad value unless each
    is a longer side in px (an integer >= 2) or None. demo.py and eval.py check --scales with it."""
    scales = [None] if scales is None else list(scales)
    if not scales:
        raise ValueError('scales must name at least one longer side (or None for the source size)')
    for scale in scales:
        if scale is not None and (int(scale) != scale or scale < MIN_LONGER_SIDE):
            raise ValueError('scales must be longer sides in px (integers >= %d), got %r' % (MIN_LONGER_SIDE, scale))
    return scales


class Predictor(object):
    """Image -> people: resize, pad, network at every scale, merge, decode, map back.

    Args:
      network: a network (CheckpointNetwork, SavedModelNetwork, FrozenGraphNetwork or any callable with a
        `stride` attribute returning the maps of a padded uint8 image).
      scales: longer sides in px, one per scale (several: multi-scale testing); None in the list (or
        scales=None) feeds the image at its own size.
      radius: disk radius R (px) to decode with; None: the network's run's (decode_radius).
    """

    def __init__(self, network, scales=None, radius=None):
        self.network = network
        self.radius = decode_radius(network, radius)
        self.stride = int(network.stride)
        self.scales = check_scales(scales)

    def network_outputs(self, image, timings=None):
        """Maps of an RGB uint8 image at every scale, merged: (maps dict, Geometry). Adds seconds to
        timings['prepare'], ['network'], ['merge'] if given."""
        timings = {} if timings is None else timings
        maps_per_scale, geometries = [], []
        for longer_side in self.scales:
            t0 = time.perf_counter()
            padded, geometry = prepare(image, longer_side, self.stride)
            t1 = time.perf_counter()
            maps = self.network(padded)
            t2 = time.perf_counter()
            timings['prepare'] = timings.get('prepare', 0.0) + t1 - t0
            timings['network'] = timings.get('network', 0.0) + t2 - t1
            maps_per_scale.append(maps)
            geometries.append(geometry)
        t0 = time.perf_counter()
        maps, geometry = merge_scales(maps_per_scale, geometries, self.stride)
        timings['merge'] = timings.get('merge', 0.0) + time.perf_counter() - t0
        return maps, geometry

    def predict(self, image, name='image', with_masks=True):
        """People in an image.

        Args:
          image: [H, W] / [H, W, 1|3|4] array, uint8 / uint16 / float (to_rgb_uint8), RGB order.
          name: how error messages call the image.
          with_masks: False skips instance masks ('mask' None).
        Returns a Prediction (people in source px).
        Raises UnusableImageError for an image that is too small or of an unsupported kind.
        """
        image = check_size(to_rgb_uint8(image, name), name)
        timings = {}
        maps, geometry = self.network_outputs(image, timings)
        t0 = time.perf_counter()
        people = post_proc.decode(maps, self.stride, geometry.padded_shape, with_masks=with_masks,
                                  radius=self.radius)
        t1 = time.perf_counter()
        people = to_source(people, geometry)
        timings['decode'] = t1 - t0
        timings['to_source'] = time.perf_counter() - t1
        return Prediction(people, maps, geometry, timings)


def default_longer_side(network, longer_side=None, setting='DEMO_LONGER_SIDE'):
    """The input size to use: `longer_side` if given, else config.<setting> (DEMO_LONGER_SIDE for demo.py,
    EVAL_LONGER_SIDE for eval.py), else the training INPUT_SIZE of the network's checkpoint (None if unknown:
    the source size)."""
    if longer_side is not None:
        return int(longer_side)
    configured = getattr(config, setting)
    if configured is not None:
        return int(configured)
    settings = getattr(network, 'settings', None) or {}
    return settings.get('input_size')


def decode_radius(network, radius=None):
    """The disk radius R (px) to decode a network's maps with: `radius` if given (a flag), else the one its run
    trained with (settings['radius'], from config.json or export_info.json), else config.RADIUS. The Hough vote
    weights and the Expected-OKS vote window depend on R, so a model must be decoded with its own."""
    if radius is None:
        radius = (getattr(network, 'settings', None) or {}).get('radius')
    return float(config.RADIUS if radius is None else radius)


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

        with inference.atomic_output('out/x.json') as partial:
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
    import train
    try:
        os.makedirs(folder, exist_ok=True)
        train.probe_writable(folder)
    except OSError as error:
        raise OSError('%s %s cannot be written: %s' % (what, folder, error.strerror or error)) from None
    return folder


def log(message):
    """Progress and warnings go to stderr, results to stdout."""
    print(message, file=sys.stderr, flush=True)
