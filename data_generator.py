"""COCO person samples and the PersonLab training targets.

* `CocoPersons` reads a COCO person_keypoints file (pycocotools) and loads one image with its persons:
  keypoints, instance masks (polygons or RLE) and the crowd (iscrowd) regions.
* `make_targets` turns keypoints and grid masks into the target maps of every head (HELPERS.md contract), on
  the output grid of a stride, offsets as exact float32 input pixels with a validity mask per field.
* `encode_example` (no augmentation, for the oracle) and `augment_example` (one random training sample).
* `SampleGenerator` batches augmented samples made by worker processes, shuffled each epoch and reproducible
  with a seed; unreadable images are logged with their file name, skipped and counted.

Targets are never built at input resolution: masks go straight onto the output grid (transformer.py), and
every map is H' x W' = ((H - 1) // s + 1, (W - 1) // s + 1).
"""
import collections
import concurrent.futures
import contextlib
import ctypes
import io
import logging
import multiprocessing
import multiprocessing.connection
import numbers
import os
import pickle
import signal
import time
import weakref
from multiprocessing import shared_memory

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

import config
import heads
import transformer

LOG = logging.getLogger(__name__)

TARGET_NAMES = ('image',) + tuple(heads.TARGET_CHANNELS)

# Tags that keep the random streams of the epoch shuffles and of the samples apart under one seed.
_ORDER_STREAM, _SAMPLE_STREAM = 0, 1
# Linux prctl option: signal this process when its parent dies (<linux/prctl.h>).
_PR_SET_PDEATHSIG = 1


class ImageReadError(IOError):
    """An image file is missing or cannot be decoded; the message names the file."""


# ----------------------------------------------------------------------------
# COCO reader
# ----------------------------------------------------------------------------

class CocoPersons(object):
    """Persons of a COCO person_keypoints annotation file.

    Keeps only what samples need, not the pycocotools index: per image its file name, size and its person
    annotations pickled into one bytes object. That is about the size of the JSON file instead of several
    times more in small Python objects, cheap to send to spawned workers, and forked workers do not copy it
    page by page by touching reference counts.

    Args:
      annotation_file: path of person_keypoints_*.json.
      image_dir: folder of the images it names.
      include_empty: keep images without any person annotation (config.INCLUDE_IMAGES_WITHOUT_PEOPLE).
    Raises:
      FileNotFoundError naming every missing path (both are checked before anything is read);
      ValueError naming the annotation file if it is not a COCO annotation file or has no person category.
    """

    def __init__(self, annotation_file, image_dir, include_empty=None):
        include_empty = config.INCLUDE_IMAGES_WITHOUT_PEOPLE if include_empty is None else include_empty
        missing = []
        if not os.path.isfile(annotation_file):
            missing.append('annotation file %s' % annotation_file)
        if not os.path.isdir(image_dir):
            missing.append('image folder %s' % image_dir)
        if missing:
            raise FileNotFoundError('COCO data not found: %s is missing' % ' and '.join(missing))
        self.annotation_file = annotation_file
        self.image_dir = image_dir
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress to stdout
                coco = COCO(annotation_file)
            person_ids = coco.getCatIds(catNms=['person'])
            images = coco.imgs
        except (ValueError, KeyError, TypeError, AssertionError) as error:
            raise ValueError('%s is not a COCO annotation file: %r' % (annotation_file, error))
        if not person_ids:
            raise ValueError('%s has no "person" category' % annotation_file)
        self._images = {}
        for image_id in sorted(images):
            info = images[image_id]
            annotations = [a for a in coco.imgToAnns.get(image_id, []) if a.get('category_id') in person_ids]
            if not annotations and not include_empty:
                continue
            annotations = [{key: a.get(key) for key in ('segmentation', 'keypoints', 'iscrowd', 'id')}
                           for a in annotations]
            self._images[image_id] = (info['file_name'], int(info['height']), int(info['width']),
                                      pickle.dumps(annotations, pickle.HIGHEST_PROTOCOL))
        self.image_ids = list(self._images)

    def __len__(self):
        return len(self.image_ids)

    def file_name(self, image_id):
        """Path of the image file of `image_id`."""
        return os.path.join(self.image_dir, self._images[image_id][0])

    def load_example(self, image_id):
        """One image with its persons.

        Returns:
          dict 'image_id' int, 'file_name' str (full path), 'image' uint8 [H, W, 3] RGB,
          'keypoints' float32 [N, K, 3] (x, y, v) COCO visibility (v > 0 labelled; non-finite -> unlabelled),
          'masks' bool [N, H, W] of the N non-crowd persons, 'crowd_mask' bool [H, W] (union of iscrowd regions).
        Raises:
          ImageReadError naming the file if it is missing, cannot be decoded or has the wrong size.
        """
        _, record_height, record_width, annotations = self._images[image_id]
        path = self.file_name(image_id)
        image = read_image(path)
        height, width = image.shape[:2]
        if (height, width) != (record_height, record_width):
            raise ImageReadError('%s is %dx%d but its annotation says %dx%d' % (
                path, width, height, record_width, record_height))
        keypoints, masks = [], []
        crowd = np.zeros((height, width), bool)
        for annotation in pickle.loads(annotations):
            mask = annotation_mask(annotation.get('segmentation'), height, width, annotation.get('id'))
            if annotation.get('iscrowd'):
                crowd |= mask
            else:
                masks.append(mask)
                keypoints.append(annotation_keypoints(annotation.get('keypoints')))
        return {
            'image_id': image_id,
            'file_name': path,
            'image': image,
            'keypoints': (np.stack(keypoints) if keypoints
                          else np.zeros((0, config.NUM_KEYPOINTS, 3), np.float32)),
            'masks': np.stack(masks) if masks else np.zeros((0, height, width), bool),
            'crowd_mask': crowd,
        }


