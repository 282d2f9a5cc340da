"""The PersonLab training targets of one sample: every head's maps on the output grid (no TensorFlow).

* `make_targets` turns keypoints and grid masks into the target maps of every head (docs/data.md#target-maps),
  on the output grid of a stride, offsets as exact float32 input pixels with a validity mask per field.
* `encode_example` (no augmentation, for the oracle) and `augment_example` (one random training sample).

Targets are never built at input resolution: masks go straight onto the output grid (transformer.py), and
every map is H' x W' = ((H - 1) // s + 1, (W - 1) // s + 1) (grid.py).
"""
import numbers

import numpy as np

import config
import grid
import heads
import settings
import transformer

TARGET_NAMES = ('image',) + tuple(heads.TARGET_CHANNELS)


def positive_int(name, value):
    """`value` as an int if it is a positive integer (numpy integers too; not bool or float), else a
    ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError('%s must be a positive integer, got %r' % (name, value))
    return int(value)



def check_target_inputs(keypoints, masks_grid, crowd_grid, cells, input_shape, stride):
    """make_targets' arrays, their shapes checked against each other and against the grid (H', W').

    Returns:
      (keypoints float32 [N, K, 3], masks_grid bool [N, H', W'], crowd_grid bool [H', W']).
    Raises:
      ValueError naming the argument that disagrees.
    """
    keypoints = np.asarray(keypoints, np.float32)
    masks_grid = np.asarray(masks_grid, bool)
    crowd_grid = np.asarray(crowd_grid, bool)
    if keypoints.ndim != 3 or keypoints.shape[1:] != (config.NUM_KEYPOINTS, 3):
        raise ValueError('make_targets: keypoints must be [N, %d, 3] (x, y, v), got shape %s'
                         % (config.NUM_KEYPOINTS, keypoints.shape))
    if masks_grid.ndim != 3:
        raise ValueError("make_targets: masks_grid must be [N, H', W'], got shape %s" % (masks_grid.shape,))
    if masks_grid.shape[0] != keypoints.shape[0]:
        raise ValueError('make_targets: masks_grid has %d persons but keypoints has %d'
                         % (masks_grid.shape[0], keypoints.shape[0]))
    grid_text = 'input_shape %s at stride %d gives a %dx%d grid' % (tuple(input_shape[:2]), stride, cells[0],
                                                                     cells[1])
    if masks_grid.shape[1:] != tuple(cells):
        raise ValueError('make_targets: masks_grid is %s but %s' % (masks_grid.shape, grid_text))
    if crowd_grid.shape != tuple(cells):
        raise ValueError('make_targets: crowd_grid is %s but %s' % (crowd_grid.shape, grid_text))
    return keypoints, masks_grid, crowd_grid


def make_targets(keypoints, masks_grid, crowd_grid, input_shape, stride, annotated=None, radius=None, options=None):
    """PersonLab target maps of one sample on the output grid (docs/data.md#target-maps).

    Cell (i, j) sits at input pixel x = (j*s, i*s). Offsets are float32 input pixels, exact up to float32
    rounding; they are 0 where their valid mask is 0.

    * heatmaps / short offsets: x within `radius` of a labelled type-k keypoint; the offset points to the
      nearest one (overlapping disks: nearest keypoint wins).
    * mid offsets, edge e = (k -> l): x in the disk of the nearest type-k keypoint, of person j; defined only if
      j also has l labelled; target y_{j,l} - x.
    * long offsets: x in exactly one person's mask, that person annotated (`annotated`), k labelled for that
      person, x not crowd; target y_{j,k} - x.
    * segmentation: union of the person masks; seg_weights: 0 on crowd; kp_weights: 0 on crowd and on the masks
      of persons that are not annotated.

    Args:
      keypoints: [N, K, 3] (x, y, v) in input pixels (v > 0 labelled; keypoints may lie outside the input).
      masks_grid: bool [N, H', W'] person masks on the grid.
      crowd_grid: bool [H', W'] crowd regions on the grid.
      input_shape: (H, W[, C]) of the input image.
      stride: output stride s.
      annotated: bool [N], persons with annotated keypoints; default: those with a labelled keypoint.
      radius: disk radius R in input px (options.RADIUS).
      options: settings.Settings; None -> config.py's.
    Returns:
      dict of float32 [H', W', C] maps named as heads.TARGET_CHANNELS.
    Raises:
      ValueError naming the argument whose shape disagrees with the others or is not a positive integer.
    """
    options = settings.resolve(options)
    radius = options.RADIUS if radius is None else radius
    stride = positive_int('stride', stride)
    if len(input_shape) < 2 or min(input_shape[:2]) < 1:
        raise ValueError('make_targets: input_shape must be (H, W[, C]) with H, W >= 1, got %s' % (input_shape,))
    rows, cols = grid.grid_shape(input_shape, stride)
    keypoints, masks_grid, crowd_grid = check_target_inputs(keypoints, masks_grid, crowd_grid, (rows, cols),
                                                            input_shape, stride)
    num_persons = keypoints.shape[0]
    is_labelled = transformer.labelled(keypoints)  # [N, K]
    points = np.where(is_labelled[..., None], keypoints[..., :2], 0.0).astype(np.float32)  # [N, K, 2]
    if annotated is None:
        annotated = is_labelled.any(axis=1)
    else:
        annotated = np.asarray(annotated, bool).ravel()
        if annotated.shape != (num_persons,):
            raise ValueError('make_targets: annotated has %d entries but keypoints has %d persons'
                             % (annotated.size, num_persons))
    grid_x = (np.arange(cols, dtype=np.float32) * stride)[None, :]  # [1, W']
    grid_y = (np.arange(rows, dtype=np.float32) * stride)[:, None]  # [H', 1]
    targets = {name: np.zeros((rows, cols, channels), np.float32) for name, channels in heads.TARGET_CHANNELS.items()}

    # Owner of each cell for every type: the person of the nearest labelled type-k keypoint within R, or -1.
    owners = np.full((config.NUM_KEYPOINTS, rows, cols), -1, np.int64)
    for k in range(config.NUM_KEYPOINTS):
        persons = np.flatnonzero(is_labelled[:, k])
        if persons.size == 0:
            continue
        dx = points[persons, k, 0][:, None, None] - grid_x[None]  # [M, 1, W']
        dy = points[persons, k, 1][:, None, None] - grid_y[None]  # [M, H', 1]
        distance2 = dx.astype(np.float64) ** 2 + dy.astype(np.float64) ** 2  # [M, H', W']
        nearest = np.argmin(distance2, axis=0)
        in_disk = np.take_along_axis(distance2, nearest[None], axis=0)[0] <= radius * radius
        owner = persons[nearest]
        owners[k] = np.where(in_disk, owner, -1)
        targets['heatmaps'][..., k] = in_disk
        targets['short_valid'][..., k] = in_disk
        targets['short_offsets'][..., 2 * k] = np.where(in_disk, points[owner, k, 0] - grid_x, 0.0)
        targets['short_offsets'][..., 2 * k + 1] = np.where(in_disk, points[owner, k, 1] - grid_y, 0.0)

    for e, (k, l) in enumerate(config.DIRECTED_EDGES if num_persons else ()):
        owner = owners[k]
        safe = np.maximum(owner, 0)
        valid = (owner >= 0) & is_labelled[safe, l]
        if not valid.any():
            continue
        targets['mid_valid'][..., e] = valid
        targets['mid_offsets'][..., 2 * e] = np.where(valid, points[safe, l, 0] - grid_x, 0.0)
        targets['mid_offsets'][..., 2 * e + 1] = np.where(valid, points[safe, l, 1] - grid_y, 0.0)

    weights = ~crowd_grid
    targets['seg_weights'][..., 0] = weights
    if num_persons == 0:
        targets['kp_weights'][..., 0] = weights
        return targets
    coverage = masks_grid.sum(axis=0)
    targets['segmentation'][..., 0] = coverage > 0
    targets['kp_weights'][..., 0] = weights & ~masks_grid[~annotated].any(axis=0)
    owner = np.argmax(masks_grid, axis=0)  # the person of a cell covered exactly once
    single = (coverage == 1) & weights & annotated[owner]
    valid = single[..., None] & is_labelled[owner]  # [H', W', K]
    offsets = points[owner] - np.stack(np.broadcast_arrays(grid_x, grid_y), axis=-1)[:, :, None, :]
    offsets = np.where(valid[..., None], offsets, 0.0)  # [H', W', K, 2]
    targets['long_valid'][:] = valid
    targets['long_offsets'][:] = offsets.reshape(rows, cols, 2 * config.NUM_KEYPOINTS)
    return targets

def encode_example(example, stride, options=None):
    """Targets of an example WITHOUT augmentation (eval.py's oracle mode).

    The image is padded bottom/right (options.PAD_VALUE) to the next n*s + 1 size (grid.pad_to_grid);
    keypoints are unchanged (input pixels = source pixels) and persons with a labelled keypoint count as
    annotated.

    Args:
      example: dict from CocoPersons.load_example.
      stride: output stride.
      options: settings.Settings; None -> config.py's.
    Returns:
      dict 'image' uint8 [H_pad, W_pad, 3] and the maps of make_targets.
    """
    options = settings.resolve(options)
    padded = grid.pad_to_grid(example['image'], stride, options=options)
    out_height, out_width = padded.shape[:2]
    identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    masks = transformer.warp_masks_to_grid(example['masks'], identity, (out_height, out_width), stride)
    crowd = transformer.warp_masks_to_grid(example['crowd_mask'], identity, (out_height, out_width), stride)
    targets = make_targets(example['keypoints'], masks, crowd, padded.shape, stride, options=options)
    targets['image'] = padded
    return targets


def augment_example(example, rng, input_size=None, stride=None, options=None):
    """One augmented training sample: a random transform (transformer.random_affine) and its targets.

    Persons keep their "annotated" status from the source annotation: a person whose keypoints all left the
    crop still counts as annotated (its visible pixels rightly hold no keypoint), one that never had a
    labelled keypoint stays an ignore region for the keypoint losses.

    Args:
      example: dict from CocoPersons.load_example.
      rng: numpy Generator or int seed; the same seed gives the same sample.
      input_size: side of the square input (options.INPUT_SIZE), ideally n*stride + 1 (SampleGenerator
        requires it: grid.check_input_size).
      stride: output stride (options.TRAIN_OUTPUT_STRIDE).
      options: settings.Settings of the augmentation, radius and defaults; None -> config.py's.
    Returns:
      dict 'image' uint8 [S, S, 3] and the maps of make_targets on the ((S-1)//s + 1)^2 grid.
    """
    options = settings.resolve(options)
    input_size = options.INPUT_SIZE if input_size is None else input_size
    stride = options.TRAIN_OUTPUT_STRIDE if stride is None else stride
    output_shape = (input_size, input_size)
    matrix, flip = transformer.random_affine(rng, example['image'].shape, output_shape, options=options)
    warped = transformer.apply_affine(example, matrix, flip, output_shape, stride, options=options)
    annotated = transformer.labelled(example['keypoints']).any(axis=1)
    targets = make_targets(warped['keypoints'], warped['masks'], warped['crowd_mask'], output_shape, stride,
                           annotated=annotated, options=options)
    targets['image'] = warped['image']
    return targets


def sample_layout(input_size, stride):
    """[(name, shape, dtype)] of one sample of a square input: the image and the maps of heads.TARGET_CHANNELS."""
    rows, cols = grid.grid_shape((input_size, input_size), stride)
    layout = [('image', (input_size, input_size, 3), np.dtype(np.uint8))]
    return layout + [(name, (rows, cols, channels), np.dtype(np.float32))
                     for name, channels in heads.TARGET_CHANNELS.items()]

