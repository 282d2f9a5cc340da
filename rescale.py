"""The source image <-> network input geometry of inference, and multi-scale merging.

  source image, H x W
    -> resized so its longer side is L px (cv2.resize; area averaging when shrinking)
    -> padded bottom/right with config.PAD_VALUE to n*s + 1 px, so the output grid meets the input corners
    ... the network ...
    -> with several scales: the maps of each scale resampled onto the output grid of the largest one,
       offsets rescaled to its pixels, then averaged (offsets weighted by their heatmap / segmentation)
    -> decoded keypoints and masks mapped back to source-image pixels.

cv2.resize maps pixel centres (integer coordinates, config.py) as x_in = (x + 0.5) * f_x - 0.5 with
f_x = W_in / W (likewise y), so decoded points map back exactly through x = (x_in + 0.5) / f_x - 0.5; padding
adds pixels after the image and moves nothing. `Geometry` records one image's sizes and factors.
"""
import collections

import cv2
import numpy as np

import config
import grid
import heads
import post_proc

MIN_LONGER_SIDE = 2  # px: the smallest input the resize takes (demo.py and eval.py check their sizes with it)


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
    padded = grid.pad_to_grid(resized, stride)
    return padded, Geometry(tuple(image.shape[:2]), tuple(resized.shape[:2]), tuple(padded.shape[:2]), scale)



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
        if name in heads.OFFSET_OUTPUTS:  # maps in input px: rescaled between scales
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
