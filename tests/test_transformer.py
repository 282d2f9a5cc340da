"""transformer.py on real COCO images: one affine for image, masks and keypoints."""
import cv2
import numpy as np
import pytest

import config
import data_generator
import rescale
import transformer

SEEDS = range(8)


@pytest.fixture(scope='module')
def dataset(coco_sample):
    return data_generator.CocoPersons(coco_sample['train_annotations'], coco_sample['train_images'])


@pytest.fixture(scope='module')
def crowded(dataset):
    """Image 34246: 13 persons, a crowd RLE, persons without keypoints."""
    return dataset.load_example(34246)


@pytest.fixture(scope='module')
def posed(dataset):
    """Image 93620: 11 persons, most with all 17 keypoints."""
    return dataset.load_example(93620)


def test_unit_transform_is_identity():
    matrix = transformer.affine_matrix((480, 640), (480, 640), scale=1.0)
    np.testing.assert_allclose(matrix, [[1, 0, 0], [0, 1, 0]], atol=1e-12)


def test_fit_puts_longer_side_on_output():
    # Scale factor 1, no shift: the source's pixel extent [-0.5, W - 0.5] spans the output exactly.
    matrix, _ = transformer.random_affine(0, (300, 500), (401, 401), scale_range=(1, 1), max_translation=0,
                                          flip_probability=0)
    left, right = matrix @ [-0.5, 0, 1], matrix @ [499.5, 0, 1]
    assert left[0] == pytest.approx(-0.5) and right[0] == pytest.approx(400.5)


@pytest.mark.parametrize('name', ['crowded', 'posed'])
def test_flip_twice_is_identity(name, request):
    crowded = request.getfixturevalue(name)
    shape = crowded['image'].shape
    matrix = transformer.affine_matrix(shape, shape, scale=1.0, flip=True)
    once = transformer.apply_affine(crowded, matrix, True, shape, stride=1)
    twice = transformer.apply_affine(once, matrix, True, shape, stride=1)
    assert not np.array_equal(once['image'], crowded['image'])
    np.testing.assert_array_equal(twice['image'], crowded['image'])
    np.testing.assert_array_equal(twice['masks'], crowded['masks'])
    np.testing.assert_array_equal(twice['crowd_mask'], crowded['crowd_mask'])
    np.testing.assert_allclose(twice['keypoints'], crowded['keypoints'], atol=1e-4)
    # Once: the image is mirrored and left/right types are swapped.
    np.testing.assert_array_equal(once['image'], crowded['image'][:, ::-1])
    np.testing.assert_array_equal(once['masks'], crowded['masks'][:, :, ::-1])
    # Keypoint k of the source is keypoint FLIP_PERMUTATION[k] of the flipped image, mirrored in x.
    source, flipped = crowded['keypoints'], once['keypoints'][:, list(config.FLIP_PERMUTATION)]
    labelled = source[..., 2] > 0
    assert labelled.sum() >= 10
    np.testing.assert_array_equal(flipped[..., 2], source[..., 2])
    np.testing.assert_allclose(flipped[labelled][:, 0], shape[1] - 1 - source[labelled][:, 0], atol=1e-4)
    np.testing.assert_allclose(flipped[labelled][:, 1], source[labelled][:, 1], atol=1e-4)


def test_flip_permutation_is_an_involution_swapping_sides():
    permutation = np.array(config.FLIP_PERMUTATION)
    np.testing.assert_array_equal(permutation[permutation], np.arange(config.NUM_KEYPOINTS))
    for k, name in enumerate(config.KEYPOINTS):
        assert config.KEYPOINTS[permutation[k]] == name.replace('left', 'L').replace('right', 'left').replace(
            'L', 'right')


def _marker(shape, point, sigma):
    ys, xs = np.mgrid[:shape[0], :shape[1]]
    return np.exp(-((xs - point[0]) ** 2 + (ys - point[1]) ** 2) / (2.0 * sigma ** 2))


