"""plot.py: pictures of the input's size, skeletons only where keypoints exist, masks and map views."""
import cv2
import numpy as np
import pytest

import config
import plot
import post_proc
import scenes

STRIDE = 8


@pytest.fixture(scope='module')
def scene():
    rng = np.random.RandomState(0)
    shape = (193, 257)
    people = scenes.random_people(2, shape, rng, height_range=(120, 150), unlabelled=0.2)
    masks = scenes.body_masks(people, shape, STRIDE)
    outputs = scenes.target_maps(people, masks, shape, STRIDE)
    image = np.full(shape + (3,), 40, np.uint8)
    return image, people, outputs, post_proc.decode(outputs, STRIDE, shape)


def test_people_picture_has_the_input_size_and_is_written(scene, tmp_path):
    image, _, _, decoded = scene
    picture = plot.draw_people(image, decoded)
    assert picture.shape == image.shape and picture.dtype == np.uint8
    assert (picture != image).any(axis=2).mean() > 0.05  # masks and limbs were drawn
    assert (image == 40).all(), 'the input image must not change'
    path = plot.save_image(str(tmp_path / 'out' / 'people.png'), picture)
    written = cv2.imread(path)[..., ::-1]
    assert written.shape == image.shape and np.array_equal(written, picture)


def test_missing_keypoints_are_not_drawn():
    image = np.zeros((120, 160, 3), np.uint8)
    keypoints = np.zeros((config.NUM_KEYPOINTS, 3), np.float32)  # everything missing, at (0, 0) as in COCO
    left_shoulder, left_elbow = config.KEYPOINTS.index('left_shoulder'), config.KEYPOINTS.index('left_elbow')
    keypoints[left_shoulder] = [100, 60, 2]
    keypoints[left_elbow] = [130, 90, 0.9]
    picture = plot.draw_skeleton(image, keypoints)
    assert not picture[:20, :20].any(), 'something was drawn at (0, 0)'
    limb = config.EDGES.index((left_shoulder, left_elbow))
    assert tuple(picture[75, 115]) == plot.LIMB_COLOURS[limb]  # the one limb whose ends both exist
    assert picture[:, :80].sum() == 0


def test_limbs_have_distinct_colours():
    assert len(set(plot.LIMB_COLOURS)) == len(config.EDGES)


def test_mask_overlay_colours_only_the_masks():
    image = np.full((50, 60, 3), 100, np.uint8)
    mask = np.zeros((50, 60), bool)
    mask[10:20, 30:40] = True
    picture = plot.overlay_masks(image, [mask, None])
    assert (picture[mask] != 100).any(axis=1).all()
    assert (picture[~mask] == 100).all()
    with pytest.raises(ValueError, match='shape'):
        plot.overlay_masks(image, [mask[:, :10]])


def test_heatmap_and_hough_views_have_the_input_size(scene):
    image, _, outputs, _ = scene
    heat = plot.heatmap_view(image, outputs['heatmaps'], STRIDE, kinds=[0, 5])
    hough = post_proc.hough_voting(outputs['heatmaps'], outputs['short_offsets'], STRIDE)
    votes = plot.hough_view(image, hough, post_proc.hough_cell(config.RADIUS))
    for picture in (heat, votes):
        assert picture.shape == image.shape and picture.dtype == np.uint8
        assert (picture != image).any()
    # The Hough view is hottest on keypoints, the heatmap view over whole disks.
    assert (votes != image).any(axis=2).mean() < (heat != image).any(axis=2).mean()


def test_bad_inputs():
    with pytest.raises(ValueError, match='uint8'):
        plot.draw_skeleton(np.zeros((10, 10), np.uint8), np.zeros((config.NUM_KEYPOINTS, 3)))
    with pytest.raises(ValueError, match='NaN'):
        plot.map_view(np.zeros((10, 10, 3), np.uint8), np.full((2, 2), np.nan), 8)
