"""PersonLab decoding: network outputs -> people with keypoints, scores and instance masks.

Follows the paper's decoding (docs/method.md, from #hough-voting-eq-1 to #instance-segmentation):

1. Hough voting (Eq. 1): every output-grid cell x_i casts its heatmap probability p_k(x_i) as a vote at
   x_i + S_k(x_i), splatted bilinearly onto a Hough grid of hough_cell(R) input pixels.
2. Local maxima of every h_k above config.PEAK_THRESHOLD form ONE queue over all keypoint types.
3. Greedy decoding in queue order: a seed within r = config.NMS_RADIUS of the same-type keypoint of a person
   already decoded is rejected; otherwise it starts a person, whose other keypoints are reached breadth-first
   over the kinematic tree with the (refined) mid-range offsets, y_l = y_k + M_{k,l}(y_k), each landing
   settled on its Hough votes.  A keypoint the tree walk misses (the walk crossed an unlabelled or occluded
   keypoint) is searched again from every keypoint that was found, through the long-range offsets
   (y_l = y_k + L_l(y_k)) and the mid-range offsets of found neighbours; candidates that agree win
   (config.LONG_RANGE_RESCUE).  Without it a person whose tree is cut by a missing keypoint splits into
   fragments; fragments that still appear merge into their person (config.MERGE_FRAGMENTS), and no keypoint
   is claimed twice (config.RESOLVE_CONFLICTS).
4. Keypoint scores: Expected-OKS, integrated over the Hough votes themselves; instance score: mean keypoint
   score then keypoint-level soft-NMS (or hard OKS-NMS, config.INSTANCE_SCORING).
5. Instance masks: pixels with p_S > t_S join the person j that minimises the p_k-weighted,
   lambda_j-normalised distance of their long-range embedding x + L_k(x) to y_{j,k}, if it is <= t.

Target maps (the oracle) may come with their validity maps ('short_valid', 'mid_valid', 'long_valid'): offsets
then count only where their target is defined.  A network has none, and every offset counts.

The decoder never loops over pixels in Python: Hough voting is one np.bincount, seeds are decoded in
vectorised batches (all seeds of a batch walk their trees together), masks are assigned on the output grid
and upsampled once.  Work is bounded by config.MAX_SEEDS and config.MAX_PEOPLE, so even saturated maps end.

Units: positions and offsets in input pixels, (x, y), float32; maps on the output grid of `stride`
(cell (i, j) at input pixel (x=j*stride, y=i*stride)), see config.py.
"""
import math
import time

import cv2
import numpy as np

import config
import heads
import settings
import transformer

CLOCK = time.perf_counter  # timer of decode()'s `timings` (bench/decode_bench.py measures CPU time with it)
KAPPA = 2.0 * np.asarray(config.OKS_SIGMAS, np.float32)  # kappa_k: pycocotools' OKS uses (2 sigma_k)^2
grid_shape = transformer.grid_shape  # output-grid (H', W') of an input; kept here for callers of post_proc
# Added to the four bilinear corner weights in Sampler.land: a point exactly on a cell still lets the other
# corners vote when that cell is invalid (weight 0 otherwise), without changing any real weighting.
TIE_WEIGHT = 1e-6
# mask_distance works on all keypoints at once up to this many (point, person, keypoint) terms (fewer numpy
# calls), one keypoint at a time beyond (no large temporaries): an implementation choice, same result.
MASK_DISTANCE_BLOCK = 1 << 16
# Offsets are clipped to +-this many input px before decoding: far beyond any image, so a real offset is never
# changed, yet small enough that sums and squares of positions stay finite in float32 (an offset near the
# float32 maximum would overflow to inf, then NaN, then a garbage integer index).
OFFSET_LIMIT = float(1 << 20)


# ----------------------------------------------------------------------------------------------------------
# Input checks
# ----------------------------------------------------------------------------------------------------------
def _checked_map(outputs, name, shape, what):
    """outputs[name] as a C-contiguous float32 array of `shape`; ValueError naming it if mis-shaped or not
    finite (`what` describes the input size and stride for the message)."""
    array = np.asarray(outputs[name], dtype=np.float32)
    if array.shape != shape:
        raise ValueError('outputs[%r] has shape %s; %s needs %s' % (name, array.shape, what, shape))
    if not np.isfinite(array).all():
        raise ValueError('outputs[%r] holds %d NaN or infinite values' % (
            name, int(np.count_nonzero(~np.isfinite(array)))))
    return np.ascontiguousarray(array)


def check_outputs(outputs, stride, image_shape):
    """Validates decode()'s inputs and returns the maps as float32 arrays.

    Raises ValueError naming the bad input: a missing output, a shape that does not match the input size
    and stride, NaN or infinite values, or probabilities (and validity maps) outside [0, 1] (logits passed
    by mistake).  Offsets beyond +-OFFSET_LIMIT px are clipped to it (any finite offset decodes).
    Returns (maps dict name -> float32 [H', W', C], validity maps included if given, (H, W)).
    """
    if isinstance(stride, bool) or not isinstance(stride, (int, np.integer)) or stride < 1:
        raise ValueError('stride must be a positive integer, got %r' % (stride,))
    stride = int(stride)
    try:
        height, width = int(image_shape[0]), int(image_shape[1])
    except (TypeError, ValueError, IndexError):
        height = width = 0
    if height < 1 or width < 1:
        raise ValueError('image_shape must be (H, W[, C]) with H, W >= 1, got %r' % (image_shape,))
    rows, cols = grid_shape((height, width), stride)
    if not hasattr(outputs, 'keys'):
        raise ValueError('outputs must be a dict of numpy arrays, got %s' % type(outputs).__name__)
    what = 'an input of %dx%d at stride %d' % (height, width, stride)
    maps = {}
    for head in heads.HEADS:
        if head.output not in outputs:
            raise ValueError('outputs has no %r (needs %s)' % (head.output, ', '.join(heads.OUTPUTS)))
        maps[head.output] = _checked_map(outputs, head.output, (rows, cols, head.channels), what)
    # Optional validity maps of the offset heads: target maps (the oracle) hold them, offsets of a field then
    # count only where its map is > 0; a network has none, and every offset counts.
    for head in heads.OFFSET_HEADS:
        if head.validity in outputs:
            maps[head.validity] = _checked_map(outputs, head.validity, (rows, cols, head.validity_channels), what)
    validity = tuple(head.validity for head in heads.OFFSET_HEADS if head.validity in maps)
    for name in heads.PROBABILITY_OUTPUTS + validity:
        array = maps[name]
        if array.size and (array.min() < 0.0 or array.max() > 1.0):
            raise ValueError('outputs[%r] must hold values in [0, 1], found [%g, %g] (logits?)' % (
                name, array.min(), array.max()))
    for name in maps:
        array = maps[name]
        if name.endswith('_offsets') and array.size and (array.min() < -OFFSET_LIMIT
                                                         or array.max() > OFFSET_LIMIT):
            maps[name] = np.clip(array, -OFFSET_LIMIT, OFFSET_LIMIT)  # a copy: the caller's maps stay as they were
    return maps, (height, width)


