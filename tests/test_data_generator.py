"""data_generator.py on the real COCO sample: reader, targets of every head, batches from worker processes."""
import functools
import json
import logging
import multiprocessing
import os
import signal
import struct
import subprocess
import sys
import threading
import time
from multiprocessing import shared_memory

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

import config
import data_generator
import images
import heads
import transformer

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CROWD_IMAGE = 34246  # the sample's one crowd RLE
EMPTY_IMAGE = 33909  # no person at all
TOLERANCE = 1e-3  # px: offsets must point at their keypoint this closely


@pytest.fixture(scope='module')
def train(coco_sample):
    return data_generator.CocoPersons(coco_sample['train_annotations'], coco_sample['train_images'])


@pytest.fixture(scope='module')
def val(coco_sample):
    return data_generator.CocoPersons(coco_sample['val_annotations'], coco_sample['val_images'])


@pytest.fixture(scope='module')
def raw_annotations(coco_sample):
    with open(coco_sample['train_annotations']) as f:
        return json.load(f)


# ----------------------------------------------------------------------------
# An independent check of every target map against its definition (docs/data.md#target-maps)
# ----------------------------------------------------------------------------

def check_targets(targets, keypoints, masks_grid, crowd_grid, stride, annotated=None):
    """Asserts the contract, brute force over all cells and keypoints; returns counts of what it checked."""
    rows, cols = targets['heatmaps'].shape[:2]
    for name, channels in heads.TARGET_CHANNELS.items():
        assert targets[name].shape == (rows, cols, channels), name
        assert targets[name].dtype == np.float32, name
        assert np.isfinite(targets[name]).all(), name
    for name in ('heatmaps', 'short_valid', 'mid_valid', 'long_valid', 'segmentation', 'seg_weights', 'kp_weights'):
        assert set(np.unique(targets[name])) <= {0.0, 1.0}, name
    counts = dict(keypoints_in_disk=0, short=0, mid=0, long=0, overlap=0, crowd=0, unannotated=0)
    labelled = keypoints[..., 2] > 0
    annotated = labelled.any(axis=1) if annotated is None else annotated
    cells = np.stack(np.meshgrid(np.arange(cols) * stride, np.arange(rows) * stride), axis=-1).astype(np.float64)
    owners = {}
    for k in range(config.NUM_KEYPOINTS):
        heat, valid = targets['heatmaps'][..., k], targets['short_valid'][..., k]
        short = targets['short_offsets'][..., 2 * k:2 * k + 2]
        np.testing.assert_array_equal(heat, valid)
        assert (short[valid == 0] == 0).all()
        persons = np.flatnonzero(labelled[:, k])
        if persons.size == 0:
            assert not heat.any()
            owners[k] = np.full((rows, cols), -1)
            continue
        points = keypoints[persons, k, :2].astype(np.float64)
        distance = np.linalg.norm(cells[:, :, None, :] - points[None, None], axis=-1)  # [H', W', M]
        nearest = distance.min(axis=-1)
        clear = np.abs(nearest - config.RADIUS) > 1e-3  # off the disk boundary, where rounding may decide
        np.testing.assert_array_equal(heat[clear] == 1, nearest[clear] <= config.RADIUS)
        # Every labelled keypoint inside the grid lies in its disk: its nearest cell is on.
        for x, y in points:
            i, j = int(np.floor(y / stride + 0.5)), int(np.floor(x / stride + 0.5))
            if 0 <= i < rows and 0 <= j < cols:
                assert heat[i, j] == 1
                counts['keypoints_in_disk'] += 1
        # Short offsets: cell + offset is the nearest type-k keypoint.
        on = valid == 1
        target = cells[on] + short[on]
        to_points = np.linalg.norm(target[:, None, :] - points[None], axis=-1).min(axis=1)
        assert (to_points < TOLERANCE).all()
        np.testing.assert_allclose(np.linalg.norm(short[on], axis=-1), nearest[on], atol=TOLERANCE)
        counts['short'] += int(on.sum())
        order = np.sort(distance, axis=-1)
        unique = (order[..., 1] - order[..., 0] > 1e-6) if persons.size > 1 else np.ones((rows, cols), bool)
        owner = np.where((nearest <= config.RADIUS) & unique, persons[np.argmin(distance, axis=-1)], -1)
        owners[k] = np.where((nearest <= config.RADIUS) & ~unique, -2, owner)  # -2: a tie, skip
    for e, (k, l) in enumerate(config.DIRECTED_EDGES):
        valid = targets['mid_valid'][..., e] == 1
        mid = targets['mid_offsets'][..., 2 * e:2 * e + 2]
        assert (mid[~valid] == 0).all()
        owner = owners[k]
        known = owner != -2
        expected = (owner >= 0) & labelled[np.maximum(owner, 0), l] if len(keypoints) else owner >= 0
        np.testing.assert_array_equal(valid[known], expected[known])
        on = valid & known
        partner = keypoints[owner[on], l, :2]
        np.testing.assert_allclose(cells[on] + mid[on], partner, atol=TOLERANCE)
        counts['mid'] += int(on.sum())
    coverage = masks_grid.sum(axis=0)
    np.testing.assert_array_equal(targets['segmentation'][..., 0], coverage > 0)
    np.testing.assert_array_equal(targets['seg_weights'][..., 0], ~crowd_grid)
    unannotated = masks_grid[~annotated].any(axis=0) if len(masks_grid) else np.zeros((rows, cols), bool)
    np.testing.assert_array_equal(targets['kp_weights'][..., 0], ~(crowd_grid | unannotated))
    counts['crowd'] = int(crowd_grid.sum())
    counts['unannotated'] = int((unannotated & ~crowd_grid).sum())
    counts['overlap'] = int((coverage > 1).sum())
    owner = np.argmax(masks_grid, axis=0) if len(masks_grid) else np.zeros((rows, cols), int)
    for k in range(config.NUM_KEYPOINTS):
        valid = targets['long_valid'][..., k] == 1
        long = targets['long_offsets'][..., 2 * k:2 * k + 2]
        assert (long[~valid] == 0).all()
        expected = (coverage == 1) & ~crowd_grid
        if len(masks_grid):
            expected &= annotated[owner] & labelled[owner, k]
        np.testing.assert_array_equal(valid, expected)
        # Inside a mask, long offsets point at that person's keypoint.
        np.testing.assert_allclose(cells[valid] + long[valid], keypoints[owner[valid], k, :2], atol=TOLERANCE)
        counts['long'] += int(valid.sum())
    return counts


