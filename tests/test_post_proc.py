"""post_proc.decode on maps of known people (clean target maps and network-like noisy ones) and bad inputs."""
import cv2
import numpy as np
import pytest

import config
import post_proc
import scenes

STRIDE = 8
K = config.NUM_KEYPOINTS


def make_scene(seed, num, size, unlabelled=0.0, noise=0.0, height_range=None):
    shape = (size, size)
    people, masks, outputs = scenes.scene(seed, num, shape, STRIDE, unlabelled=unlabelled, noise=noise,
                                          height_range=height_range)
    return people, masks, outputs, shape


def grid_scene(seed, columns, rows, cell, unlabelled=0.0, noise=0.0):
    """People that do not overlap: one per cell of a columns x rows layout, each about as tall as its cell."""
    rng = np.random.RandomState(seed)
    shape = (rows * cell[0] + 1, columns * cell[1] + 1)
    people = []
    for r in range(rows):
        for c in range(columns):
            person = scenes.random_people(1, cell, rng, height_range=(0.7 * cell[0], 0.85 * cell[0]),
                                             unlabelled=unlabelled)
            person[..., 0] += c * cell[1]
            person[..., 1] += r * cell[0]
            people.append(person)
    people = np.concatenate(people)
    masks = scenes.body_masks(people, shape, STRIDE)
    maps = scenes.target_maps(people, masks, shape, STRIDE)
    return people, masks, scenes.network_like(maps, STRIDE, rng, noise) if noise else maps, shape


def match(people, decoded):
    """For every true person, the decoded person closest on its labelled keypoints, and the errors [N, K]
    (nan where unlabelled; 1000 where the decoded keypoint has no score, i.e. was not found)."""
    assert decoded, 'nothing decoded'
    found = np.stack([p['keypoints'][:, :2] for p in decoded])  # [P, K, 2]
    scored = np.stack([p['keypoints'][:, 2] > 0 for p in decoded])  # [P, K]
    best, errors = [], []
    for person in people:
        labelled = person[:, 2] > 0
        error = np.where(scored, np.linalg.norm(found - person[None, :, :2], axis=-1), 1e3)  # [P, K]
        mean = np.where(labelled[None], error, 0).sum(axis=1) / max(labelled.sum(), 1)
        j = int(np.argmin(mean))
        best.append(j)
        errors.append(np.where(labelled, error[j], np.nan))
    return best, np.array(errors)


def grid_to_input(mask_grid, shape):
    """Nearest-cell upsampling of a grid mask to input pixels."""
    rows = np.minimum(np.rint(np.arange(shape[0]) / STRIDE).astype(int), mask_grid.shape[0] - 1)
    cols = np.minimum(np.rint(np.arange(shape[1]) / STRIDE).astype(int), mask_grid.shape[1] - 1)
    return mask_grid[rows][:, cols]


# ----------------------------------------------------------------------------------------------------------
# Known people, clean maps
# ----------------------------------------------------------------------------------------------------------
def test_overlapping_people_with_unlabelled_keypoints_decode_within_one_pixel():
    # 8 scenes of 6 people 110-170 px tall in 385x385 that overlap; 15% of keypoints unlabelled cut their trees.
    # Left out: two same-type keypoints of different people closer than 2r (ambiguous for any decoder that
    # rejects within r, PAPER.md), and people with less than 30% of their body uncovered (target maps define
    # no long-range offsets where masks overlap, so nothing can rejoin their fragments).
    total, wrong, overlapping = 0, 0, 0
    for seed in range(8):
        people, masks, outputs, shape = make_scene(seed, 6, 385, unlabelled=0.15, height_range=(110, 170))
        overlapping += int((masks.sum(axis=0) > 1).any())
        decoded = post_proc.decode(outputs, STRIDE, shape)
        best, errors = match(people, decoded)
        for n, person in enumerate(people):
            if (masks[n] & (masks.sum(axis=0) == 1)).sum() < 0.3 * masks[n].sum():
                continue
            others = np.linalg.norm(people[:, :, :2] - person[None, :, :2], axis=-1)
            others[n] = np.inf
            others[people[:, :, 2] == 0] = np.inf
            clear = (person[:, 2] > 0) & (others.min(axis=0) >= 2 * config.NMS_RADIUS)
            total += clear.sum()
            wrong += (errors[n][clear] > 1.0).sum()  # off, or in place but not found (score 0)
    assert overlapping >= 6 and total > 400
    assert wrong <= 0.05 * total, '%d of %d labelled keypoints off by more than 1 px' % (wrong, total)