def test_keypoint_lands_on_marker_drawn_into_image(posed):
    """A marker drawn at a keypoint goes, through the image warp, where the keypoint goes (rotation on)."""
    image, keypoints = posed['image'], posed['keypoints']
    person, kind = np.argwhere(keypoints[..., 2] > 0)[0]
    point = keypoints[person, kind, :2] + [0.37, -0.21]  # a sub-pixel position
    blob = _marker(image.shape, point, sigma=4.0)[..., None]
    # White and black markers blended in: their difference is the marker alone, whatever the image.
    white = np.round(image * (1 - blob) + 255 * blob).astype(np.uint8)
    black = np.round(image * (1 - blob)).astype(np.uint8)
    moved = keypoints.copy()
    moved[person, kind, :2] = point
    checked = 0
    for seed in SEEDS:
        matrix, flip = transformer.random_affine(seed, image.shape, (257, 257), rotation_degrees=30.0)
        warped = transformer.warp_keypoints(moved, matrix, flip, (257, 257))
        slot = config.FLIP_PERMUTATION[kind] if flip else kind
        if warped[person, slot, 2] == 0:
            continue
        difference = (transformer.warp_image(white, matrix, (257, 257)).astype(np.float64) -
                      transformer.warp_image(black, matrix, (257, 257)).astype(np.float64)).mean(axis=2)
        ys, xs = np.mgrid[:257, :257]
        centre = np.array([(difference * xs).sum(), (difference * ys).sum()]) / difference.sum()
        np.testing.assert_allclose(warped[person, slot, :2], centre, atol=0.05)
        checked += 1
    assert checked >= 3


def test_keypoints_leaving_the_crop_become_unlabelled(posed):
    shape, out = posed['image'].shape, (129, 129)
    source = posed['keypoints']
    centre = np.array([(shape[1] - 1) / 2.0, (shape[0] - 1) / 2.0])
    # A 129 px window at scale 1 around the first labelled keypoint: most others fall outside.
    matrix = transformer.affine_matrix(shape, out, scale=1.0, translation=centre - source[source[..., 2] > 0][0, :2])
    warped = transformer.warp_keypoints(source, matrix, False, out)
    expected_xy = source[..., :2] + (matrix[:, 2])
    inside = (source[..., 2] > 0) & (expected_xy >= 0).all(-1) & (expected_xy <= 128).all(-1)
    assert inside.any() and (~inside & (source[..., 2] > 0)).any()
    np.testing.assert_array_equal(warped[..., 2] > 0, inside)
    np.testing.assert_allclose(warped[inside][:, :2], expected_xy[inside], atol=1e-4)
    assert (warped[~inside] == 0).all()


def _rotation(matrix):
    """Rotation angle in degrees of an affine matrix from random_affine (a flip negates the first row)."""
    return np.degrees(np.arctan2(abs(matrix[1, 0]), abs(matrix[1, 1])))


def test_same_seed_same_transform():
    shape = (428, 640)
    first = [transformer.random_affine(np.random.default_rng(s), shape, (401, 401)) for s in SEEDS]
    again = [transformer.random_affine(np.random.default_rng(s), shape, (401, 401)) for s in SEEDS]
    for (m1, f1), (m2, f2) in zip(first, again):
        np.testing.assert_array_equal(m1, m2)
        assert f1 == f2
    assert len({m.tobytes() for m, _ in first}) == len(first)
    assert {f for _, f in first} == {True, False}


def test_rotation_degrees_zero_means_no_rotation():
    shape = (428, 640)
    for seed in SEEDS:
        matrix, _ = transformer.random_affine(seed, shape, (401, 401), rotation_degrees=0)
        assert matrix[0, 1] == 0 and matrix[1, 0] == 0
    angles = [_rotation(transformer.random_affine(seed, shape, (401, 401), rotation_degrees=30.0)[0])
              for seed in SEEDS]
    assert all(0 < angle <= 30.0 for angle in angles)
    # The draws happen in the same order whatever the options: rotation changes nothing else.
    plain, flip = transformer.random_affine(1, shape, (401, 401), rotation_degrees=0)
    rotated, rotated_flip = transformer.random_affine(1, shape, (401, 401), rotation_degrees=30.0)
    assert flip == rotated_flip
    np.testing.assert_allclose(np.hypot(*rotated[:, 0]), np.hypot(*plain[:, 0]), rtol=1e-12)  # same scale


def test_rotation_default_follows_the_config(monkeypatch):
    # Rotation is off unless config.py turns it on (the paper does not rotate): the default is the config's
    # value, whatever a user sets there, so the shipped 0 means no rotation.
    shape = (428, 640)
    for degrees in (0.0, 25.0):
        monkeypatch.setattr(config, 'ROTATION_DEGREES', degrees)
        for seed in SEEDS:
            default, _ = transformer.random_affine(seed, shape, (401, 401))
            explicit, _ = transformer.random_affine(seed, shape, (401, 401), rotation_degrees=degrees)
            np.testing.assert_array_equal(default, explicit)
            assert (_rotation(default) > 0) == (degrees > 0)