def add_counts(total, counts):
    for key, value in counts.items():
        total[key] = total.get(key, 0) + value
    return total


def grid_masks(masks, grid, stride):
    """Masks on the grid without augmentation, independently of transformer.py: every s-th pixel."""
    result = np.zeros(masks.shape[:-2] + grid, bool)
    sub = masks[..., ::stride, ::stride]
    result[..., :sub.shape[-2], :sub.shape[-1]] = sub
    return result


# ----------------------------------------------------------------------------
# Reader
# ----------------------------------------------------------------------------

def test_reader_gives_persons_masks_and_crowd(train, raw_annotations):
    assert len(train.image_ids) == 30 and EMPTY_IMAGE in train.image_ids
    example = train.load_example(CROWD_IMAGE)
    height, width = example['image'].shape[:2]
    assert example['image'].dtype == np.uint8 and example['image'].shape == (428, 640, 3)
    annotations = [a for a in raw_annotations['annotations'] if a['image_id'] == CROWD_IMAGE]
    persons = [a for a in annotations if not a['iscrowd']]
    crowds = [a for a in annotations if a['iscrowd']]
    assert example['keypoints'].shape == (len(persons), config.NUM_KEYPOINTS, 3) == (13, 17, 3)
    assert example['masks'].shape == (13, height, width) and example['masks'].dtype == bool
    for keypoints, mask, annotation in zip(example['keypoints'], example['masks'], persons):
        np.testing.assert_array_equal(keypoints.ravel(), annotation['keypoints'])
        polygons = mask_utils.frPyObjects(annotation['segmentation'], height, width)
        np.testing.assert_array_equal(mask, mask_utils.decode(mask_utils.merge(polygons)).astype(bool))
    assert len(crowds) == 1 and isinstance(crowds[0]['segmentation'], dict)
    rle = mask_utils.frPyObjects(crowds[0]['segmentation'], height, width)
    crowd = mask_utils.decode(rle).astype(bool)
    assert crowd.sum() > 100
    np.testing.assert_array_equal(example['crowd_mask'], crowd)