def test_partly_overlapping_people_decode_exactly():
    rng = np.random.RandomState(12)
    shape = (257, 361)
    people = scenes.random_people(3, (257, 200), rng, height_range=(200, 220), unlabelled=0.15)
    people[:, :, 0] += np.array([0.0, 80.0, 160.0])[:, None]  # side by side, overlapping arms and legs
    masks = scenes.body_masks(people, shape, STRIDE)
    assert (masks.sum(axis=0) > 1).sum() > 50
    same_type = np.linalg.norm(people[:, None, :, :2] - people[None, :, :, :2], axis=-1)[~np.eye(3, dtype=bool)]
    assert same_type.min() >= 2 * config.NMS_RADIUS  # not ambiguous
    decoded = post_proc.decode(scenes.target_maps(people, masks, shape, STRIDE), STRIDE, shape)
    best, errors = match(people, decoded)
    assert len(set(best)) == 3 and np.nanmax(errors) <= 1.0


def test_missing_keypoint_does_not_cut_off_the_branch_behind_it():
    rng = np.random.RandomState(3)
    shape = (257, 257)
    people = scenes.random_people(1, shape, rng, height_range=(180, 200))
    left_shoulder, nose, left_hip = config.KEYPOINTS.index('left_shoulder'), 0, config.KEYPOINTS.index('left_hip')
    people[0, [nose, left_shoulder, left_hip], 2] = 0  # the left arm and left leg hang off missing joints
    masks = scenes.body_masks(people, shape, STRIDE)
    outputs = scenes.target_maps(people, masks, shape, STRIDE)
    decoded = post_proc.decode(outputs, STRIDE, shape)
    assert len(decoded) == 1, 'the fragments of one person must not become several people'
    labelled = people[0, :, 2] > 0
    error = np.linalg.norm(decoded[0]['keypoints'][:, :2] - people[0, :, :2], axis=1)
    assert error[labelled].max() <= 1.0


def test_sub_pixel_positions_and_output_format():
    rng = np.random.RandomState(4)
    shape = (241, 401)
    left = scenes.random_people(1, (241, 200), rng, height_range=(150, 170))
    right = scenes.random_people(1, (241, 200), rng, height_range=(150, 170))
    right[..., 0] += 200
    people = np.concatenate([left, right])
    people[..., :2] += 0.37  # off the pixel grid
    masks = scenes.body_masks(people, shape, STRIDE)
    decoded = post_proc.decode(scenes.target_maps(people, masks, shape, STRIDE), STRIDE, shape)
    _, errors = match(people, decoded)
    assert np.nanmax(errors) < 0.05
    assert len(decoded) == 2
    scores = [p['score'] for p in decoded]
    assert scores == sorted(scores, reverse=True)
    for person in decoded:
        assert person['keypoints'].dtype == np.float32 and person['keypoints'].shape == (K, 3)
        assert person['mask'].dtype == bool and person['mask'].shape == shape
        assert 0.9 < person['score'] <= 1 and isinstance(person['score'], float)
        assert np.all((person['keypoints'][:, 2] > 0.9) & (person['keypoints'][:, 2] <= 1))


def test_masks_follow_the_bodies():
    people, masks, outputs, shape = make_scene(5, 5, 321, height_range=(110, 200))
    decoded = post_proc.decode(outputs, STRIDE, shape)
    best, _ = match(people, decoded)
    alone = masks.sum(axis=0) == 1
    # The outline at input resolution is p_S upsampled bilinearly (> 0.5): thin limbs lose their blocky ends.
    outline = cv2.warpAffine(outputs['segmentation'][..., 0], np.float32([[1.0 / STRIDE, 0, 0], [0, 1.0 / STRIDE, 0]]),
                             (shape[1], shape[0]), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP) > 0.5
    for n, j in enumerate(best):
        truth = grid_to_input(masks[n] & alone, shape) & outline  # overlaps carry no long-range target: skip
        mask = decoded[j]['mask']
        inside = (mask & truth).sum() / truth.sum()
        assert inside > 0.97, 'person %d: only %.2f of its own body assigned' % (n, inside)
        others = grid_to_input(masks[np.arange(len(people)) != n].any(axis=0) & alone, shape)
        assert (mask & others).sum() < 0.02 * mask.sum(), 'person %d took pixels of others' % n
    assert not np.any(np.sum([p['mask'] for p in decoded], axis=0) > 1), 'a pixel in two masks'