def read_image(path):
    """uint8 [H, W, 3] RGB of an image file; ImageReadError naming it if missing or undecodable."""
    if not os.path.isfile(path):
        raise ImageReadError('image %s is missing' % path)
    data = np.fromfile(path, np.uint8)
    # COCO annotates the stored pixels: an EXIF rotation would move them away from their annotations.
    image = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION) if data.size else None
    if image is None or image.ndim != 3 or image.shape[0] == 0 or image.shape[1] == 0:
        raise ImageReadError('image %s cannot be decoded' % path)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def annotation_keypoints(values):
    """float32 [K, 3] (x, y, v) from a COCO 'keypoints' list; bad or missing values give unlabelled points."""
    keypoints = np.zeros((config.NUM_KEYPOINTS, 3), np.float32)
    try:
        values = np.asarray(values if values is not None else [], np.float64).ravel()
    except (TypeError, ValueError):
        values = np.zeros(0)
    count = min(values.size // 3, config.NUM_KEYPOINTS)
    keypoints[:count] = values[:3 * count].reshape(count, 3)
    keypoints[~transformer.labelled(keypoints)] = 0.0
    return keypoints


def annotation_mask(segmentation, height, width, annotation_id=None):
    """bool [H, W] of a COCO segmentation (polygons in image px, or RLE compressed or not) on an image of
    `height` x `width` px; `annotation_id` only names it in warnings.

    Degenerate input (no polygon, polygons with fewer than 3 points, non-finite coordinates, an RLE of
    another size) gives an empty or partial mask, with a warning, never an exception.
    """
    empty = np.zeros((height, width), bool)
    if not segmentation:
        return empty
    try:
        if isinstance(segmentation, dict):
            size = [int(v) for v in segmentation.get('size', [])]
            if size != [height, width]:
                LOG.warning('annotation %s: RLE of size %s on a %dx%d image, ignored', annotation_id, size,
                            width, height)
                return empty
            rle = segmentation
            if isinstance(rle.get('counts'), list):
                rle = mask_utils.frPyObjects(rle, height, width)
        else:
            # Polygons need >= 3 points; pycocotools would read a 4-number list as a box.
            polygons = [np.asarray(p, np.float64).ravel() for p in segmentation]
            polygons = [p.tolist() for p in polygons if p.size >= 6 and p.size % 2 == 0 and np.isfinite(p).all()]
            if not polygons:
                return empty
            rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
        return mask_utils.decode(rle).astype(bool)
    except (ValueError, TypeError, KeyError, IndexError) as error:
        LOG.warning('annotation %s: unreadable segmentation ignored (%r)', annotation_id, error)
        return empty


# ----------------------------------------------------------------------------
# Targets
# ----------------------------------------------------------------------------

def positive_int(name, value):
    """`value` as an int if it is a positive integer (numpy integers too; not bool or float), else a
    ValueError naming `name`."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError('%s must be a positive integer, got %r' % (name, value))
    return int(value)


def check_input_size(input_size, stride):
    """ValueError unless input_size = n*stride + 1 with n >= 1.

    Only such inputs put the network's output cell j at input pixel j*stride, where the targets put it
    (config.py's convention): on other sizes the backbone's SAME-padded max pool shifts the features against
    the targets by a fraction of a stride. A silent misalignment would cost a whole training run; train.py
    refuses such an INPUT_SIZE for the same reason.
    """
    if input_size < stride + 1 or (input_size - 1) % stride:
        below = (input_size - 1) // stride * stride + 1
        sizes = ('%d or %d' % (below, below + stride)) if below > stride else str(stride + 1)
        raise ValueError('input_size must be n*stride+1 (n >= 1) so the output grid meets the input pixels as the '
                         'targets assume; got %d at stride %d: use %s' % (input_size, stride, sizes))


def check_target_inputs(keypoints, masks_grid, crowd_grid, grid, input_shape, stride):
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
    grid_text = 'input_shape %s at stride %d gives a %dx%d grid' % (tuple(input_shape[:2]), stride, grid[0],
                                                                     grid[1])
    if masks_grid.shape[1:] != tuple(grid):
        raise ValueError('make_targets: masks_grid is %s but %s' % (masks_grid.shape, grid_text))
    if crowd_grid.shape != tuple(grid):
        raise ValueError('make_targets: crowd_grid is %s but %s' % (crowd_grid.shape, grid_text))
    return keypoints, masks_grid, crowd_grid


def make_targets(keypoints, masks_grid, crowd_grid, input_shape, stride, annotated=None, radius=None):
    """PersonLab target maps of one sample on the output grid (HELPERS.md contract).

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
      radius: disk radius R in input px (config.RADIUS).
    Returns:
      dict of float32 [H', W', C] maps named as heads.TARGET_CHANNELS.
    Raises:
      ValueError naming the argument whose shape disagrees with the others or is not a positive integer.
    """
    radius = config.RADIUS if radius is None else radius
    stride = positive_int('stride', stride)
    if len(input_shape) < 2 or min(input_shape[:2]) < 1:
        raise ValueError('make_targets: input_shape must be (H, W[, C]) with H, W >= 1, got %s' % (input_shape,))
    rows, cols = transformer.grid_shape(input_shape, stride)
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


def padded_shape(image_shape, stride):
    """(int, int): the smallest (n_h*s + 1, n_w*s + 1) that holds an (H, W[, C]) image."""
    return tuple(((side - 1 + stride - 1) // stride) * stride + 1 for side in image_shape[:2])


def pad_to_grid(image, stride):
    """Pads bottom/right with config.PAD_VALUE to the padded_shape sides (the image itself if already so)."""
    height, width = image.shape[:2]
    out_height, out_width = padded_shape(image.shape, stride)
    if (out_height, out_width) == (height, width):
        return image
    return cv2.copyMakeBorder(image, 0, out_height - height, 0, out_width - width, cv2.BORDER_CONSTANT,
                              value=tuple(float(v) for v in config.PAD_VALUE))


def encode_example(example, stride):
    """Targets of an example WITHOUT augmentation (eval.py's oracle mode).

    The image is padded bottom/right (config.PAD_VALUE) to the next n*s + 1 size; keypoints are unchanged
    (input pixels = source pixels) and persons with a labelled keypoint count as annotated.

    Args:
      example: dict from CocoPersons.load_example.
      stride: output stride.
    Returns:
      dict 'image' uint8 [H_pad, W_pad, 3] and the maps of make_targets.
    """
    padded = pad_to_grid(example['image'], stride)
    out_height, out_width = padded.shape[:2]
    identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    masks = transformer.warp_masks_to_grid(example['masks'], identity, (out_height, out_width), stride)
    crowd = transformer.warp_masks_to_grid(example['crowd_mask'], identity, (out_height, out_width), stride)
    targets = make_targets(example['keypoints'], masks, crowd, padded.shape, stride)
    targets['image'] = padded
    return targets


def augment_example(example, rng, input_size=None, stride=None):
    """One augmented training sample: a random transform (transformer.random_affine) and its targets.

    Persons keep their "annotated" status from the source annotation: a person whose keypoints all left the
    crop still counts as annotated (its visible pixels rightly hold no keypoint), one that never had a
    labelled keypoint stays an ignore region for the keypoint losses.

    Args:
      example: dict from CocoPersons.load_example.
      rng: numpy Generator or int seed; the same seed gives the same sample.
      input_size: side of the square input (config.INPUT_SIZE), ideally n*stride + 1 (SampleGenerator
        requires it: check_input_size).
      stride: output stride (config.TRAIN_OUTPUT_STRIDE).
    Returns:
      dict 'image' uint8 [S, S, 3] and the maps of make_targets on the ((S-1)//s + 1)^2 grid.
    """
    input_size = config.INPUT_SIZE if input_size is None else input_size
    stride = config.TRAIN_OUTPUT_STRIDE if stride is None else stride
    output_shape = (input_size, input_size)
    matrix, flip = transformer.random_affine(rng, example['image'].shape, output_shape)
    warped = transformer.apply_affine(example, matrix, flip, output_shape, stride)
    annotated = transformer.labelled(example['keypoints']).any(axis=1)
    targets = make_targets(warped['keypoints'], warped['masks'], warped['crowd_mask'], output_shape, stride,
                           annotated=annotated)
    targets['image'] = warped['image']
    return targets


# ----------------------------------------------------------------------------
# Batches from worker processes
# ----------------------------------------------------------------------------

def sample_seed(seed, epoch, image_id):
    """np.random.SeedSequence of one sample: fixed by (seed, epoch, image id), whatever worker makes it."""
    return np.random.SeedSequence([int(seed), _SAMPLE_STREAM, int(epoch), int(image_id)])


def epoch_order(image_ids, seed, epoch):
    """list of the image ids (any order in, all of them out) in the shuffled order of epoch `epoch` (int)."""
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _ORDER_STREAM, int(epoch)]))
    return [image_ids[i] for i in rng.permutation(len(image_ids))]


def make_sample(dataset, image_id, seed, input_size, stride):
    """One augmented sample of `dataset` (CocoPersons): the dict of augment_example, seeded by `seed`
    (SeedSequence or int), or the tuple ('skip', file name, reason) if its image is unreadable."""
    try:
        example = dataset.load_example(image_id)
    except ImageReadError as error:
        return ('skip', dataset.file_name(image_id), str(error))
    return augment_example(example, np.random.default_rng(seed), input_size, stride)


def sample_layout(input_size, stride):
    """[(name, shape, dtype)] of one sample of a square input: the image and the maps of heads.TARGET_CHANNELS."""
    rows, cols = transformer.grid_shape((input_size, input_size), stride)
    layout = [('image', (input_size, input_size, 3), np.dtype(np.uint8))]
    return layout + [(name, (rows, cols, channels), np.dtype(np.float32))
                     for name, channels in heads.TARGET_CHANNELS.items()]


RING_PREFIX = 'personlab_ring_'  # shared-memory name: <prefix><creator pid>_<random>
SHM_DIR = '/dev/shm'  # where Linux keeps named shared memory


def remove_stale_rings(shm_dir=SHM_DIR):
    """Frees the SampleRing memory of processes that no longer exist (a process group killed outright gives
    nobody the chance to unlink it), and only theirs. Returns the names removed."""
    removed = []
    try:
        names = os.listdir(shm_dir)
    except OSError:  # no /dev/shm (not Linux): nothing to look after
        return removed
    for name in names:
        if not name.startswith(RING_PREFIX):
            continue
        try:
            pid = int(name[len(RING_PREFIX):].split('_')[0])
            os.kill(pid, 0)
        except ValueError:
            continue
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                os.remove(os.path.join(shm_dir, name))
                removed.append(name)
        except PermissionError:  # alive, another user's
            continue
    if removed:
        LOG.warning('freed the shared memory of dead trainings: %s', ', '.join(removed))
    return removed


class SampleRing(object):
    """Shared memory for `count` samples: workers write a sample into a slot, the parent copies it out.

    This replaces pickling ~4 MB per sample through a pipe (several copies on both sides) by one copy in the
    worker and one in the parent. Pickling a SampleRing (spawn, forkserver) attaches to the same memory by name;
    a forked worker inherits the mapping. The parent that created it frees it with close().
    """

    def __init__(self, layout, count):
        self.layout = layout
        self.count = count
        self.slot_bytes = sum(int(np.prod(shape)) * dtype.itemsize for _, shape, dtype in layout)
        remove_stale_rings()
        self.memory = shared_memory.SharedMemory(name='%s%d_%s' % (RING_PREFIX, os.getpid(), os.urandom(4).hex()),
                                                 create=True, size=max(1, self.slot_bytes * count))
        self._owner = True

    def __getstate__(self):
        return {'layout': self.layout, 'count': self.count, 'slot_bytes': self.slot_bytes,
                'name': self.memory.name}

    def __setstate__(self, state):
        self.layout, self.count, self.slot_bytes = state['layout'], state['count'], state['slot_bytes']
        self.memory = shared_memory.SharedMemory(name=state['name'])
        self._owner = False

    def views(self, slot):
        """dict name -> numpy view of slot `slot` (drop the views before close())."""
        views, offset = {}, slot * self.slot_bytes
        for name, shape, dtype in self.layout:
            views[name] = np.ndarray(shape, dtype, buffer=self.memory.buf, offset=offset)
            offset += int(np.prod(shape)) * dtype.itemsize
        return views

    def write(self, slot, sample):
        """Copies a sample (dict name -> array shaped as the layout) into slot `slot`."""
        views = self.views(slot)
        for name in views:
            views[name][...] = sample[name]

    def close(self):
        """Detaches; the creating process also frees the memory (unlink)."""
        if self._owner:
            self.memory.unlink()
        try:
            self.memory.close()
        except BufferError:  # a view still lives somewhere; the mapping goes away with it
            pass


_WORKER = {}


def _die_with_parent(parent_pid):
    """Linux: the kernel ends this worker when its parent process dies, so a killed trainer leaves no orphans."""
    try:
        libc = ctypes.CDLL('libc.so.6', use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    try:
        os.kill(parent_pid, 0)
    except ProcessLookupError:  # the trainer died before prctl took effect
        os._exit(1)


def config_values():
    """dict name -> value of config.py's settings as they are now in this process (programs may override a
    few at run time)."""
    return {name: value for name, value in vars(config).items() if name.isupper()}


def _init_worker(dataset, ring, input_size, stride, parent_pid, settings):
    """Worker start-up: parent-death signal, the parent's config values (config_values()), the state that
    _worker_sample uses (dataset, SampleRing, input size and stride in px)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle; it shuts us down
    _die_with_parent(parent_pid)
    # No cv2.setNumThreads here: in a forked child it deadlocks on the parent's copied thread pool.
    # A spawned or forkserver worker imports config.py afresh: give it the parent's run-time values.
    for name, value in settings.items():
        setattr(config, name, value)
    _WORKER.update(dataset=dataset, ring=ring, input_size=input_size, stride=stride)


def _worker_sample(image_id, seed, slot):
    """Makes a sample into ring slot `slot`; returns None, or the skip tuple of make_sample."""
    sample = make_sample(_WORKER['dataset'], image_id, seed, _WORKER['input_size'], _WORKER['stride'])
    if isinstance(sample, tuple):
        return sample
    _WORKER['ring'].write(slot, sample)
    return None


def stop_workers(executor, grace=None):
    """Shuts a ProcessPoolExecutor down; workers still running after `grace` seconds
    (config.WORKER_STOP_GRACE) are killed and logged with their pid.

    (shutdown(wait=True) alone would wait forever on a stuck worker.)
    """
    grace = config.WORKER_STOP_GRACE if grace is None else grace
    processes = list((getattr(executor, '_processes', None) or {}).values())
    manager = getattr(executor, '_executor_manager_thread', None)
    executor.shutdown(wait=False, cancel_futures=True)
    running = {process.sentinel: process for process in processes}
    deadline = time.monotonic() + grace
    while running and time.monotonic() < deadline:
        for sentinel in multiprocessing.connection.wait(list(running), deadline - time.monotonic()):
            running.pop(sentinel)
    for process in running.values():
        LOG.warning('data worker %d still busy %g s after shutdown: killed', process.pid, grace)
        process.kill()
    if manager is not None:
        manager.join(grace)  # it reaps the workers


class SampleGenerator(object):
    """Batches of augmented samples, made by worker processes.

    Iterating starts `num_workers` processes (0: samples are made in the calling process, same results) and
    yields dicts of stacked arrays (TARGET_NAMES, batch axis first; fresh arrays each batch). Workers write
    their samples into a shared-memory ring (SampleRing), at most `prefetch` each in flight.

    Images are shuffled each epoch; samples flow across epoch boundaries, so every batch is full (with a
    finite `epochs` the last may be smaller). Each sample is seeded by (seed, epoch, image id) and results
    come back in order, so the stream is the same for any number of workers. Workers see config.py's values
    as they are in this process when iteration starts.

    An unreadable image is logged once with its file name, skipped and counted: `skipped` counts FILES (each
    unreadable image once, however many epochs meet it), `skipped_files` lists their paths. Once its failure
    is known it is not read again (with workers, tasks already in flight may read it once more); its place
    in the shuffles stays, so the batches do not depend on the number of workers. A worker silent for
    `timeout` seconds raises TimeoutError rather than hanging the run. Workers stop when iteration ends, when
    the consumer stops early (the iterator is closed or dropped), on an error, or if this process dies. On
    Linux a worker also ends when the thread that started it (the one that asked for the first batch) ends,
    so iterate from a thread that lives as long as the run (train.py uses the main thread).

    Args:
      dataset: CocoPersons.
      batch_size: samples per batch (config.BATCH_SIZE).
      input_size: square input side, n*stride + 1 (config.INPUT_SIZE).
      stride: output stride (config.TRAIN_OUTPUT_STRIDE).
      num_workers: worker processes (config.NUM_WORKERS).
      seed: base seed (config.SEED).
      epochs: number of passes over the data; None for an endless stream.
      prefetch: samples in flight per worker (config.PREFETCH_PER_WORKER).
      start_method: multiprocessing start method (config.DATA_START_METHOD).
      timeout: seconds to wait for one sample before declaring a worker stuck (config.WORKER_TIMEOUT).
      shard: (index, count) for one of `count` training machines (train.py under TF_CONFIG): the stream
        is cut into blocks of batch_size samples dealt in turn to the machines, so block i*count + index
        is this machine's batch i, and the machines' batches i, in index order, are the batch of
        count*batch_size samples one machine would make without `shard` (short of unreadable images,
        which each machine replaces from its own blocks). Every machine shuffles alike; each makes only
        its own samples. None: the whole stream.
    Raises:
      ValueError naming the argument if batch_size, input_size or stride is not a positive integer, or if
      input_size is not n*stride + 1 (check_input_size); ValueError if the dataset has no image.
    """

    def __init__(self, dataset, batch_size=None, input_size=None, stride=None, num_workers=None, seed=None,
                 epochs=None, prefetch=None, start_method=None, timeout=None, shard=None):
        self.dataset = dataset
        self.batch_size = positive_int('batch_size', config.BATCH_SIZE if batch_size is None else batch_size)
        self.input_size = positive_int('input_size', config.INPUT_SIZE if input_size is None else input_size)
        self.stride = positive_int('stride', config.TRAIN_OUTPUT_STRIDE if stride is None else stride)
        check_input_size(self.input_size, self.stride)
        self.num_workers = config.NUM_WORKERS if num_workers is None else int(num_workers)
        self.seed = config.SEED if seed is None else int(seed)
        self.epochs = epochs
        self.prefetch = config.PREFETCH_PER_WORKER if prefetch is None else int(prefetch)
        self.start_method = config.DATA_START_METHOD if start_method is None else start_method
        self.timeout = timeout
        self.shard = (0, 1) if shard is None else (int(shard[0]), int(shard[1]))
        if not 0 <= self.shard[0] < self.shard[1]:
            raise ValueError('shard must be (index, count) with 0 <= index < count, got %r' % (shard,))
        if not len(dataset.image_ids):
            raise ValueError('no image in %s' % getattr(dataset, 'annotation_file', dataset))
        self.skipped = 0
        self.skipped_files = []
        self.samples = 0
        self.worker_pids = []
        self._bad_ids = set()
        self._active = None

    def __iter__(self):
        self.close()
        batches = self._batches()
        # A weak reference: a consumer that drops its iterator (e.g. breaks out of a for loop) frees it, and
        # the iterator's cleanup stops the workers; close() is there for explicit shutdown.
        self._active = weakref.ref(batches)
        return batches

    def close(self):
        """Stops the workers of the running iteration, if any."""
        batches = self._active() if self._active is not None else None
        self._active = None
        if batches is not None:
            batches.close()

    def __enter__(self):
        return self

    def __exit__(self, *unused):
        self.close()

    def _tasks(self):
        """(image id, seed) of every sample to make, epoch after epoch.

        Each epoch permutes ALL image ids, known-bad ones included, so the order never depends on when a
        failure became known (with workers, tasks are drawn up to num_workers * prefetch ahead of the results).
        Ids already known bad are not handed out again; that changes no result, since they give no sample.
        With a shard, positions are counted in that whole stream, so the blocks never depend on failures.
        """
        index, count = self.shard
        epoch, position = 0, 0
        while self.epochs is None or epoch < self.epochs:
            self._check_some_readable()
            for image_id in epoch_order(self.dataset.image_ids, self.seed, epoch):
                mine = position // self.batch_size % count == index
                position += 1
                if mine and image_id not in self._bad_ids:
                    yield image_id, sample_seed(self.seed, epoch, image_id)
            epoch += 1

    def _check_some_readable(self):
        if len(self._bad_ids) >= len(self.dataset.image_ids):
            raise RuntimeError('every image of %s is unreadable (%d skipped)' % (
                getattr(self.dataset, 'image_dir', self.dataset), self.skipped))

    def _skip(self, image_id, file_name, reason):
        """Records an unreadable image once, however many of its tasks were in flight."""
        if image_id in self._bad_ids:
            return
        self._bad_ids.add(image_id)
        self.skipped += 1
        self.skipped_files.append(file_name)
        LOG.warning('skipping unreadable image %s (%s); %d skipped so far', file_name, reason, self.skipped)
        self._check_some_readable()

    def _results(self, tasks):
        """(image id, sample dict or skip tuple) in task order, at most num_workers * prefetch in flight.

        With workers, a sample dict is a view of shared memory, valid until the next result is asked for.
        """
        if self.num_workers <= 0:
            for image_id, seed in tasks:
                yield image_id, make_sample(self.dataset, image_id, seed, self.input_size, self.stride)
            return
        in_flight = self.num_workers * max(self.prefetch, 1)
        ring = SampleRing(sample_layout(self.input_size, self.stride), in_flight)
        self.worker_pids = []
        context = multiprocessing.get_context(self.start_method)
        executor = concurrent.futures.ProcessPoolExecutor(
            self.num_workers, mp_context=context, initializer=_init_worker,
            initargs=(self.dataset, ring, self.input_size, self.stride, os.getpid(), config_values()))
        pending = collections.deque()
        try:
            for number, (image_id, seed) in enumerate(tasks):
                # Task `number` writes into slot number % in_flight, free once the oldest task is consumed.
                if len(pending) >= in_flight:
                    yield self._result(ring, *pending.popleft())
                slot = number % in_flight
                pending.append((image_id, slot, executor.submit(_worker_sample, image_id, seed, slot)))
                # Recorded so that tests can check every worker is gone after shutdown.
                self.worker_pids = sorted(set(self.worker_pids) | set(executor._processes or {}))
            while pending:
                yield self._result(ring, *pending.popleft())
        finally:
            stop_workers(executor)
            ring.close()

    def _result(self, ring, image_id, slot, future):
        timeout = config.WORKER_TIMEOUT if self.timeout is None else self.timeout
        try:
            skip = future.result(timeout=timeout)
        except concurrent.futures.TimeoutError:
            raise TimeoutError('no sample from the data workers in %.0f s (image %s): a worker is stuck' % (
                timeout, self.dataset.file_name(image_id)))
        return image_id, skip if skip is not None else ring.views(slot)

    def _batches(self):
        results = self._results(self._tasks())
        layout = sample_layout(self.input_size, self.stride)
        batch, filled = None, 0
        try:
            for image_id, sample in results:
                if isinstance(sample, tuple):
                    self._skip(image_id, *sample[1:])
                    continue
                if batch is None:
                    batch = {name: np.empty((self.batch_size,) + shape, dtype) for name, shape, dtype in layout}
                for name in batch:
                    batch[name][filled] = sample[name]
                del sample  # may view shared memory that the next result reuses
                self.samples += 1
                filled += 1
                if filled == self.batch_size:
                    yield batch
                    batch, filled = None, 0
            if filled:
                yield {name: array[:filled] for name, array in batch.items()}
        finally:
            results.close()
