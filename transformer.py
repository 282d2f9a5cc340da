"""Affine augmentation: random scale, translation, left-right flip and optional rotation.

One 2x3 matrix maps SOURCE image points (x, y) to points of the augmented INPUT image (the crop the network
sees), in the project's convention (config.py: input pixels, pixel centres at integer coordinates). The same
matrix drives everything, so image, masks and keypoints can never disagree:

* the image is resampled with it (bilinear, cv2.warpAffine), after an area-averaging shrink where the matrix
  shrinks (config.AUGMENT_AREA_SHRINK): inference shrinks images with area averaging, so training must see
  the same unaliased pixels;
* masks are sampled straight onto the OUTPUT GRID of a stride (nearest): grid cell (row i, col j) sits at input
  pixel (j*s, i*s), whose source point is the inverse matrix applied to it; no full-resolution warped mask is
  ever built;
* keypoints go through the matrix in float64 (exact float arithmetic, no rounding to pixels); a flip also swaps
  left/right keypoint types (config.FLIP_PERMUTATION), and keypoints that leave the crop become unlabelled.

Random parameters come from a numpy Generator, so a seed fixes the transform.
"""
import cv2
import numpy as np

import config
import settings
from grid import grid_shape  # transformer.grid_shape: the grid rule lives in grid.py