def test_more_than_fifty_people():
    people, masks, outputs, shape = grid_scene(6, 10, 6, (130, 80), unlabelled=0.1)
    decoded = post_proc.decode(outputs, STRIDE, shape)
    best, errors = match(people, decoded)
    assert len(people) == 60 and len(set(best)) == 60
    assert np.nanmax(errors) <= 1.0


def test_noisy_network_like_maps():
    # Offsets with 2-4 px of noise where defined and junk elsewhere, blurred heatmaps with background noise.
    people, masks, outputs, shape = grid_scene(7, 4, 2, (200, 100), noise=1.0)
    decoded = post_proc.decode(outputs, STRIDE, shape)
    best, errors = match(people, decoded)
    assert len(set(best)) == len(people)
    assert np.median(errors) < 1.5 and np.mean(errors < 5.0) > 0.9
    # The true people outrank whatever the noise adds.
    true_scores = sorted(decoded[j]['score'] for j in best)
    others = [p['score'] for i, p in enumerate(decoded) if i not in best]
    assert not others or max(others) < true_scores[0]


# ----------------------------------------------------------------------------------------------------------
# Pieces
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('hough_stride', [1, 2, 4, 8])
def test_hough_mass_and_peak_at_every_resolution(hough_stride):
    people, masks, outputs, shape = grid_scene(8, 2, 1, (200, 140))  # noses far apart and off the border
    hough = post_proc.hough_voting(outputs['heatmaps'], outputs['short_offsets'], STRIDE, hough_stride)
    assert hough.shape == ((shape[0] - 1) // hough_stride + 1, (shape[1] - 1) // hough_stride + 1, K)
    nose = 0
    # A keypoint whose whole disk lies inside the image gathers a mass of ~1 (grid sum approximates pi R^2).
    assert hough[..., nose].sum() == pytest.approx(2.0, rel=0.05)
    kind, row, col, _ = post_proc.find_seeds(hough)
    for person in people:
        near = (kind == nose) & (np.hypot(col * hough_stride - person[nose, 0], row * hough_stride - person[nose, 1])
                                 <= hough_stride)
        assert near.any()


def test_instance_scale_uses_found_keypoints_only():
    pos = np.zeros((1, K, 2), np.float32)
    pos[0, 5:9] = [[100, 100], [140, 100], [100, 190], [140, 190]]  # a 40 x 90 box; the rest sits at (0, 0)
    found = np.zeros((1, K), bool)
    found[0, 5:9] = True
    assert post_proc.instance_scales(pos, found)[0] == pytest.approx(np.sqrt(40 * 90))
    found[0, 5:] = False
    found[0, 5] = True  # one keypoint: a degenerate box falls back to the minimum scale
    assert post_proc.instance_scales(pos, found)[0] == config.MIN_INSTANCE_SCALE


def test_soft_nms_and_hard_oks_nms():
    rng = np.random.RandomState(9)
    pos = rng.uniform(0, 300, (3, K, 2)).astype(np.float32)
    pos[1] = pos[0] + 3.0  # person 1 duplicates person 0 within r
    pos[1, :8] += 50.0  # except for 8 keypoints
    scores = np.full((3, K), 0.9, np.float32)
    scores[1] = 0.8
    found = np.ones((3, K), bool)
    soft = post_proc.soft_nms_scores(pos, scores, found)
    assert soft[0] == pytest.approx(0.9) and soft[2] == pytest.approx(0.9)
    assert soft[1] == pytest.approx(0.8 * 8 / K)
    scales = np.full(3, 100.0, np.float32)
    pos[1] = pos[0] + 1.0
    keep = post_proc.oks_nms_keep(pos, found, scales, scores.mean(axis=1))
    assert keep.tolist() == [True, False, True]


def test_hard_oks_nms_option_decodes_the_same_people():
    people, masks, outputs, shape = make_scene(10, 4, 289, height_range=(120, 180))
    soft = post_proc.decode(outputs, STRIDE, shape, scoring='soft_nms')
    hard = post_proc.decode(outputs, STRIDE, shape, scoring='oks_nms')
    assert len(hard) == len(soft) == 4
    assert np.nanmax(match(people, hard)[1]) <= 1.0


# ----------------------------------------------------------------------------------------------------------
# Robustness
# ----------------------------------------------------------------------------------------------------------
def zero_outputs(shape):
    rows, cols = post_proc.grid_shape(shape, STRIDE)
    return {name: np.zeros((rows, cols, c), np.float32) for name, c in post_proc.OUTPUT_CHANNELS}


@pytest.mark.parametrize('shape', [(1, 1), (2, 3), (9, 17), (31, 8), (2001, 1601)])
def test_no_people_gives_an_empty_list_at_any_size(shape):
    assert post_proc.decode(zero_outputs(shape), STRIDE, shape) == []
    assert post_proc.decode(zero_outputs(shape), STRIDE, shape + (3,)) == []


def test_tiny_image_with_a_person():
    shape = (9, 9)
    people = np.zeros((1, K, 3), np.float32)
    people[0, :, :2] = 4.0
    people[0, :, 2] = 2
    masks = np.ones((1, 2, 2), bool)
    decoded = post_proc.decode(scenes.target_maps(people, masks, shape, STRIDE), STRIDE, shape)
    assert len(decoded) == 1
    assert np.allclose(decoded[0]['keypoints'][:, :2], 4.0, atol=1e-3)
    assert decoded[0]['mask'].all()


@pytest.mark.parametrize('offsets', ['zero', 'lattice'])
def test_saturated_maps_end_with_a_bounded_result(offsets):
    # Heatmaps and segmentation at 1 everywhere.  With zero offsets no keypoint is localised (every cell
    # votes for itself, no Hough mass gathers) and nothing is decoded.  With short offsets pulling to a
    # lattice every 16 px, every type has ~600 sharp keypoints: the decoder stops at config.MAX_PEOPLE.
    shape = (401, 401)
    outputs = zero_outputs(shape)
    outputs['heatmaps'][:] = 1.0
    outputs['segmentation'][:] = 1.0
    if offsets == 'lattice':
        rows, cols = post_proc.grid_shape(shape, STRIDE)
        x = np.arange(cols, dtype=np.float32) * STRIDE
        y = np.arange(rows, dtype=np.float32) * STRIDE
        outputs['short_offsets'][..., 0::2] = (np.round(x / 16) * 16 - x)[None, :, None]
        outputs['short_offsets'][..., 1::2] = (np.round(y / 16) * 16 - y)[:, None, None]
    decoded = post_proc.decode(outputs, STRIDE, shape)
    assert all(np.isfinite(p['keypoints']).all() and p['mask'].shape == shape for p in decoded)
    if offsets == 'zero':
        assert decoded == []
    else:
        assert len(decoded) == config.MAX_PEOPLE


def test_random_maps_end_with_a_valid_result():
    rng = np.random.RandomState(11)
    shape = (321, 257)
    outputs = {name: rng.uniform(0 if name in post_proc.PROBABILITY_OUTPUTS else -300,
                                 1 if name in post_proc.PROBABILITY_OUTPUTS else 300, value.shape).astype(np.float32)
               for name, value in zero_outputs(shape).items()}
    decoded = post_proc.decode(outputs, STRIDE, shape)
    assert len(decoded) <= config.MAX_PEOPLE
    for person in decoded:
        assert np.isfinite(person['keypoints']).all() and person['mask'].shape == shape


@pytest.mark.parametrize('name', [n for n, _ in post_proc.OUTPUT_CHANNELS])
@pytest.mark.parametrize('bad', [np.nan, np.inf, -np.inf])
def test_non_finite_outputs_raise_value_error_naming_them(name, bad):
    shape = (65, 65)
    outputs = zero_outputs(shape)
    outputs[name][3, 4, 0] = bad
    with pytest.raises(ValueError, match=name):
        post_proc.decode(outputs, STRIDE, shape)


def test_bad_inputs_raise_clear_errors():
    shape = (65, 65)
    outputs = zero_outputs(shape)
    with pytest.raises(ValueError, match='shape'):
        post_proc.decode(outputs, STRIDE, (81, 65))
    with pytest.raises(ValueError, match='logits'):
        post_proc.decode(dict(outputs, heatmaps=outputs['heatmaps'] + 2.0), STRIDE, shape)
    with pytest.raises(ValueError, match='mid_offsets'):
        post_proc.decode({k: v for k, v in outputs.items() if k != 'mid_offsets'}, STRIDE, shape)
    with pytest.raises(ValueError, match='stride'):
        post_proc.decode(outputs, 0, shape)
    with pytest.raises(ValueError, match='scoring'):
        post_proc.decode(outputs, STRIDE, shape, scoring='best')