def test_missing_paths_fail_at_once_naming_them(tmp_path, coco_sample):
    missing_file = str(tmp_path / 'nothing.json')
    missing_dir = str(tmp_path / 'no_images')
    with pytest.raises(FileNotFoundError, match='nothing.json'):
        data_generator.CocoPersons(missing_file, coco_sample['train_images'])
    with pytest.raises(FileNotFoundError, match='no_images'):
        data_generator.CocoPersons(coco_sample['train_annotations'], missing_dir)
    with pytest.raises(FileNotFoundError) as error:
        data_generator.CocoPersons(missing_file, missing_dir)
    assert 'nothing.json' in str(error.value) and 'no_images' in str(error.value)
    broken = tmp_path / 'broken.json'
    broken.write_text('{"images": ')
    with pytest.raises(ValueError, match='broken.json'):
        data_generator.CocoPersons(str(broken), coco_sample['train_images'])
    dogs = tmp_path / 'dogs.json'
    dogs.write_text(json.dumps({'images': [], 'annotations': [], 'categories': [{'id': 18, 'name': 'dog'}]}))
    with pytest.raises(ValueError, match='dogs.json.*person'):
        data_generator.CocoPersons(str(dogs), coco_sample['train_images'])


def _jpeg_with_exif_orientation(rgb, orientation):
    """JPEG bytes of an RGB image with an EXIF APP1 segment holding only the Orientation tag (0x0112)."""
    ok, encoded = cv2.imencode('.jpg', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    assert ok
    # Big-endian TIFF header, one IFD with one SHORT entry (tag, type 3, count 1, value left-aligned), no next IFD.
    tiff = b'MM\x00\x2a' + struct.pack('>IH', 8, 1) + struct.pack('>HHIHH', 0x0112, 3, 1, orientation, 0)
    payload = b'Exif\x00\x00' + tiff + struct.pack('>I', 0)
    encoded = encoded.tobytes()
    return encoded[:2] + b'\xff\xe1' + struct.pack('>H', 2 + len(payload)) + payload + encoded[2:]


def test_images_are_read_as_stored_without_exif_rotation(tmp_path):
    # COCO's width/height and annotations refer to the stored pixels, whatever the EXIF orientation says.
    pixels = np.zeros((48, 64, 3), np.uint8)
    pixels[:, :8] = (255, 0, 0)
    path = tmp_path / 'turned.jpg'
    path.write_bytes(_jpeg_with_exif_orientation(pixels, 6))  # 6: "rotate 90 degrees to display"
    # The tag is real: a plain OpenCV read turns the image.
    assert cv2.imread(str(path), cv2.IMREAD_COLOR).shape == (64, 48, 3)
    image = images.read_image(str(path), as_stored=True)
    assert image.shape == (48, 64, 3)
    assert image[:, :6, 0].mean() > 200 and image[:, :6, 2].mean() < 50  # RGB order, left band red


# ----------------------------------------------------------------------------
# Targets
# ----------------------------------------------------------------------------

def test_encoded_targets_match_their_definition(train, val):
    stride = 8
    total = {}
    for dataset in (train, val):
        for image_id in dataset.image_ids:
            example = dataset.load_example(image_id)
            targets = data_generator.encode_example(example, stride)
            height, width = example['image'].shape[:2]
            padded = targets['image']
            assert (padded.shape[0] - 1) % stride == 0 and (padded.shape[1] - 1) % stride == 0
            assert 0 <= padded.shape[0] - height < stride and 0 <= padded.shape[1] - width < stride
            np.testing.assert_array_equal(padded[:height, :width], example['image'])
            grid = targets['heatmaps'].shape[:2]
            assert grid == ((padded.shape[0] - 1) // stride + 1, (padded.shape[1] - 1) // stride + 1)
            counts = check_targets(targets, example['keypoints'], grid_masks(example['masks'], grid, stride),
                                   grid_masks(example['crowd_mask'], grid, stride), stride)
            add_counts(total, counts)
    # The checks above ran on real content: keypoints, all offset kinds, overlaps, crowd, unannotated persons.
    assert total['keypoints_in_disk'] > 300 and total['short'] > 1000 and total['mid'] > 1000
    assert total['long'] > 1000 and total['overlap'] > 0 and total['crowd'] > 0 and total['unannotated'] > 0


@pytest.mark.parametrize('input_size,stride', [(257, 8), (401, 16)])
def test_augmented_targets_match_their_definition(train, input_size, stride):
    total = {}
    for image_id in (CROWD_IMAGE, 78381, 93620, 260906, 444294, EMPTY_IMAGE):
        example = train.load_example(image_id)
        for seed in range(3):
            targets = data_generator.augment_example(example, np.random.default_rng(seed), input_size, stride)
            # The same draw, step by step: transform, then targets of the transformed persons.
            shape = (input_size, input_size)
            matrix, flip = transformer.random_affine(np.random.default_rng(seed), example['image'].shape, shape)
            warped = transformer.apply_affine(example, matrix, flip, shape, stride)
            np.testing.assert_array_equal(targets['image'], warped['image'])
            assert targets['image'].shape == shape + (3,) and targets['image'].dtype == np.uint8
            annotated = (example['keypoints'][..., 2] > 0).any(axis=1)
            counts = check_targets(targets, warped['keypoints'], warped['masks'], warped['crowd_mask'], stride,
                                   annotated)
            add_counts(total, counts)
    assert total['keypoints_in_disk'] > 50 and total['short'] > 100 and total['mid'] > 100 and total['long'] > 100


def test_crowd_rle_of_34246_is_in_the_ignore_masks(train):
    example = train.load_example(CROWD_IMAGE)
    for stride in (4, 8, 16):  # a ~24x24 px region: 1 cell at stride 16, dozens at stride 4
        targets = data_generator.encode_example(example, stride)
        grid = targets['heatmaps'].shape[:2]
        crowd = grid_masks(example['crowd_mask'], grid, stride)
        assert crowd.sum() >= example['crowd_mask'].sum() // stride ** 2 // 2 >= 1
        assert (targets['seg_weights'][crowd] == 0).all() and (targets['kp_weights'][crowd] == 0).all()
        assert (targets['long_valid'][crowd] == 0).all()
    # Through an augmentation that keeps the whole image in view.
    shape = (401, 401)
    matrix, flip = transformer.random_affine(5, example['image'].shape, shape, scale_range=(1, 1),
                                             max_translation=0)
    warped = transformer.apply_affine(example, matrix, flip, shape, 4)
    targets = data_generator.make_targets(warped['keypoints'], warped['masks'], warped['crowd_mask'], shape, 4)
    crowd = warped['crowd_mask']
    assert crowd.sum() >= 4
    assert (targets['seg_weights'][crowd] == 0).all() and (targets['kp_weights'][crowd] == 0).all()


def test_images_without_people_are_valid_samples(train):
    example = train.load_example(EMPTY_IMAGE)
    assert example['keypoints'].shape == (0, config.NUM_KEYPOINTS, 3) and example['masks'].shape[0] == 0
    for targets in (data_generator.encode_example(example, 8),
                    data_generator.augment_example(example, np.random.default_rng(0), 257, 8)):
        for name in heads.TARGET_CHANNELS:
            expected = 1.0 if name in ('seg_weights', 'kp_weights') else 0.0
            assert (targets[name] == expected).all(), name


def test_targets_stay_on_the_output_grid_and_small(train):
    example = train.load_example(93620)
    targets = data_generator.augment_example(example, np.random.default_rng(0), 801, 16)
    assert targets['image'].shape == (801, 801, 3)
    for name in heads.TARGET_CHANNELS:
        assert targets[name].shape[:2] == (51, 51), name
    size = sum(targets[name].nbytes for name in heads.TARGET_CHANNELS)
    assert size < 3e6  # a few MB, where input-resolution maps would take ~100 MB


def test_make_targets_names_inconsistent_arguments(train):
    example = train.load_example(CROWD_IMAGE)
    shape, stride = (129, 129), 8
    matrix, flip = transformer.random_affine(0, example['image'].shape, shape)
    warped = transformer.apply_affine(example, matrix, flip, shape, stride)
    keypoints, masks, crowd = warped['keypoints'], warped['masks'], warped['crowd_mask']
    assert len(keypoints) == len(masks) == 13
    bad_calls = [
        ('masks_grid has 12 persons but keypoints has 13', (keypoints, masks[:-1], crowd, shape, stride)),
        ('masks_grid has 13 persons but keypoints has 12', (keypoints[:-1], masks, crowd, shape, stride)),
        (r'masks_grid is \(13, 17, 17\).*input_shape \(257, 257\) at stride 8 gives a 33x33 grid',
         (keypoints, masks, crowd, (257, 257), stride)),
        (r'crowd_grid is \(17, 16\)', (keypoints, masks, crowd[:, :-1], shape, stride)),
        (r'keypoints must be \[N, 17, 3\].*\(13, 17, 2\)', (keypoints[..., :2], masks, crowd, shape, stride)),
        ('stride must be a positive integer, got 0', (keypoints, masks, crowd, shape, 0)),
        ('input_shape', (keypoints, masks, crowd, (0, 129), stride)),
    ]
    for message, args in bad_calls:
        with pytest.raises(ValueError, match=message):
            data_generator.make_targets(*args)
    with pytest.raises(ValueError, match='annotated has 2 entries but keypoints has 13 persons'):
        data_generator.make_targets(keypoints, masks, crowd, shape, stride, annotated=[True, False])


@pytest.mark.parametrize('input_size,stride,message', [
    (0, 8, 'input_size must be a positive integer, got 0'),
    (-129, 8, 'input_size must be a positive integer'),
    (129.0, 8, 'input_size must be a positive integer, got 129.0'),
    ('129', 8, 'input_size must be a positive integer'),
    (129, 0, 'stride must be a positive integer, got 0'),
    (129, 2.5, 'stride must be a positive integer'),
    (128, 8, r'input_size must be n\*stride\+1.*128 at stride 8.*121 or 129'),
    (401, 16, None),
    (np.int64(129), np.int64(8), None),
])
def test_generator_checks_input_size_and_stride(train, input_size, stride, message):
    if message is None:
        generator = data_generator.SampleGenerator(train, batch_size=1, input_size=input_size, stride=stride,
                                                   num_workers=0)
        assert (generator.input_size, generator.stride) == (int(input_size), int(stride))
        return
    with pytest.raises(ValueError, match=message):
        data_generator.SampleGenerator(train, batch_size=1, input_size=input_size, stride=stride, num_workers=0)


def _tiny_image(path, height=48, width=64):
    image = np.full((height, width, 3), 90, np.uint8)
    image[10:30, 20:40] = 200
    assert cv2.imwrite(str(path), image)


def test_degenerate_annotations_neither_crash_nor_give_nan(tmp_path):
    images = tmp_path / 'images'
    images.mkdir()
    _tiny_image(images / 'a.jpg')
    keypoints_outside = [-50.0, -50.0, 2, 5000.0, 20.0, 2, 30.0, 1e9, 1] + [0] * 42
    keypoints_inside = [30.0, 20.0, 2, 32.0, 18.0, 2, 28.0, 18.0, 2] + [0] * 42
    annotations = [
        {'segmentation': [[10, 10, 10, 10, 10, 10]], 'keypoints': keypoints_inside, 'iscrowd': 0},  # zero area
        {'segmentation': [], 'keypoints': keypoints_inside, 'iscrowd': 0},  # no mask at all
        {'segmentation': [[1, 2, 3, 4]], 'keypoints': [0] * 51, 'iscrowd': 0},  # 2-point polygon, no keypoints
        {'segmentation': [[500, 500, 600, 500, 600, 600]], 'bbox': [500, 500, 100, 100],
         'keypoints': keypoints_outside, 'iscrowd': 0},  # box and mask outside the image
        {'segmentation': [[0, 0, 63, 0, 63, 47, 0, 47]], 'keypoints': [float('nan')] * 51, 'iscrowd': 0},
        {'segmentation': [[-100, -100, 200, -100, 200, 200]], 'keypoints': [30, 20, 2] * 5, 'iscrowd': 0},
        {'segmentation': {'size': [10, 10], 'counts': [0, 100]}, 'iscrowd': 1},  # RLE of another size
        {'segmentation': {'size': [48, 64], 'counts': [100, 50, 2922]}, 'iscrowd': 1},
    ]
    for i, annotation in enumerate(annotations):
        annotation.update(id=i + 1, image_id=1, category_id=1)
    annotation_file = tmp_path / 'degenerate.json'
    annotation_file.write_text(json.dumps({
        'images': [{'id': 1, 'file_name': 'a.jpg', 'height': 48, 'width': 64}],
        'annotations': annotations, 'categories': [{'id': 1, 'name': 'person'}]}))
    dataset = data_generator.CocoPersons(str(annotation_file), str(images))
    example = dataset.load_example(1)
    assert example['keypoints'].shape == (6, config.NUM_KEYPOINTS, 3)
    assert np.isfinite(example['keypoints']).all()
    assert not example['masks'][:4].any() and example['masks'][4].mean() > 0.9
    assert example['crowd_mask'].sum() == 50
    for targets in [data_generator.encode_example(example, stride) for stride in (1, 8, 16)] + [
            data_generator.augment_example(example, np.random.default_rng(seed), 65, 8) for seed in range(4)]:
        for name, value in targets.items():
            assert np.isfinite(value.astype(np.float64)).all(), name
    targets = data_generator.encode_example(example, 8)
    grid = targets['heatmaps'].shape[:2]
    check_targets(targets, example['keypoints'], grid_masks(example['masks'], grid, 8),
                  grid_masks(example['crowd_mask'], grid, 8), 8)


# ----------------------------------------------------------------------------
# Batches from worker processes
# ----------------------------------------------------------------------------

def _batches(generator, count):
    batches = []
    for batch in generator:
        batches.append(batch)
        if len(batches) == count:
            break
    generator.close()
    return batches


def test_batches_follow_the_contract(train):
    generator = data_generator.SampleGenerator(train, batch_size=3, input_size=129, stride=8, num_workers=0, seed=1)
    batch = _batches(generator, 1)[0]
    assert set(batch) == set(data_generator.TARGET_NAMES)
    assert batch['image'].shape == (3, 129, 129, 3) and batch['image'].dtype == np.uint8
    for name, channels in heads.TARGET_CHANNELS.items():
        assert batch[name].shape == (3, 17, 17, channels) and batch[name].dtype == np.float32, name


def _assert_same_batches(first, second):
    assert len(first) == len(second)
    for a, b in zip(first, second):
        for name in data_generator.TARGET_NAMES:
            np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.mark.parametrize('start_method', ['fork', 'forkserver'])
def test_generator_is_reproducible_and_the_same_for_any_number_of_workers(train, start_method, monkeypatch):
    # A run-time override must reach the workers too (a forkserver worker imports config.py afresh).
    monkeypatch.setattr(config, 'ROTATION_DEGREES', 25.0)

    def run(seed, workers):
        generator = data_generator.SampleGenerator(train, batch_size=4, input_size=129, stride=8,
                                                   num_workers=workers, seed=seed, start_method=start_method)
        return _batches(generator, 3)

    serial, parallel, other = run(7, 0), run(7, 2), run(8, 2)
    _assert_same_batches(serial, parallel)
    assert not np.array_equal(serial[0]['image'], other[0]['image'])


def test_an_unreadable_image_changes_nothing_between_serial_and_worker_runs(coco_sample, raw_annotations,
                                                                           tmp_path):
    """4 good images and a corrupt one: more tasks are in flight (2 workers x 4) than there are images, so
    the workers' task list runs into the next epochs before the failure is seen: the stream must not care."""
    dataset = _dataset_with_bad_images(coco_sample, raw_annotations, tmp_path, [CROWD_IMAGE, 93620, 78381,
                                                                                EMPTY_IMAGE], missing=False)
    runs, generators = [], []
    for workers in (0, 2):
        generators.append(data_generator.SampleGenerator(dataset, batch_size=3, input_size=65, stride=8,
                                                         num_workers=workers, seed=3, epochs=3, prefetch=4))
        runs.append(list(generators[-1]))
    _assert_same_batches(*runs)
    assert [len(batch['image']) for batch in runs[0]] == [3, 3, 3, 3]
    for generator in generators:
        # Counted once, as a file, however many epochs (and tasks in flight) met it.
        assert generator.skipped == 1 and [os.path.basename(f) for f in generator.skipped_files] == ['corrupt.jpg']
        assert generator.samples == 3 * 4


def test_each_epoch_is_a_new_shuffle(train):
    ids = train.image_ids
    orders = [data_generator.epoch_order(ids, 0, epoch) for epoch in range(3)]
    for order in orders:
        assert sorted(order) == sorted(ids)
    assert orders[0] != orders[1] != orders[2] and orders[0] != ids
    assert data_generator.epoch_order(ids, 0, 1) == orders[1]
    # Finite run: every image once per epoch, augmented differently in each epoch.
    generator = data_generator.SampleGenerator(train, batch_size=30, input_size=65, stride=8, num_workers=0,
                                               seed=0, epochs=2)
    first, second = list(generator)
    assert generator.samples == 60 and first['image'].shape[0] == 30
    assert not np.array_equal(first['image'], second['image'])


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _exists(shared_memory_name):
    """Whether a named shared-memory block exists (attaching fails once it is unlinked)."""
    try:
        block = shared_memory.SharedMemory(name=shared_memory_name)
    except FileNotFoundError:
        return False
    block.close()
    return True


def test_workers_stop_when_the_consumer_stops_early(train, monkeypatch):
    rings = []

    class RecordedRing(data_generator.SampleRing):
        def __init__(self, *args):
            super().__init__(*args)
            rings.append(self.memory.name)
            assert _exists(self.memory.name)

    monkeypatch.setattr(data_generator, 'SampleRing', RecordedRing)
    generator = data_generator.SampleGenerator(train, batch_size=2, input_size=129, stride=8, num_workers=2, seed=0)
    iterator = iter(generator)
    next(iterator)
    pids = list(generator.worker_pids)
    assert len(pids) == 2 and all(_alive(pid) for pid in pids)
    assert len(rings) == 1 and _exists(rings[0])
    generator.close()
    assert not any(_alive(pid) for pid in pids)
    assert not _exists(rings[0])  # the sample ring is freed
    # A consumer that just stops (breaks out of its for loop, dropping the iterator) also ends the workers.
    for batch in generator:
        break
    pids = list(generator.worker_pids)
    assert pids and not any(_alive(pid) for pid in pids)
    assert not multiprocessing.active_children()
    assert len(rings) == 2 and not _exists(rings[1])


def _stuck_on_crowd_image(pid_file, dataset, image_id, seed, input_size, stride, options=None):
    """make_sample that never returns on the crowd image: it notes its pid, then waits on an Event nobody sets."""
    if image_id == CROWD_IMAGE:
        with open(pid_file, 'w') as f:
            f.write(str(os.getpid()))
        threading.Event().wait()
    return data_generator.augment_example(dataset.load_example(image_id), 0, input_size, stride, options=options)


def test_a_stuck_worker_is_an_error_not_a_hang(train, monkeypatch, tmp_path, caplog):
    # Forked workers inherit the patched function; the stuck one must be killed at shutdown.
    pid_file = str(tmp_path / 'stuck.pid')
    monkeypatch.setattr(data_generator, 'make_sample', functools.partial(_stuck_on_crowd_image, pid_file))
    monkeypatch.setattr(config, 'WORKER_STOP_GRACE', 0.5)
    # The crowd image first: results are awaited in task order, so the stuck sample is the first and only
    # wait that can run out, however slowly the healthy workers go on a loaded machine.
    order = data_generator.epoch_order
    monkeypatch.setattr(data_generator, 'epoch_order',
                        lambda *args: sorted(order(*args), key=lambda image_id: image_id != CROWD_IMAGE))
    generator = data_generator.SampleGenerator(train, batch_size=2, input_size=65, stride=8, num_workers=2,
                                               seed=0, start_method='fork', timeout=1.0)
    with caplog.at_level(logging.WARNING, logger='data_generator'):
        with pytest.raises(TimeoutError, match='000000034246.jpg'):
            list(generator)
    with open(pid_file) as f:
        stuck = int(f.read())
    assert stuck in generator.worker_pids
    assert 'data worker %d still busy' % stuck in caplog.text and 'killed' in caplog.text
    assert not any(_alive(pid) for pid in generator.worker_pids)
    assert not multiprocessing.active_children()


def test_workers_die_with_their_parent(coco_sample, tmp_path):
    """A trainer killed with SIGKILL leaves no orphan worker behind."""
    script = tmp_path / 'child.py'
    script.write_text('''
import os, sys, time
sys.path.insert(0, %r)
import data_generator
import images
dataset = data_generator.CocoPersons(%r, %r)
generator = data_generator.SampleGenerator(dataset, batch_size=2, input_size=65, stride=8, num_workers=2)
iterator = iter(generator)
next(iterator)
print(' '.join(str(pid) for pid in generator.worker_pids), flush=True)
time.sleep(60)
''' % (REPO_DIR, coco_sample['train_annotations'], coco_sample['train_images']))
    child = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(pid) for pid in child.stdout.readline().split()]
        assert len(pids) == 2 and all(_alive(pid) for pid in pids)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
        deadline = time.time() + 10
        while any(_alive(pid) for pid in pids) and time.time() < deadline:
            time.sleep(0.1)
        assert not any(_alive(pid) for pid in pids)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def _dataset_with_bad_images(coco_sample, raw_annotations, tmp_path, good_ids, missing=True):
    """A copy of a few sample records (images symlinked) plus a corrupt and (`missing`) a missing image."""
    images = tmp_path / 'images'
    images.mkdir(parents=True)
    records = [im for im in raw_annotations['images'] if im['id'] in good_ids]
    for record in records:
        os.symlink(os.path.join(coco_sample['train_images'], record['file_name']), images / record['file_name'])
    (images / 'corrupt.jpg').write_bytes(b'\xff\xd8 this is not a jpeg')
    records = records + [{'id': 1, 'file_name': 'corrupt.jpg', 'height': 480, 'width': 640}]
    if missing:
        records.append({'id': 2, 'file_name': 'missing.jpg', 'height': 480, 'width': 640})
    annotations = [a for a in raw_annotations['annotations'] if a['image_id'] in good_ids]
    annotation_file = tmp_path / 'annotations.json'
    annotation_file.write_text(json.dumps({'images': records, 'annotations': annotations,
                                           'categories': raw_annotations['categories']}))
    return data_generator.CocoPersons(str(annotation_file), str(images))


def test_unreadable_images_are_logged_skipped_and_counted(coco_sample, raw_annotations, tmp_path, caplog):
    good = [CROWD_IMAGE, 93620, EMPTY_IMAGE]
    dataset = _dataset_with_bad_images(coco_sample, raw_annotations, tmp_path, good)
    for image_id, name in ((1, 'corrupt.jpg'), (2, 'missing.jpg')):
        with pytest.raises(images.ImageReadError, match=name):
            dataset.load_example(image_id)
    generator = data_generator.SampleGenerator(dataset, batch_size=2, input_size=65, stride=8, num_workers=2,
                                               seed=0, epochs=3)
    with caplog.at_level(logging.WARNING, logger='data_generator'):
        batches = list(generator)
    assert sum(len(batch['image']) for batch in batches) == generator.samples == 3 * len(good)
    # `skipped` counts files, each once over the 3 epochs; each is logged once.
    assert generator.skipped == 2 and len(generator.skipped_files) == 2
    assert sorted(os.path.basename(f) for f in generator.skipped_files) == ['corrupt.jpg', 'missing.jpg']
    assert caplog.text.count('corrupt.jpg cannot be decoded') == 1 and caplog.text.count('missing.jpg is missing') == 1
    # Only unreadable images: a clear error, not an endless loop.
    only_bad = _dataset_with_bad_images(coco_sample, raw_annotations, tmp_path / 'bad', [])
    for workers in (0, 2):
        with pytest.raises(RuntimeError, match='every image .* is unreadable'):
            list(data_generator.SampleGenerator(only_bad, batch_size=2, input_size=65, stride=8,
                                                num_workers=workers))


@pytest.mark.skipif(not os.path.isdir(data_generator.SHM_DIR), reason='needs Linux /dev/shm')
def test_shared_memory_of_a_killed_process_group_is_freed_at_the_next_start():
    """A process group killed outright leaves its ring in /dev/shm (its resource tracker dies with it); the
    next SampleRing frees it, and leaves the ring of a live process alone."""
    code = ('import time, numpy as np, data_generator\n'
            'ring = data_generator.SampleRing([("x", (4096,), np.dtype(np.uint8))], 2)\n'
            'print(ring.memory.name, flush=True)\ntime.sleep(600)\n')
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    processes = [subprocess.Popen([sys.executable, '-c', code], cwd=repo, stdout=subprocess.PIPE, text=True,
                                  start_new_session=True) for _ in range(2)]
    ring = None
    try:
        dead, alive = [p.stdout.readline().strip() for p in processes]
        os.killpg(processes[0].pid, signal.SIGKILL)
        processes[0].wait()
        assert os.path.exists(os.path.join(data_generator.SHM_DIR, dead))
        ring = data_generator.SampleRing([('x', (16,), np.dtype(np.uint8))], 1)
        assert not os.path.exists(os.path.join(data_generator.SHM_DIR, dead))
        assert os.path.exists(os.path.join(data_generator.SHM_DIR, alive))
        assert ring.memory.name.startswith('%s%d_' % (data_generator.RING_PREFIX, os.getpid()))
    finally:
        if ring is not None:
            ring.close()
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                process.wait()