def affine_matrix(image_shape, output_shape, scale, angle=0.0, translation=(0.0, 0.0), flip=False):
    """The 2x3 matrix of one augmentation.

    The source image centre goes to the output centre plus `translation`; around it the image is scaled by
    `scale` and rotated by `angle`; a flip then mirrors the output left-right (x -> W_out - 1 - x).

    Args:
      image_shape: (H, W[, C]) of the source image.
      output_shape: (H_out, W_out[, C]) of the augmented image.
      scale: output pixels per source pixel.
      angle: rotation in degrees, counter-clockwise as seen on screen.
      translation: (tx, ty) shift of the image centre in output pixels.
      flip: mirror left-right after the rest.
    Returns:
      float64 [2, 3] matrix A with [x_out, y_out] = A @ [x, y, 1].
    """
    height, width = image_shape[:2]
    out_height, out_width = output_shape[:2]
    theta = np.deg2rad(angle)
    # Image rows grow downwards, so a counter-clockwise turn on screen is a clockwise one in (x, y).
    cos, sin = scale * np.cos(theta), scale * np.sin(theta)
    linear = np.array([[cos, sin], [-sin, cos]])
    source_centre = np.array([(width - 1) / 2.0, (height - 1) / 2.0])
    output_centre = np.array([(out_width - 1) / 2.0, (out_height - 1) / 2.0]) + np.asarray(translation, float)
    matrix = np.concatenate([linear, (output_centre - linear @ source_centre)[:, None]], axis=1)
    if flip:
        mirror = np.array([[-1.0, 0.0, out_width - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        matrix = (mirror @ np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
    return matrix


def random_affine(rng, image_shape, output_shape, scale_range=None, max_translation=None,
                  flip_probability=None, rotation_degrees=None, options=None):
    """Draws one augmentation (the ranges of `options` unless overridden).

    The image is first fitted into the output (its longer side onto the output side), then scaled by a factor
    uniform in `scale_range`, its centre shifted by up to +-`max_translation` of the output size per axis,
    rotated uniformly in +-`rotation_degrees` (0: no rotation) and flipped with `flip_probability`.
    The random numbers are always drawn in the same order, so a seed gives the same transform whatever the
    options.

    Args:
      rng: numpy Generator (or an int seed).
      image_shape: (H, W[, C]) of the source image.
      output_shape: (H_out, W_out[, C]) of the augmented image.
      scale_range: (min, max) random factor on top of the fit (options.SCALE_RANGE).
      max_translation: max shift of the centre, fraction of the output side (options.MAX_TRANSLATION).
      flip_probability: probability of a left-right flip (options.FLIP_PROBABILITY).
      rotation_degrees: max rotation in degrees, 0 for none (options.ROTATION_DEGREES).
      options: settings.Settings; None -> config.py's.
    Returns:
      (matrix float64 [2, 3] source px -> output px, flip bool).
    """
    options = settings.resolve(options)
    rng = np.random.default_rng(rng)
    scale_range = options.SCALE_RANGE if scale_range is None else scale_range
    max_translation = options.MAX_TRANSLATION if max_translation is None else max_translation
    flip_probability = options.FLIP_PROBABILITY if flip_probability is None else flip_probability
    rotation_degrees = options.ROTATION_DEGREES if rotation_degrees is None else rotation_degrees
    height, width = image_shape[:2]
    out_height, out_width = output_shape[:2]
    factor = rng.uniform(scale_range[0], scale_range[1])
    shift = rng.uniform(-max_translation, max_translation, size=2) * np.array([out_width, out_height])
    flip = bool(rng.uniform() < flip_probability)
    angle = rng.uniform(-rotation_degrees, rotation_degrees)
    fit = min(out_height / float(max(height, 1)), out_width / float(max(width, 1)))
    return affine_matrix(image_shape, output_shape, fit * factor, angle, shift, flip), flip


def invert_affine(matrix):
    """Inverse of a 2x3 affine matrix (float64 [2, 3])."""
    return cv2.invertAffineTransform(np.asarray(matrix, np.float64))


def area_shrink(image, matrix):
    """Shrinks the image by the matrix's scale with area averaging (cv2.INTER_AREA, as inference.py resizes)
    when that scale is below 1: bilinear sampling alone would alias, and the network would train on pixels it
    never sees at test time.

    Args:
      image: uint8 [H, W, 3]; matrix: [2, 3] source -> output.
    Returns:
      (image, matrix): the shrunk image [h, w, 3] and the matrix from its pixels to the output, or the inputs
      unchanged if the matrix does not shrink.
    """
    matrix = np.asarray(matrix, np.float64)
    scale = np.sqrt(abs(np.linalg.det(matrix[:, :2])))  # output px per source px; rotation and flip keep it
    height, width = image.shape[:2]
    size = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
    if scale >= 1.0 or size == (width, height):
        return image, matrix
    fx, fy = size[0] / float(width), size[1] / float(height)
    # Pixel centres: x_small = (x + 0.5) * f - 0.5, as cv2.resize maps them (inference.py, "Geometry").
    to_source = np.array([[1.0 / fx, 0.0, 0.5 / fx - 0.5], [0.0, 1.0 / fy, 0.5 / fy - 0.5], [0.0, 0.0, 1.0]])
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), matrix @ to_source


def warp_image(image, matrix, output_shape, pad_value=None, shrink_by_area=None, options=None):
    """Resamples an image with the matrix (bilinear); outside the source gets `pad_value` (options.PAD_VALUE).

    Args:
      image: uint8 [H, W, 3].
      matrix: [2, 3] source -> output.
      output_shape: (H_out, W_out[, C]).
      pad_value: RGB 0..255 of the area outside the source.
      shrink_by_area: shrink with area averaging first where the matrix shrinks (area_shrink); default
        options.AUGMENT_AREA_SHRINK.
      options: settings.Settings; None -> config.py's.
    Returns:
      uint8 [H_out, W_out, 3].
    """
    options = settings.resolve(options)
    pad_value = options.PAD_VALUE if pad_value is None else pad_value
    shrink_by_area = options.AUGMENT_AREA_SHRINK if shrink_by_area is None else shrink_by_area
    matrix = np.asarray(matrix, np.float64)
    if shrink_by_area:
        image, matrix = area_shrink(image, matrix)
    out_height, out_width = output_shape[:2]
    return cv2.warpAffine(image, matrix, (out_width, out_height), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=tuple(float(v) for v in pad_value))


def grid_source_points(matrix, output_shape, stride):
    """Source pixel (nearest) under every output-grid cell.

    Args:
      matrix: [2, 3] source -> output.
      output_shape: (H_out, W_out) of the augmented image.
      stride: output stride s; cell (i, j) sits at output pixel (j*s, i*s).
    Returns:
      (rows int64 [H', W'], cols int64 [H', W']) source pixel indices (may lie outside the source image).
    """
    inverse = invert_affine(matrix)
    out_rows, out_cols = grid_shape(output_shape, stride)
    xs = np.arange(out_cols, dtype=np.float64) * stride
    ys = np.arange(out_rows, dtype=np.float64) * stride
    source_x = inverse[0, 0] * xs[None, :] + inverse[0, 1] * ys[:, None] + inverse[0, 2]
    source_y = inverse[1, 0] * xs[None, :] + inverse[1, 1] * ys[:, None] + inverse[1, 2]
    # Nearest pixel centre; floor(v + 0.5) rounds halves the same way everywhere (np.round would not).
    return np.floor(source_y + 0.5).astype(np.int64), np.floor(source_x + 0.5).astype(np.int64)


def warp_masks_to_grid(masks, matrix, output_shape, stride):
    """Samples masks straight onto the output grid (nearest source pixel; outside the source -> False).

    Args:
      masks: bool [N, H, W] or [H, W] on the source image.
      matrix: [2, 3] source -> output.
      output_shape: (H_out, W_out) of the augmented image.
      stride: output stride.
    Returns:
      bool [N, H', W'] or [H', W'].
    """
    masks = np.asarray(masks, dtype=bool)
    height, width = masks.shape[-2:]
    rows, cols = grid_source_points(matrix, output_shape, stride)
    if height == 0 or width == 0:
        return np.zeros(masks.shape[:-2] + rows.shape, bool)
    inside = (rows >= 0) & (rows < height) & (cols >= 0) & (cols < width)
    rows, cols = np.clip(rows, 0, height - 1), np.clip(cols, 0, width - 1)
    return masks[..., rows, cols] & inside


def labelled(keypoints):
    """bool [...]: which keypoints [..., 3] (x, y, v) are labelled (v > 0 and finite coordinates)."""
    keypoints = np.asarray(keypoints)
    return (keypoints[..., 2] > 0) & np.isfinite(keypoints[..., :3]).all(axis=-1)


def warp_keypoints(keypoints, matrix, flip, output_shape):
    """Carries keypoints through the matrix (float64, no rounding).

    A flip swaps left/right types: keypoint k of the result is keypoint config.FLIP_PERMUTATION[k] of the
    input. Keypoints that land outside the crop, i.e. outside [0, W_out - 1] x [0, H_out - 1] (the span of the
    pixel centres, which the output grid covers), become unlabelled. Unlabelled keypoints are (0, 0, 0).

    Args:
      keypoints: [N, K, 3] (x, y, v) in source pixels, COCO visibility v (> 0 labelled).
      matrix: [2, 3] source -> output.
      flip: whether `matrix` contains a flip (swaps types).
      output_shape: (H_out, W_out) of the augmented image.
    Returns:
      float32 [N, K, 3].
    """
    keypoints = np.asarray(keypoints, np.float64).reshape(-1, config.NUM_KEYPOINTS, 3)
    valid = labelled(keypoints)
    xy = np.where(valid[..., None], keypoints[..., :2], 0.0)
    matrix = np.asarray(matrix, np.float64)
    moved = xy @ matrix[:, :2].T + matrix[:, 2]
    out_height, out_width = output_shape[:2]
    inside = ((moved[..., 0] >= 0) & (moved[..., 0] <= out_width - 1) &
              (moved[..., 1] >= 0) & (moved[..., 1] <= out_height - 1))
    valid &= inside
    result = np.concatenate([moved, keypoints[..., 2:]], axis=-1)
    result = np.where(valid[..., None], result, 0.0)
    if flip:
        result = result[:, list(config.FLIP_PERMUTATION)]
    return result.astype(np.float32)


def apply_affine(example, matrix, flip, output_shape, stride, options=None):
    """Applies one transform to an example of data_generator.CocoPersons.load_example.

    Args:
      example: dict with 'image' uint8 [H, W, 3], 'keypoints' [N, K, 3], 'masks' bool [N, H, W],
        'crowd_mask' bool [H, W].
      matrix, flip: from random_affine (or affine_matrix).
      output_shape: (H_out, W_out) of the augmented image.
      stride: output stride of the mask grids.
      options: settings.Settings of warp_image; None -> config.py's.
    Returns:
      dict 'image' uint8 [H_out, W_out, 3], 'keypoints' float32 [N, K, 3] (output px), 'masks' bool [N, H', W'],
      'crowd_mask' bool [H', W'] (masks on the output grid).
    """
    return {
        'image': warp_image(example['image'], matrix, output_shape, options=options),
        'keypoints': warp_keypoints(example['keypoints'], matrix, flip, output_shape),
        'masks': warp_masks_to_grid(example['masks'], matrix, output_shape, stride),
        'crowd_mask': warp_masks_to_grid(example['crowd_mask'], matrix, output_shape, stride),
    }