# ----------------------------------------------------------------------------------------------------------
# Bilinear sampling of grid maps at input-pixel points
# ----------------------------------------------------------------------------------------------------------
class Sampler(object):
    """Bilinear sampling of a map [h, w, c] whose cell (i, j) sits at input pixel (j * step, i * step).

    Points outside the grid are clamped to its border, so no position can index out of range.  A map of one
    row or column is padded by replication so every point has four corner cells.  `valid` (optional, [h, w, F]
    for the F two-channel fields of an offset map) weighs each cell's offsets in land(): 0 where undefined.
    """

    def __init__(self, array, step, valid=None, options=None):
        self.array = self._padded(array)
        self.flat = self.array.reshape(-1)
        self.height, self.width, self.channels = self.array.shape
        self.valid = None if valid is None else self._padded(valid).reshape(-1)
        self.min_valid = np.float32(settings.resolve(options).LANDING_MIN_VALID)
        self.inverse = np.float32(1.0 / step)
        self.step = np.float32(step)
        self.row = self.width * self.channels  # flat distance between vertically adjacent cells
        self.corner_cells = np.array([0, 1, self.width, self.width + 1], np.int64)  # relative to the top-left
        self.corner_offsets = self.corner_cells * self.channels
        self.corner_dx = np.array([0, step, 0, step], np.float32)
        self.corner_dy = np.array([0, 0, step, step], np.float32)

    @staticmethod
    def _padded(array):
        array = np.asarray(array, dtype=np.float32)
        if array.shape[0] == 1 or array.shape[1] == 1:
            array = np.pad(array, ((0, array.shape[0] == 1), (0, array.shape[1] == 1), (0, 0)), mode='edge')
        return np.ascontiguousarray(array)

    def corners(self, x, y):
        """(flat index [N] of channel 0 at the top-left corner cell, fx [N], fy [N]) of points (x, y)."""
        # np.minimum/np.maximum, not np.clip: the same, without np.clip's per-call overhead on this hot path.
        gx = np.minimum(np.maximum(np.asarray(x, np.float32) * self.inverse, 0.0), np.float32(self.width - 1))
        gy = np.minimum(np.maximum(np.asarray(y, np.float32) * self.inverse, 0.0), np.float32(self.height - 1))
        x0 = np.minimum(gx.astype(np.int64), self.width - 2)  # on the last column: fx = 1 from column w-2
        y0 = np.minimum(gy.astype(np.int64), self.height - 2)
        return (y0 * self.width + x0) * self.channels, gx - x0, gy - y0

    def cell_positions(self, cell):
        """Input-pixel (x, y) of flat cell indices (any shape): two float32 arrays."""
        return ((cell % self.width) * self.step).astype(np.float32), ((cell // self.width) * self.step).astype(np.float32)

    def validity(self, cell, field):
        """Weights of `field` at flat cells `cell` (broadcasting), 1 everywhere without a validity map."""
        if self.valid is None:
            return np.ones(np.broadcast(cell, field).shape, np.float32)
        return self.valid[cell * (self.channels // 2) + field]

    def _blend(self, index, fx, fy):
        flat, c, row = self.flat, self.channels, self.row
        top = flat[index]
        top = top + fx * (flat[index + c] - top)
        bottom = flat[index + row]
        bottom = bottom + fx * (flat[index + row + c] - bottom)
        return top + fy * (bottom - top)

    def sample(self, corners, channel):
        """Values [N] at the points of `corners` in `channel` (int or int array [N])."""
        base, fx, fy = corners
        return self._blend(base + channel, fx, fy)

    def land(self, x, y, field, tolerance):
        """Where the offsets of `field` (int array [N]) around points (x, y) send them: float32 [N, 2].

        Each of the four corner cells votes for its own position plus its offset, with its bilinear weight
        times its validity; the average is taken over the corners that agree (within `tolerance` px) with the
        heaviest one.  Plain bilinear interpolation of offsets would land between two targets wherever
        neighbouring cells point to different keypoints (the edge of a disk, two people side by side).
        nan where no corner votes (all invalid).
        """
        base, fx, fy = self.corners(x, y)
        corner = (base + 2 * field)[:, None] + self.corner_offsets  # [N, 4]
        values = self.flat[corner[..., None] + np.arange(2)]  # [N, 4, 2]
        cell_x, cell_y = self.cell_positions(base // self.channels)
        land_x = values[..., 0] + cell_x[:, None] + self.corner_dx
        land_y = values[..., 1] + cell_y[:, None] + self.corner_dy
        gx, gy = 1 - fx, 1 - fy
        weight = np.empty((len(base), 4), np.float32)
        weight[:, 0] = gx * gy
        weight[:, 1] = fx * gy
        weight[:, 2] = gx * fy
        weight[:, 3] = fx * fy
        weight += np.float32(TIE_WEIGHT)
        if self.valid is not None:
            valid = self.validity((base // self.channels)[:, None] + self.corner_cells, np.asarray(field)[:, None])
            # Defined where the validity map, read bilinearly, reaches config.LANDING_MIN_VALID: a point whose
            # own cells are undefined must not borrow the offsets of a far corner (another person's disk).
            weight *= valid * ((weight * valid).sum(axis=1, keepdims=True) >= self.min_valid)
        anchor = np.argmax(weight, axis=1)
        rows = np.arange(len(anchor))
        dx = land_x - land_x[rows, anchor][:, None]
        dy = land_y - land_y[rows, anchor][:, None]
        weight *= dx * dx + dy * dy <= tolerance * tolerance
        total = weight.sum(axis=1)
        landing = np.empty((len(base), 2), np.float32)
        with np.errstate(invalid='ignore', divide='ignore'):  # no voting corner: nan, the caller's "undefined"
            landing[:, 0] = (weight * land_x).sum(axis=1) / total
            landing[:, 1] = (weight * land_y).sum(axis=1) / total
        return landing

    def __call__(self, x, y, channel):
        return self.sample(self.corners(x, y), channel)


class Maps(object):
    """The decoder's view of one image: samplers of every output (offsets with their validity maps, if
    given) and of the Hough maps."""

    def __init__(self, maps, stride, hough, hough_stride, radius, support_radius=None, options=None):
        options = settings.resolve(options)
        self.options = options  # what the stages that read these maps decode with
        self.outputs = maps
        self.stride = stride
        self.hough_stride = hough_stride
        self.heatmaps = Sampler(maps['heatmaps'], stride, options=options)
        self.short = Sampler(maps['short_offsets'], stride, maps.get('short_valid'), options=options)
        self.mid = Sampler(maps['mid_offsets'], stride, maps.get('mid_valid'), options=options)
        self.long = Sampler(maps['long_offsets'], stride, maps.get('long_valid'), options=options)
        self.segmentation = Sampler(maps['segmentation'], stride, options=options)
        self.hough = hough
        # Hough mass within ~support_radius of each cell: how much of a keypoint's vote lands at a point.
        support_radius = options.KEYPOINT_SUPPORT_RADIUS if support_radius is None else support_radius
        half = max(int(round(support_radius / hough_stride)), 1)
        self.hough_mass = Sampler(cv2.boxFilter(hough, -1, (2 * half + 1, 2 * half + 1), normalize=False,
                                                borderType=cv2.BORDER_CONSTANT).reshape(hough.shape), hough_stride,
                                 options=options)
        # Flat offsets of the Hough cells of the centroid window around a cell (a padded border of the
        # window's half width keeps them in range).
        half = options.CENTROID_WINDOW // 2
        self.hough_pad = half
        self.hough_padded = np.pad(hough, ((half, half), (half, half), (0, 0))).reshape(-1)
        padded_row = (hough.shape[1] + 2 * half) * hough.shape[2]
        side = np.arange(-half, half + 1)
        self.window_rows = np.repeat(side, len(side))
        self.window_cols = np.tile(side, len(side))
        self.window = (self.window_rows * padded_row + self.window_cols * hough.shape[2]).astype(np.int64)
        self.radius = radius
        self.landing_tolerance = options.LANDING_TOLERANCE
        self.refine_max_shift = options.REFINE_MAX_SHIFT

    def offset(self, sampler, x, y, field):
        """Offset (dx, dy) of `field` (int array [N]) at points (x, y), from the corners' agreeing votes
        (Sampler.land, tolerance config.LANDING_TOLERANCE): two arrays [N], nan where undefined."""
        x = np.asarray(x, np.float32)
        y = np.asarray(y, np.float32)
        landing = sampler.land(x, y, np.asarray(field), self.landing_tolerance)
        return landing[:, 0] - x, landing[:, 1] - y

    def refine(self, x, y, kind, steps):
        """y <- y + S_k(y), `steps` times.  Moves longer than config.REFINE_MAX_SHIFT are refused: that would
        re-target the point to a neighbouring keypoint of the same type, not refine it."""
        limit2 = self.refine_max_shift ** 2
        for _ in range(steps):
            dx, dy = self.offset(self.short, x, y, kind)
            ok = dx * dx + dy * dy <= limit2  # False for nan (no valid corner): the point stays
            x = np.where(ok, x + dx, x)
            y = np.where(ok, y + dy, y)
        return x, y

    def support(self, x, y, kind):
        """p_k(y) times the Hough mass of type k within ~support_radius of y: [N], 1 for an ideal keypoint,
        ~0 off one (a point that does not sit on a keypoint is not one, even near another)."""
        return self.heatmaps(x, y, kind) * self.hough_mass(x, y, kind)


# ----------------------------------------------------------------------------------------------------------
# 1-2. Hough voting and seeds
# ----------------------------------------------------------------------------------------------------------
def hough_cell(radius, options=None):
    """Side in input px of the Hough cells for disks of radius `radius` px: R / config.HOUGH_CELLS_PER_RADIUS,
    rounded, at least 1. The offsets' precision scales with the disk they were trained on, so does the grid
    that collects their votes (4 px at R = 32, 2 px at R = 16)."""
    options = settings.resolve(options)
    return max(1, int(round(float(radius) / options.HOUGH_CELLS_PER_RADIUS)))


def hough_voting(heatmaps, short_offsets, stride, hough_stride=None, vote_threshold=None, radius=None,
                 options=None):
    """Hough maps h_k (Eq. 1) on a grid of `hough_stride` input pixels.

    Args:
      heatmaps: float32 [H', W', K] probabilities p_k on the output grid of `stride`.
      short_offsets: float32 [H', W', 2K] short-range offsets S_k, input px.
      stride: output stride of the maps.
      hough_stride: Hough cell side in input px (default hough_cell(radius)).
      vote_threshold: cells with p_k below this do not vote (default config.HOUGH_VOTE_THRESHOLD).
      radius: disk radius R in px (default config.RADIUS).
    Returns:
      float32 [Hh, Wh, K]; cell (a, b) at input pixel (x=b*hough_stride, y=a*hough_stride), covering the
      grid's extent.  A vote of cell x_i weighs p_k(x_i) * stride^2 / (pi R^2): a keypoint whose whole disk
      votes for it gathers a mass of 1, so values read as "fraction of a keypoint" at any resolution.
    """
    options = settings.resolve(options)
    vote_threshold = options.HOUGH_VOTE_THRESHOLD if vote_threshold is None else vote_threshold
    radius = options.RADIUS if radius is None else radius
    hough_stride = int(hough_cell(radius, options) if hough_stride is None else hough_stride)
    rows, cols, kinds = heatmaps.shape
    hrows = (rows - 1) * stride // hough_stride + 1
    hcols = (cols - 1) * stride // hough_stride + 1
    # Votes: one per (cell, kind), flat index cell * K + k; offsets of that pair at [2 * index, 2 * index + 1].
    # (In-place arithmetic and preallocated index/weight arrays: the votes are the decoder's largest arrays.)
    flat = heatmaps.reshape(-1)
    voters = np.flatnonzero(flat > vote_threshold)
    n = len(voters)
    cell = voters // kinds
    kind = voters - cell * kinds
    i, j = np.divmod(cell, cols)
    pairs = short_offsets.reshape(-1, 2)
    inverse = np.float32(1.0 / hough_stride)
    # Landings in Hough cells; votes beyond the grid are clamped just outside it, into a border of padding
    # cells cut off at the end.
    u = pairs[voters, 0]
    u += j.astype(np.float32) * np.float32(stride)
    u *= inverse
    np.clip(u, -1, hcols, out=u)
    v = pairs[voters, 1]
    v += i.astype(np.float32) * np.float32(stride)
    v *= inverse
    np.clip(v, -1, hrows, out=v)
    u0 = np.floor(u)
    v0 = np.floor(v)
    u -= u0  # now the bilinear fractions
    v -= v0
    padded_cols = hcols + 3
    size = (hrows + 3) * padded_cols * kinds
    base = ((v0.astype(np.int64) + 1) * padded_cols + u0.astype(np.int64) + 1) * kinds + kind
    weight = flat[voters] * np.float32(stride * stride / (math.pi * radius * radius))
    right = weight * u
    left = weight - right
    # One bincount over the four bilinear corners: a single pass over the (large) Hough array.
    index = np.empty(4 * n, np.int64)
    weights = np.empty(4 * n, np.float64)
    above = 1 - v
    corners = ((0, left, above), (kinds, right, above), (padded_cols * kinds, left, v),
               ((padded_cols + 1) * kinds, right, v))
    for c, (corner, horizontal, vertical) in enumerate(corners):
        np.add(base, corner, out=index[c * n:(c + 1) * n])
        np.multiply(horizontal, vertical, out=weights[c * n:(c + 1) * n])
    hough = np.bincount(index, weights, minlength=size)
    return hough.reshape(hrows + 3, padded_cols, kinds)[1:-2, 1:-2].astype(np.float32)


def find_seeds(hough, threshold=None, max_seeds=None, options=None):
    """Local maxima (3x3) of every h_k above `threshold`, strongest first, at most `max_seeds`.

    Returns (kind int64 [N], row int64 [N], col int64 [N], value float32 [N]) on the Hough grid.
    """
    options = settings.resolve(options)
    threshold = options.PEAK_THRESHOLD if threshold is None else threshold
    max_seeds = options.MAX_SEEDS if max_seeds is None else max_seeds
    dilated = cv2.dilate(hough, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)
    if dilated.ndim == 2:  # cv2 drops a trailing axis of size 1
        dilated = dilated[..., None]
    flat = hough.reshape(-1)
    peaks = np.flatnonzero(flat > threshold)  # few: compare with the dilation only there
    peaks = peaks[flat[peaks] >= dilated.reshape(-1)[peaks]]
    row, rest = np.divmod(peaks, hough.shape[1] * hough.shape[2])
    col, kind = np.divmod(rest, hough.shape[2])
    value = flat[peaks]
    if len(value) > max_seeds:
        keep = np.argpartition(-value, max_seeds - 1)[:max_seeds]
        row, col, kind, value = row[keep], col[keep], kind[keep], value[keep]
    order = np.argsort(-value, kind='stable')
    return kind[order], row[order], col[order], value[order]


# ----------------------------------------------------------------------------------------------------------
# 3. Greedy decoding
# ----------------------------------------------------------------------------------------------------------
def _tree_walks():
    """Breadth-first walks of the tree from every keypoint type, level by level.

    Returns int64 [K, L, W]: walks[k0, t] lists the directed edges (config.DIRECTED_EDGES indices) taken at
    level t of the walk from seed type k0, -1 padded; their sources are reached at earlier levels.
    """
    num = config.NUM_KEYPOINTS
    edge_index = {edge: e for e, edge in enumerate(config.DIRECTED_EDGES)}
    neighbours = [[] for _ in range(num)]
    for a, b in config.EDGES:
        neighbours[a].append(b)
        neighbours[b].append(a)
    all_levels = []
    for root in range(num):
        seen, frontier, levels = {root}, [root], []
        while frontier:
            level, next_frontier = [], []
            for k in frontier:
                for l in neighbours[k]:
                    if l not in seen:
                        seen.add(l)
                        next_frontier.append(l)
                        level.append(edge_index[(k, l)])
            if level:
                levels.append(level)
            frontier = next_frontier
        all_levels.append(levels)
    depth = max(len(levels) for levels in all_levels)
    width = max(len(level) for levels in all_levels for level in levels)
    walks = np.full((num, depth, width), -1, np.int64)
    for root, levels in enumerate(all_levels):
        for t, level in enumerate(levels):
            walks[root, t, :len(level)] = level
    return walks


WALKS = _tree_walks()
EDGE_SOURCE = np.array([a for a, _ in config.DIRECTED_EDGES], np.int64)
EDGE_TARGET = np.array([b for _, b in config.DIRECTED_EDGES], np.int64)
# INCOMING[l] lists the directed edges that end at keypoint l (one per tree neighbour).
_MAX_DEGREE = max(int(np.sum(EDGE_TARGET == l)) for l in range(config.NUM_KEYPOINTS))
INCOMING = np.full((config.NUM_KEYPOINTS, _MAX_DEGREE), -1, np.int64)
for _l in range(config.NUM_KEYPOINTS):
    _edges = np.flatnonzero(EDGE_TARGET == _l)
    INCOMING[_l, :len(_edges)] = _edges


def follow_tree(maps, kind, x, y, support_threshold):
    """Walks the tree from a batch of seeds with the mid-range offsets, y_l = y_k + M_{k,l}(y_k).

    Args:
      maps: Maps of the image.
      kind, x, y: seeds, int64 [B] keypoint type and float32 [B] position in input px.
      support_threshold: a keypoint counts as found if its support (Maps.support) reaches this.
    Returns:
      pos float32 [B, K, 2] keypoint positions; found bool [B, K]: support >= threshold and reached from a
      found keypoint (a landing from an unsupported keypoint is not trusted; the rescue retries it).
      support float32 [B, K].
    """
    batch = len(kind)
    pos = np.zeros((batch, config.NUM_KEYPOINTS, 2), np.float32)
    pos[np.arange(batch), kind] = np.stack([x, y], axis=1)
    steps = []
    for t in range(WALKS.shape[1]):  # one vectorised step per tree level, all seeds and branches at once
        person, slot = np.nonzero(WALKS[kind, t] >= 0)
        if not len(person):
            break
        edge = WALKS[kind[person], t, slot]
        source, target = EDGE_SOURCE[edge], EDGE_TARGET[edge]
        sx, sy = pos[person, source, 0], pos[person, source, 1]
        dx, dy = maps.offset(maps.mid, sx, sy, edge)
        defined = np.isfinite(dx)
        pos[person, target, 0] = sx + np.where(defined, dx, 0)
        pos[person, target, 1] = sy + np.where(defined, dy, 0)
        steps.append((person, source, target, defined))
    # The landings are settled once, after the walk: a mid-range field points at its target from anywhere in
    # the source's disk, so an unsettled source lands as well as a settled one.  Each landing (and the seed)
    # moves to the centroid of the Hough votes around it, so a precise pose rejects its own later seeds.
    flat_kind = np.tile(np.arange(config.NUM_KEYPOINTS), batch)
    pos = hough_centroids(maps, pos, np.ones(pos.shape[:2], bool))
    support = maps.support(pos[..., 0].ravel(), pos[..., 1].ravel(), flat_kind).reshape(batch, -1)
    found = support >= support_threshold
    # Trust only landings whose source was found: sources are settled at earlier levels.
    for person, source, target, defined in steps:
        found[person, target] &= found[person, source] & defined
    return pos, found, support


def mask_distance(gx, gy, valid, pos, weights, scales):
    """Mask distance D_j (docs/method.md#instance-segmentation) of long-range embeddings to people.

    Broadcasts leading axes.

    D = sum_k w_k v_k |G_k - y_k| / (lambda sum_k w_k v_k), with G_k = x + L_k(x) the embedding of a point for
    keypoint k and v_k its validity (long_valid; None: all valid), so only the keypoints whose embedding is
    defined at the point count.
    Args:
      gx, gy: float32 [..., K] embeddings, input px; valid: [..., K] or None.
      pos: float32 [..., K, 2] the people's keypoints y_jk; weights: [..., K] p_k(y_jk) on found keypoints, 0
        on the others (embedding_weights); scales: [...] lambda_j (instance_scales).
    Returns float32 [...] (the broadcast shape), inf where no keypoint counts (no evidence).
    """
    def terms(k):  # (w_k v_k |G_k - y_k|, w_k v_k) for keypoint index or slice k
        w = weights[..., k] if valid is None else weights[..., k] * valid[..., k]
        dx = gx[..., k] - pos[..., k, 0]
        dy = gy[..., k] - pos[..., k, 1]
        return w * np.sqrt(dx * dx + dy * dy), w

    size = np.prod(np.broadcast_shapes(gx.shape[:-1], pos.shape[:-2], weights.shape[:-1]))
    if size * weights.shape[-1] <= MASK_DISTANCE_BLOCK:  # few points: all keypoints at once
        total, mass = (term.sum(axis=-1) for term in terms(slice(None)))
    else:  # e.g. cells x people: one keypoint at a time, no [..., K] temporaries
        total, mass = np.float32(0), np.float32(0)
        for k in np.flatnonzero(np.any(weights.reshape(-1, weights.shape[-1]) > 0, axis=0)):
            term, w = terms(k)
            total, mass = total + term, mass + w
    mass = mass * scales
    with np.errstate(invalid='ignore', divide='ignore'):
        return np.where(mass > 0, total / mass, np.inf).astype(np.float32)


def embedding_weights(maps, pos, found):
    """Weights w_jk of mask_distance: p_k(y_jk) on found keypoints, 0 on the others: float32 [P, K]."""
    people, num = found.shape
    p = maps.heatmaps(pos[..., 0].ravel(), pos[..., 1].ravel(), np.tile(np.arange(num), people))
    return np.where(found, p.reshape(people, num), 0.0).astype(np.float32)


def belongs(maps, x, y, pos, weights, scales, seg_threshold, distance_threshold, strict=True):
    """bool [n]: False where a point lies on a body (p_S > threshold) whose embedding points away from the
    point's person (D_j > t): the point is on somebody else.

    x, y: float32 [n] points; pos [n, K, 2], weights [n, K], scales [n]: each point's person.  The embedding is
    read at the grid cells around the point (interpolating between two people's cells would match neither):
    strict, the nearest cell (for the points whose offsets will be read); otherwise one agreeing cell of the
    four suffices (for keypoints on a body's edge).  Cells without a defined embedding carry no evidence and
    pass.
    """
    sampler = maps.long
    on_body = maps.segmentation(x, y, 0) > seg_threshold
    base, fx, fy = sampler.corners(x, y)
    cell = base // sampler.channels
    if strict:  # [n, 1]: the cell nearest to each point
        cell = (cell + (fx > 0.5) + (fy > 0.5) * sampler.width)[:, None]
    else:
        cell = cell[:, None] + sampler.corner_cells
    kinds = np.arange(config.NUM_KEYPOINTS)
    offsets = sampler.flat[(cell * sampler.channels)[..., None] + 2 * kinds]  # [n, c, K] dx; dy follows
    cell_x, cell_y = sampler.cell_positions(cell)
    gx = cell_x[..., None] + offsets
    gy = cell_y[..., None] + sampler.flat[(cell * sampler.channels)[..., None] + 2 * kinds + 1]
    valid = None if sampler.valid is None else sampler.validity(cell[..., None], kinds)
    distance = mask_distance(gx, gy, valid, pos[:, None], weights[:, None], scales[:, None])  # [n, c]
    mine = (distance <= distance_threshold).any(axis=1)
    return ~on_body | mine | ~np.isfinite(distance).any(axis=1)


def rescue_keypoints(maps, pos, found, support, support_threshold, refine_steps, rounds=None, rescued=None,
                     seg_threshold=None, distance_threshold=None):
    """Re-finds keypoints the tree walk missed, from the keypoints that were found.

    For every missing keypoint l of a person, candidates are y_k + L_l(y_k) for every found k (long-range
    offsets) and y_k + M_{k,l}(y_k) for every found tree neighbour k (mid-range offsets), each refined with
    S_l (`refine_steps` times).  The candidate most others agree with (within r), then the best supported,
    wins if its support reaches the threshold and config.RESCUE_MIN_AGREEMENT candidates (itself included)
    agree on it: one source alone may sit on somebody else.  Offsets read on another person's body lead to
    that person, so both the sources and the winner must belong to the person by its long-range embedding
    (belongs(), measured against the keypoints the walk found).  `rounds` (config.RESCUE_ROUNDS) rounds, so a
    keypoint found in one serves as a source in the next.
    Updates pos, found, support (and `rescued`, bool [B, K], if given) in place.
    """
    options = maps.options
    seg_threshold = options.SEGMENTATION_THRESHOLD if seg_threshold is None else seg_threshold
    distance_threshold = options.MASK_DISTANCE_THRESHOLD if distance_threshold is None else distance_threshold
    rounds = options.RESCUE_ROUNDS if rounds is None else rounds
    min_agreement = options.RESCUE_MIN_AGREEMENT
    num = config.NUM_KEYPOINTS
    radius2 = maps.radius * maps.radius
    incomplete = (~found).any(axis=1, keepdims=True)
    if not incomplete.any():
        return
    # The walk's keypoints are the reference of every check.
    reference, weights = pos.copy(), embedding_weights(maps, pos, found)
    scales = instance_scales(pos, found, options=options)
    people, kinds = np.nonzero(found & incomplete)  # only people with a keypoint to rescue need sources
    source = np.zeros(found.shape, bool)
    source[people, kinds] = belongs(maps, pos[people, kinds, 0], pos[people, kinds, 1], reference[people],
                                    weights[people], scales[people], seg_threshold, distance_threshold)
    for _ in range(rounds):
        person, kind = np.nonzero(~found & source.any(axis=1, keepdims=True))
        if not len(person):
            return
        n = len(person)
        # Long-range candidates from every source k of the person: [n, K].
        src = pos[person]  # [n, K, 2]
        sx, sy = src[..., 0], src[..., 1]
        lkind = np.broadcast_to(kind[:, None], (n, num))
        dx, dy = maps.offset(maps.long, sx.ravel(), sy.ravel(), lkind.ravel())
        cx_long, cy_long = sx.ravel() + dx, sy.ravel() + dy
        valid_long = source[person].ravel() & np.isfinite(dx)
        # Mid-range candidates from every tree neighbour that is a source: [n, D].
        edges = INCOMING[kind]  # [n, D], -1 padded
        has_edge = edges >= 0
        safe_edges = np.where(has_edge, edges, 0)
        nb = EDGE_SOURCE[safe_edges]
        mx = pos[person[:, None], nb, 0]
        my = pos[person[:, None], nb, 1]
        dx, dy = maps.offset(maps.mid, mx.ravel(), my.ravel(), safe_edges.ravel())
        cx_mid, cy_mid = mx.ravel() + dx, my.ravel() + dy
        valid_mid = (has_edge & source[person[:, None], nb]).ravel() & np.isfinite(dx)
        width = num + edges.shape[1]
        cx_long, cy_long = np.where(valid_long, cx_long, 0), np.where(valid_long, cy_long, 0)
        cx_mid, cy_mid = np.where(valid_mid, cx_mid, 0), np.where(valid_mid, cy_mid, 0)
        cx = np.concatenate([cx_long.reshape(n, num), cx_mid.reshape(n, -1)], axis=1)
        cy = np.concatenate([cy_long.reshape(n, num), cy_mid.reshape(n, -1)], axis=1)
        valid = np.concatenate([valid_long.reshape(n, num), valid_mid.reshape(n, -1)], axis=1)
        ckind = np.broadcast_to(kind[:, None], (n, width)).ravel()
        cx, cy = maps.refine(cx.ravel(), cy.ravel(), ckind, refine_steps)
        csupport = np.where(valid.ravel(), maps.support(cx, cy, ckind), 0.0).reshape(n, width)
        cx, cy = cx.reshape(n, width), cy.reshape(n, width)
        near = ((cx[:, :, None] - cx[:, None, :]) ** 2 + (cy[:, :, None] - cy[:, None, :]) ** 2) <= radius2
        agree = (near & valid[:, None, :]).sum(axis=2)
        good = valid & (csupport >= support_threshold) & (agree >= min_agreement)
        # Most agreement first, then the best support among the candidates with that agreement.
        most = np.where(good, agree, -1).max(axis=1, keepdims=True)
        best = np.argmax(np.where(good & (agree == most), csupport, -1.0), axis=1)
        rows = np.arange(n)
        take = good[rows, best]
        bx, by = cx[rows, best], cy[rows, best]
        p = person[take]
        take[take] = belongs(maps, bx[take], by[take], reference[p], weights[p], scales[p], seg_threshold,
                             distance_threshold)
        if not take.any():
            return
        p, k = person[take], kind[take]
        pos[p, k, 0] = bx[take]
        pos[p, k, 1] = by[take]
        support[p, k] = csupport[rows[take], best[take]]
        found[p, k] = True
        source[p, k] = True
        if rescued is not None:
            rescued[p, k] = True


def accept_seeds(batch, pos, claims, seeds, alive, radius, limit):
    """Accepts a batch of seeds in queue order (docs/method.md#greedy-decoding).

    Args:
      batch: int [B] indices of the batch's seeds in the queue, in order; pos float32 [B, K, 2] the persons
        they start; claims bool [B, K] the keypoints of those persons that reject seeds.
      seeds: (kind int [N], x float32 [N], y float32 [N]) of the whole queue; alive bool [N] seeds not yet
        rejected or taken.
      radius: r; a seed within r (distance <= r) of the same-type claimed keypoint of an accepted person is
        rejected.  limit: accept at most this many.
    Returns (rows of the batch accepted, alive after them).
    """
    kind, x, y = seeds
    alive = alive.copy()
    rows = []
    for b, n in enumerate(batch):  # seeds of one batch, not pixels: at most MAX_PEOPLE acceptances
        if not alive[n]:
            continue
        rows.append(b)
        own = pos[b][kind]
        alive &= ~(((x - own[:, 0]) ** 2 + (y - own[:, 1]) ** 2 <= radius * radius) & claims[b][kind])
        alive[n] = False
        if len(rows) >= limit:
            break
    return rows, alive


def greedy_decode(maps, seeds, support_threshold=None, max_people=None, first_batch=None,
                  refine_steps=None, rescue=None, seed_filter=None):
    """Greedy decoding over one priority queue of seeds (docs/method.md#greedy-decoding).

    Seeds are taken strongest first in vectorised batches (the first of `first_batch`, then doubling): the
    whole batch walks its trees at once, then the batch is accepted in order (accept_seeds), each new person
    rejecting every later seed within r of its same-type found keypoint.  Equivalent to popping one seed at a
    time.  Every seed counts (the paper), unless `seed_filter` (config.SEED_SUPPORT_FILTER) drops those whose
    own support is below the threshold first.

    Returns pos float32 [P, K, 2], found bool [P, K], support float32 [P, K], rescued bool [P, K] (found by
    the rescue, not the tree walk), people in seed order.
    """
    options = maps.options
    support_threshold = options.KEYPOINT_SUPPORT_THRESHOLD if support_threshold is None else support_threshold
    max_people = options.MAX_PEOPLE if max_people is None else max_people
    batch_size = options.SEED_BATCH if first_batch is None else first_batch
    refine_steps = options.SHORT_REFINE_STEPS if refine_steps is None else refine_steps
    rescue = options.LONG_RANGE_RESCUE if rescue is None else rescue
    seed_filter = options.SEED_SUPPORT_FILTER if seed_filter is None else seed_filter
    kind, row, col, _ = seeds
    hs = maps.hough_stride
    sx, sy = maps.refine((col * hs).astype(np.float32), (row * hs).astype(np.float32), kind, refine_steps)
    alive = maps.support(sx, sy, kind) >= support_threshold if seed_filter else np.ones(len(kind), bool)
    people_pos, people_found, people_support, people_rescued = [], [], [], []
    start = 0
    while start < len(kind) and len(people_pos) < max_people:
        batch = np.flatnonzero(alive[start:])[:batch_size] + start
        if not len(batch):
            break
        last = batch[-1]
        pos, found, support = follow_tree(maps, kind[batch], sx[batch], sy[batch], support_threshold)
        rescued = np.zeros(found.shape, bool)
        # Claims (accept_seeds): every found or supported keypoint; a seed next to one is that keypoint.
        if rescue:
            # Rescue only the seeds the walk alone would accept: the rescue only adds found keypoints, so it
            # can only reject more seeds, never revive one.
            rows, accepted_alive = accept_seeds(batch, pos, found | (support >= support_threshold), (kind, sx, sy),
                                                alive, maps.radius, max_people - len(people_pos))
            rows = np.asarray(rows, np.int64)
            batch, pos, found, support, rescued = batch[rows], pos[rows], found[rows], support[rows], rescued[rows]
            rescue_keypoints(maps, pos, found, support, support_threshold, refine_steps, rescued=rescued)
        if rescue and not rescued.any():  # nothing new claims a place: the acceptance stands
            rows, alive = list(range(len(batch))), accepted_alive
        else:
            rows, alive = accept_seeds(batch, pos, found | (support >= support_threshold), (kind, sx, sy), alive,
                                       maps.radius, max_people - len(people_pos))
        for b in rows:
            people_pos.append(pos[b])
            people_found.append(found[b])
            people_support.append(support[b])
            people_rescued.append(rescued[b])
        start = last + 1
        batch_size *= 2
    if not people_pos:
        num = config.NUM_KEYPOINTS
        return (np.zeros((0, num, 2), np.float32), np.zeros((0, num), bool), np.zeros((0, num), np.float32),
                np.zeros((0, num), bool))
    return np.stack(people_pos), np.stack(people_found), np.stack(people_support), np.stack(people_rescued)


def merge_duplicates(pos, found, support, rescued, min_shared=None, radius=None, options=None):
    """Merges a person into an earlier one when they are the same body seen from two seeds
    (config.MERGE_FRAGMENTS).

    A later person sharing at least `min_shared` found keypoints with an earlier one (same type within r),
    with no found keypoint of a common type elsewhere, is a fragment whose seed the earlier person missed
    (e.g. its rescue failed where masks overlap): the earlier person takes the keypoints it lacks, the later
    one is dropped.  (Allowing disagreements merges different people in crowds.)  Returns (pos, found,
    support, rescued) without the merged people.
    """
    options = settings.resolve(options)
    min_shared = options.MERGE_MIN_SHARED if min_shared is None else min_shared
    radius = options.NMS_RADIUS if radius is None else radius
    people = len(pos)
    if people < 2:
        return pos, found, support, rescued
    keep = np.ones(people, bool)
    # Only later people sharing enough with an earlier one need the exact, sequential check below.
    both = found[:, None, :] & found[None, :, :]  # [earlier, later, K]
    close = ((pos[:, None] - pos[None, :]) ** 2).sum(axis=-1) <= radius * radius
    maybe = np.triu(((both & close).sum(axis=-1) >= min_shared), k=1).any(axis=0)
    for n in np.flatnonzero(maybe):  # people, not pixels: at most MAX_PEOPLE iterations
        both = found[:n] & found[n][None, :] & keep[:n, None]  # [n, K]
        close = ((pos[:n] - pos[n][None]) ** 2).sum(axis=-1) <= radius * radius
        shared = (both & close).sum(axis=1)
        clash = (both & ~close).any(axis=1)
        target = np.flatnonzero((shared >= min_shared) & ~clash)
        if not len(target):
            continue
        a = target[np.argmax(shared[target])]
        add = found[n] & ~found[a]
        pos[a, add] = pos[n, add]
        support[a, add] = support[n, add]
        rescued[a, add] = rescued[n, add]
        found[a, add] = True
        keep[n] = False
    return pos[keep], found[keep], support[keep], rescued[keep]


def resolve_conflicts(pos, found, rescued, radius=None, options=None):
    """Two people cannot own the same keypoint (config.RESOLVE_CONFLICTS): where found keypoints of one type
    of two people lie within r, the one reached by a tree walk beats a rescued one (a rescue from sources
    lying on another person's body borrows that person's offsets); between equals, the person with more found
    keypoints wins, then the earlier one.  The loser's keypoint stays in place but is no longer found (it then
    weighs nothing in scores' scale or masks).  Updates `found` in place.
    """
    options = settings.resolve(options)
    radius = options.NMS_RADIUS if radius is None else radius
    people, num = found.shape
    if people < 2:
        return
    d2 = ((pos[:, None] - pos[None, :]) ** 2).sum(axis=-1)  # [P, P, K]
    clash = (d2 <= radius * radius) & found[:, None, :] & found[None, :, :]
    clash[np.arange(people), np.arange(people)] = False
    if not clash.any():
        return
    # Priority of every (person, keypoint): walk before rescue, then more found keypoints, then earlier.
    index = np.broadcast_to(np.arange(people)[:, None], (people, num))
    count = np.broadcast_to(found.sum(axis=1)[:, None], (people, num))
    order = np.lexsort(((-index).ravel(), count.ravel(), (~rescued).ravel()))
    priority = np.empty(people * num, np.int64)
    priority[order] = np.arange(people * num)
    priority = priority.reshape(people, num)
    loses = (clash & (priority[:, None, :] < priority[None, :, :])).any(axis=1)
    found &= ~loses


def hough_centroids(maps, pos, found, passes=None):
    """Sub-pixel positions of found keypoints: the centroid of h_k over the config.CENTROID_WINDOW^2 Hough
    cells around each, `passes` times (config.CENTROID_PASSES; each pass re-centres the window).  Bilinear
    splatting keeps the centroid of the votes, so this is the mean of every vote cast for the keypoint (exact
    for exact offsets, averaging tens of noisy votes otherwise), where one landing reads the offsets of 1-4
    cells only.  Keypoints with no mass there keep their position.  Returns a new array.
    """
    options = maps.options
    passes = options.CENTROID_PASSES if passes is None else passes
    pos = pos.copy()
    person, kind = np.nonzero(found)
    if not len(person):
        return pos
    hs = np.float32(maps.hough_stride)
    hrows, hcols, num = maps.hough.shape
    pad = maps.hough_pad
    x, y = pos[person, kind, 0], pos[person, kind, 1]
    for _ in range(passes):
        cu = np.minimum(np.maximum(np.rint(x / hs), 0), hcols - 1).astype(np.int64)
        cv = np.minimum(np.maximum(np.rint(y / hs), 0), hrows - 1).astype(np.int64)
        centre = ((cv + pad) * (hcols + 2 * pad) + cu + pad) * num + kind
        values = maps.hough_padded[centre[:, None] + maps.window]  # [n, window cells]
        mass = values.sum(axis=1)
        ok = mass > 0
        safe = np.where(ok, mass, 1.0)
        x = np.where(ok, (cu + (values @ maps.window_cols) / safe) * hs, x).astype(np.float32)
        y = np.where(ok, (cv + (values @ maps.window_rows) / safe) * hs, y).astype(np.float32)
    pos[person, kind, 0] = x
    pos[person, kind, 1] = y
    return pos


# ----------------------------------------------------------------------------------------------------------
# 4. Scores
# ----------------------------------------------------------------------------------------------------------
def instance_scales(pos, found, min_scale=None, options=None):
    """lambda_j = sqrt(area of the box of person j's FOUND keypoints), at least `min_scale`: float32 [P]."""
    options = settings.resolve(options)
    min_scale = options.MIN_INSTANCE_SCALE if min_scale is None else min_scale
    big = np.float32(1e9)
    x, y = pos[..., 0], pos[..., 1]
    width = np.where(found, x, -big).max(axis=1) - np.where(found, x, big).min(axis=1)
    height = np.where(found, y, -big).max(axis=1) - np.where(found, y, big).min(axis=1)
    area = np.where(found.any(axis=1), np.maximum(width, 0) * np.maximum(height, 0), 0)
    return np.maximum(np.sqrt(area), min_scale).astype(np.float32)


def expected_oks(maps, pos, scales, found=None, radius=None, vote_threshold=None):
    """Expected-OKS keypoint scores (docs/method.md#expected-oks-scoring), computed from the Hough votes themselves:

      s_jk = p_k(y) * sum_i w_i exp(-|z_i - y|^2 / (2 lambda_j^2 kappa_k^2)) / sum_i w_i,

    over the votes i of type k that land within R of y = y_jk: z_i = x_i + S_k(x_i) from output cell x_i,
    w_i = p_k(x_i) s^2 / (pi R^2) (Eq. 1's vote, bilinear kernel taken as a point: the integral of h_k over
    D_R(y) against the Gaussian), normalised by the votes' total in D_R(y), so that s is p_k(y) times the OKS
    the keypoint is expected to reach given where its votes put it [P formula, R normalisation].  Cells with
    p_k below `vote_threshold` (config.HOUGH_VOTE_THRESHOLD) cast no vote, as in hough_voting.  A vote
    reaches y only from a cell within 2R of it (|S_k| <= R where the target is defined).

    Args:
      maps: Maps of the image; pos float32 [P, K, 2]; scales float32 [P] lambda_j (instance_scales);
      found bool [P, K] (default all): keypoints not found score 0.
    Returns float32 [P, K] in [0, 1].
    """
    options = maps.options
    radius = options.RADIUS if radius is None else radius
    vote_threshold = options.HOUGH_VOTE_THRESHOLD if vote_threshold is None else vote_threshold
    people, num = pos.shape[:2]
    scores = np.zeros((people, num), np.float32)
    person, kind = np.nonzero(np.ones((people, num), bool) if found is None else found)
    if not len(person):
        return scores
    heat, short = maps.outputs['heatmaps'], maps.outputs['short_offsets']  # unpadded: each cell votes once
    rows, cols = heat.shape[:2]
    step = np.float32(maps.stride)
    # Cells (counted from the one nearest y, itself within s / sqrt(2) of y) whose landing can lie within R of y.
    reach = 2 * radius / step + math.sqrt(0.5)
    half = int(math.ceil(reach))
    di, dj = np.mgrid[-half:half + 1, -half:half + 1]
    disk = di * di + dj * dj <= reach * reach
    di, dj = di[disk], dj[disk]
    x, y = pos[person, kind, 0], pos[person, kind, 1]
    ci0 = np.clip(np.rint(y / step), 0, rows - 1).astype(np.int64)
    cj0 = np.clip(np.rint(x / step), 0, cols - 1).astype(np.int64)
    # [n, window] arrays, the decoder's largest: in-place arithmetic, int64 indices and np.take (an int32 index
    # would be converted at every gather).
    ci = ci0[:, None] + di
    cj = cj0[:, None] + dj
    inside = (ci.view(np.uint64) < rows) & (cj.view(np.uint64) < cols)  # negative -> huge: one compare
    index = (ci * cols + cj) * num + kind[:, None]
    index *= inside  # outside the grid: read cell 0 with p forced to 0
    p = np.take(heat.reshape(-1), index)
    p *= inside
    index *= 2
    d2 = np.take(short.reshape(-1), index)  # landing - y, squared, summed over x and y
    d2 += ((cj0 * step).astype(np.float32) - x)[:, None] + (dj * step).astype(np.float32)
    d2 *= d2
    index += 1
    dy = np.take(short.reshape(-1), index)
    dy += ((ci0 * step).astype(np.float32) - y)[:, None] + (di * step).astype(np.float32)
    dy *= dy
    d2 += dy
    w = np.where((p > vote_threshold) & (d2 <= np.float32(radius * radius)), p, np.float32(0))
    d2 *= (np.float32(-0.5) / (scales[person] * KAPPA[kind]) ** 2)[:, None]
    gauss = np.exp(d2, out=d2)
    gauss *= w
    mass = w.sum(axis=1)
    with np.errstate(invalid='ignore', divide='ignore'):
        expected = np.where(mass > 0, gauss.sum(axis=1) / mass, 0.0)
    scores[person, kind] = maps.heatmaps(x, y, kind) * expected
    return scores


def soft_nms_scores(pos, keypoint_scores, found, radius=None, options=None):
    """Keypoint-level soft-NMS: sum of a person's keypoint scores not within r of the same keypoint of a
    higher-scoring person (by mean keypoint score), divided by K.  Returns float32 [P]."""
    options = settings.resolve(options)
    radius = options.NMS_RADIUS if radius is None else radius
    people, num = keypoint_scores.shape
    mean = keypoint_scores.mean(axis=1)
    order = np.argsort(-mean, kind='stable')
    rank = np.empty(people, np.int64)
    rank[order] = np.arange(people)
    d2 = ((pos[:, None] - pos[None, :]) ** 2).sum(axis=-1)  # [P, P, K]
    higher = rank[None, :] < rank[:, None]  # [i, j]: j ranks above i
    suppressed = ((d2 <= radius * radius) & higher[..., None] & found[None, :, :]).any(axis=1)
    return (np.where(suppressed, 0.0, keypoint_scores).sum(axis=1) / num).astype(np.float32)


def oks(pos_a, pos_b, found_b, scale_b):
    """COCO OKS of poses a [P, K, 2] against poses b [Q, K, 2] over b's found keypoints: float32 [P, Q]."""
    d2 = ((pos_a[:, None] - pos_b[None, :]) ** 2).sum(axis=-1)  # [P, Q, K]
    e = np.exp(-d2 / (2.0 * (scale_b[None, :, None] ** 2) * KAPPA ** 2))
    count = np.maximum(found_b.sum(axis=1), 1)
    return (np.where(found_b[None], e, 0.0).sum(axis=-1) / count[None, :]).astype(np.float32)


def oks_nms_keep(pos, found, scales, scores, threshold=None, options=None):
    """Hard OKS-NMS: bool [P], False for a person whose OKS to a kept person ranked above it (higher score;
    equal scores: earlier index) exceeds threshold."""
    options = settings.resolve(options)
    threshold = options.OKS_NMS_THRESHOLD if threshold is None else threshold
    similarity = oks(pos, pos, found, scales)  # [i, j]: i against j's keypoints
    keep = np.zeros(len(scores), bool)
    for i in np.argsort(-scores, kind='stable'):  # people, not pixels: at most MAX_PEOPLE iterations
        keep[i] = not np.any(similarity[i][keep] > threshold)  # keep holds exactly the kept people above i
    return keep


# ----------------------------------------------------------------------------------------------------------
# 5. Instance masks
# ----------------------------------------------------------------------------------------------------------
def assign_pixels(maps_dict, stride, pos, weights, scales, seg_threshold=None, distance_threshold=None,
                  options=None):
    """Person index of every output-grid cell, -1 for none: int32 [H', W'].

    A cell x with p_S > seg_threshold joins argmin_j D_j(x) if D_j(x) <= t (mask_distance: the embeddings
    x + L_k(x) against each person's keypoints, weights [P, K] from embedding_weights, scales [P] lambda_j; with
    maps_dict['long_valid'], only the keypoints whose embedding is defined at x count).
    """
    options = settings.resolve(options)
    seg_threshold = options.SEGMENTATION_THRESHOLD if seg_threshold is None else seg_threshold
    distance_threshold = options.MASK_DISTANCE_THRESHOLD if distance_threshold is None else distance_threshold
    seg = maps_dict['segmentation'][..., 0]
    labels = np.full(seg.shape, -1, np.int32)
    if len(pos) == 0:
        return labels
    i, j = np.nonzero(seg > seg_threshold)
    if not len(i):
        return labels
    long_offsets = maps_dict['long_offsets'][i, j]  # [N, 2K]
    gx = (j * stride)[:, None].astype(np.float32) + long_offsets[:, 0::2]  # [N, K]
    gy = (i * stride)[:, None].astype(np.float32) + long_offsets[:, 1::2]
    valid = maps_dict['long_valid'][i, j][:, None, :] if 'long_valid' in maps_dict else None
    distance = mask_distance(gx[:, None, :], gy[:, None, :], valid, pos[None], weights[None], scales[None])
    best = np.argmin(distance, axis=1)
    ok = distance[np.arange(len(i)), best] <= distance_threshold
    labels[i[ok], j[ok]] = best[ok]
    return labels


def mask_quality(labels, people, boundary_weight=None, options=None):
    """Expected IoU of each person's mask given that its outline is only known to about one grid cell:
    cells / (cells + beta * boundary edges), from the grid labels.  float32 [people], 0 for an empty mask.

    Used to rank segm results: a small person's stride-s mask cannot reach the IoU of a large one's, and
    COCO segm AP rewards detections ranked by mask quality.
    """
    options = settings.resolve(options)
    beta = options.MASK_SCORE_BOUNDARY if boundary_weight is None else boundary_weight
    padded = np.pad(labels, 1, constant_values=-1)
    cells = np.bincount(labels[labels >= 0], minlength=people)[:people]
    edges = np.zeros(people, np.float64)
    for a, b in ((padded[1:, 1:-1], padded[:-1, 1:-1]), (padded[1:-1, 1:], padded[1:-1, :-1])):
        differ = a != b
        for side in (a, b):
            hit = differ & (side >= 0)
            edges += np.bincount(side[hit], minlength=people)[:people]
    return np.where(cells > 0, cells / np.maximum(cells + beta * edges, 1), 0.0).astype(np.float32)


def grid_to_input(grid, step, shape, interpolation=cv2.INTER_LINEAR):
    """A map [h, w] whose cell (i, j) sits at input pixel (j*step, i*step), resampled to the input pixels of
    `shape` (H, W): corner-aligned, as the grid convention says; beyond the last cell the border repeats."""
    warp = np.float32([[1.0 / step, 0, 0], [0, 1.0 / step, 0]])
    return cv2.warpAffine(grid, warp, (int(shape[1]), int(shape[0])), flags=interpolation | cv2.WARP_INVERSE_MAP,
                          borderMode=cv2.BORDER_REPLICATE)


def upsample_masks(labels, segmentation, stride, image_shape, seg_threshold=None, options=None):
    """Instance masks at input resolution from grid labels: list of bool [H, W], one per person index.

    The outline comes from p_S upsampled bilinearly (corner-aligned, as the grid convention says); the person
    of an input pixel is the label of its nearest grid cell, where background cells take a neighbouring
    label first so the smooth outline never falls on an unlabelled cell.  Each mask is written only inside
    its person's box (np.zeros of a large array costs nothing until touched).
    """
    options = settings.resolve(options)
    seg_threshold = options.SEGMENTATION_THRESHOLD if seg_threshold is None else seg_threshold
    height, width = image_shape
    people = int(labels.max()) + 1 if labels.size else 0
    masks = []
    if people <= 0:
        return masks
    background = segmentation <= seg_threshold
    grown = labels.copy()
    for axis, shift in ((0, 1), (0, -1), (1, 1), (1, -1)):
        neighbour = np.roll(labels, shift, axis=axis)
        edge = [slice(None), slice(None)]
        edge[axis] = 0 if shift == 1 else -1
        neighbour[tuple(edge)] = -1  # no wrap-around
        fill = background & (grown < 0) & (neighbour >= 0)
        grown[fill] = neighbour[fill]
    foreground = grid_to_input(segmentation.astype(np.float32), stride, (height, width)) > seg_threshold
    full = grid_to_input(grown.astype(np.int16) if people < 32767 else grown.astype(np.float32), stride,
                         (height, width), cv2.INTER_NEAREST)
    full = np.where(foreground, full, -1)
    rows_any = np.zeros((people, labels.shape[0]), bool)
    cols_any = np.zeros((people, labels.shape[1]), bool)
    r, c = np.nonzero(grown >= 0)
    rows_any[grown[r, c], r] = True
    cols_any[grown[r, c], c] = True
    for person in range(people):
        mask = np.zeros((height, width), bool)
        rr, cc = np.flatnonzero(rows_any[person]), np.flatnonzero(cols_any[person])
        if len(rr):
            y0, y1 = max(rr[0] * stride - stride, 0), min(rr[-1] * stride + stride + 1, height)
            x0, x1 = max(cc[0] * stride - stride, 0), min(cc[-1] * stride + stride + 1, width)
            mask[y0:y1, x0:x1] = full[y0:y1, x0:x1] == person
        masks.append(mask)
    return masks


# ----------------------------------------------------------------------------------------------------------
# Everything
# ----------------------------------------------------------------------------------------------------------
def decode(outputs, stride, image_shape, hough_stride=None, scoring=None, with_masks=True, timings=None,
           radius=None, options=None):
    """Decodes one image's network outputs into people.

    Args:
      outputs: dict of numpy arrays, no batch axis, on the output grid of `stride` (see heads.HEADS):
        'heatmaps' [H', W', K] and 'segmentation' [H', W', 1] as probabilities, 'short_offsets' [H', W', 2K],
        'mid_offsets' [H', W', 2E] (refined), 'long_offsets' [H', W', 2K] (refined), offsets in input px;
        optionally the validity maps of target maps, 'short_valid' [H', W', K], 'mid_valid' [H', W', E],
        'long_valid' [H', W', K] in [0, 1] (other keys are ignored, so a target dict can be passed as is).
      stride: output stride; H' = (H - 1) // stride + 1, W' likewise.
      image_shape: (H, W[, C]) of the network's input image.
      hough_stride: Hough cell side in px (default hough_cell(radius)).
      scoring: 'soft_nms' or 'oks_nms' (default config.INSTANCE_SCORING).
      with_masks: False skips instance masks ('mask' is then None).
      timings: optional dict; receives seconds per stage ('hough', 'seeds', 'greedy', 'scores', 'masks').
      radius: the disk radius R (px) the maps were trained with: it normalises the Hough votes and bounds the
        votes Expected-OKS reads. Default config.RADIUS; a trained model's comes from its run (inference.py).
    Returns:
      list of people, highest score first, each {'keypoints': float32 [K, 3] (x, y, score) in input px,
      'score': float, 'mask': bool [H, W], 'mask_score': float (score * mask_quality, to rank masks)}.
      An image without people gives [].
    Raises:
      ValueError: a missing or mis-shaped output (or validity map), NaN/inf values, probabilities (or validity)
        outside [0, 1], bad stride.
    """
    options = settings.resolve(options)
    clock = CLOCK
    t0 = clock()
    maps_dict, (height, width) = check_outputs(outputs, stride, image_shape)
    stride = int(stride)
    scoring = options.INSTANCE_SCORING if scoring is None else scoring
    if scoring not in ('soft_nms', 'oks_nms'):
        raise ValueError("scoring must be 'soft_nms' or 'oks_nms', got %r" % (scoring,))
    radius = options.RADIUS if radius is None else float(radius)
    if not radius > 0:
        raise ValueError('radius must be a positive number of px, got %r' % (radius,))
    hough_stride = int(hough_cell(radius, options) if hough_stride is None else hough_stride)
    if hough_stride < 1:
        raise ValueError('hough_stride must be a positive integer, got %r' % (hough_stride,))
    hough = hough_voting(maps_dict['heatmaps'], maps_dict['short_offsets'], stride, hough_stride, radius=radius,
                         options=options)
    t1 = clock()
    maps = Maps(maps_dict, stride, hough, hough_stride, options.NMS_RADIUS, options=options)
    seeds = find_seeds(hough, options=options)
    t2 = clock()
    pos, found, support, rescued = greedy_decode(maps, seeds)
    if options.MERGE_FRAGMENTS:
        pos, found, support, rescued = merge_duplicates(pos, found, support, rescued, options=options)
    if options.RESOLVE_CONFLICTS:
        resolve_conflicts(pos, found, rescued, options=options)
    pos = hough_centroids(maps, pos, found)
    t3 = clock()
    scales = instance_scales(pos, found, options=options)
    keypoint_scores = expected_oks(maps, pos, scales, found, radius=radius)
    if scoring == 'soft_nms':
        scores = soft_nms_scores(pos, keypoint_scores, found, options=options)
        keep = scores > 0
    else:
        scores = keypoint_scores.mean(axis=1)
        keep = oks_nms_keep(pos, found, scales, scores, options=options) & (scores > 0)
    order = [p for p in np.argsort(-scores, kind='stable') if keep[p]]
    pos, found, keypoint_scores, scores, scales = (pos[order], found[order], keypoint_scores[order],
                                                   scores[order], scales[order])
    t4 = clock()
    masks = [None] * len(order)
    mask_scores = np.zeros(len(order), np.float32)
    if with_masks and len(order):
        labels = assign_pixels(maps_dict, stride, pos, embedding_weights(maps, pos, found), scales, options=options)
        masks = upsample_masks(labels, maps_dict['segmentation'][..., 0], stride, (height, width), options=options)
        masks += [np.zeros((height, width), bool) for _ in range(len(order) - len(masks))]
        mask_scores = scores * mask_quality(labels, len(order), options=options)
    t5 = clock()
    if timings is not None:
        for name, seconds in (('hough', t1 - t0), ('seeds', t2 - t1), ('greedy', t3 - t2), ('scores', t4 - t3),
                              ('masks', t5 - t4)):
            timings[name] = timings.get(name, 0.0) + seconds
    people = []
    for n in range(len(order)):
        keypoints = np.concatenate([pos[n], keypoint_scores[n][:, None]], axis=1).astype(np.float32)
        people.append({'keypoints': keypoints, 'score': float(scores[n]), 'mask': masks[n],
                       'mask_score': float(mask_scores[n])})
    return people