def test_random_scale_and_shift_stay_within_the_configured_ranges(monkeypatch):
    """Over many draws, the factor on top of the fit spans config.SCALE_RANGE and the centre's shift spans
    +-config.MAX_TRANSLATION of the output side per axis, never beyond."""
    monkeypatch.setattr(config, 'SCALE_RANGE', (0.6, 1.4))
    monkeypatch.setattr(config, 'MAX_TRANSLATION', 0.15)
    monkeypatch.setattr(config, 'ROTATION_DEGREES', 0.0)
    shape, output = (300, 500), (401, 301)
    fit = min(401 / 300.0, 301 / 500.0)
    centre = np.array([(500 - 1) / 2.0, (300 - 1) / 2.0, 1.0])
    output_centre = np.array([(301 - 1) / 2.0, (401 - 1) / 2.0])
    factors, shifts = [], []
    for seed in range(400):
        matrix, _ = transformer.random_affine(seed, shape, output)
        factors.append(np.abs(np.linalg.det(matrix[:, :2])) ** 0.5 / fit)
        # A flip mirrors the shifted centre about the output centre: |shift| is the same.
        shifts.append(np.abs(matrix @ centre - output_centre) / [301, 401])
    factors, shifts = np.array(factors), np.array(shifts)
    assert 0.6 <= factors.min() < 0.65 and 1.35 < factors.max() <= 1.4, (factors.min(), factors.max())
    assert (shifts <= 0.15 + 1e-12).all() and (shifts.max(axis=0) > 0.14).all(), shifts.max(axis=0)


@pytest.mark.parametrize('stride', [8, 16])
def test_masks_go_straight_onto_the_grid(crowded, stride):
    shape, out = crowded['image'].shape, (257, 257)
    matrix, flip = transformer.random_affine(3, shape, out, rotation_degrees=20.0)
    grid = transformer.warp_masks_to_grid(crowded['masks'], matrix, out, stride)
    assert grid.shape == (len(crowded['masks']), 257 // stride + 1, 257 // stride + 1)
    # Independent reference: cv2's nearest warp at full resolution, then the grid cells.
    for mask, on_grid in zip(crowded['masks'], grid):
        full = cv2.warpAffine(mask.astype(np.uint8), matrix, out[::-1], flags=cv2.INTER_NEAREST)
        agreement = (full[::stride, ::stride].astype(bool) == on_grid).mean()
        assert agreement > 0.99
    assert grid.any()


def test_a_shrinking_augmentation_sees_the_pixels_inference_sees(posed):
    """A transform that shrinks as rescale.resize_longer_side does gives its very pixels (area averaging);
    plain bilinear warping gives other, aliased ones."""
    image = posed['image']
    longer_side = 257
    resized, (fx, fy) = rescale.resize_longer_side(image, longer_side)
    assert fx < 0.5  # a real shrink
    matrix = np.array([[fx, 0.0, 0.5 * fx - 0.5], [0.0, fy, 0.5 * fy - 0.5]])  # cv2.resize's pixel-centre map
    area = transformer.warp_image(image, matrix, resized.shape, shrink_by_area=True)
    bilinear = transformer.warp_image(image, matrix, resized.shape, shrink_by_area=False)
    assert np.abs(area.astype(int) - resized.astype(int)).max() <= 1
    assert np.abs(bilinear.astype(int) - resized.astype(int)).mean() > 2 * np.abs(
        area.astype(int) - resized.astype(int)).mean() + 1.0


def test_area_shrink_only_shrinks():
    image = np.zeros((60, 80, 3), np.uint8)
    for scale in (1.0, 1.5):
        matrix = transformer.affine_matrix(image.shape, (60, 80), scale=scale, angle=20.0, flip=True)
        same, same_matrix = transformer.area_shrink(image, matrix)
        assert same is image and np.array_equal(same_matrix, matrix)
    matrix = transformer.affine_matrix(image.shape, (30, 40), scale=0.5, angle=20.0, flip=True)
    small, small_matrix = transformer.area_shrink(image, matrix)
    assert small.shape == (30, 40, 3)
    # The composed matrix still maps every source point where the original does.
    corner = np.array([79.5, 59.5])
    in_small = (corner + 0.5) * 0.5 - 0.5
    np.testing.assert_allclose(small_matrix @ [in_small[0], in_small[1], 1], matrix @ [corner[0], corner[1], 1],
                               atol=1e-9)
