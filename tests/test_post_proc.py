"""post_proc.decode on maps of known people (clean target maps and network-like noisy ones) and bad inputs."""
import numpy as np
import pytest

import config
import heads
import post_proc
import scenes
import settings

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
    """For every true person, the decoded person that has most of its labelled keypoints (within 1 px, found),
    then the closest on them, and the errors [N, K] (nan where unlabelled; 1000 where the decoded keypoint has
    no score, i.e. was not found)."""
    assert decoded, 'nothing decoded'
    found = np.stack([p['keypoints'][:, :2] for p in decoded])  # [P, K, 2]
    scored = np.stack([p['keypoints'][:, 2] > 0 for p in decoded])  # [P, K]
    best, errors = [], []
    for person in people:
        labelled = person[:, 2] > 0
        error = np.where(scored, np.linalg.norm(found - person[None, :, :2], axis=-1), 1e3)  # [P, K]
        hits = ((error <= 1.0) & labelled[None]).sum(axis=1)
        mean = np.where(labelled[None] & scored, error, 0).sum(axis=1) / np.maximum((labelled[None] & scored).sum(axis=1), 1)
        j = int(np.lexsort((mean, -hits))[0])
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
    # Every labelled keypoint must be decoded to within 1 px, except where the information is not in the
    # maps:
    # - two same-type keypoints of different people closer than 2r: ambiguous for any decoder that rejects
    #   within r (docs/method.md#greedy-decoding);
    # - a keypoint outside its own person's mask, on another person's body: the long-range offsets there lead
    #   to that other person, so the rescue rightly refuses it (post_proc.belongs);
    # - people with less than 30% of their body unshared: target maps define no long-range offset where masks
    #   overlap, so fragments of their cut trees cannot always be rejoined.  They must still be found.
    total, wrong, overlapping, crowded = 0, [], 0, 0
    for seed in range(8):
        people, masks, outputs, shape = make_scene(seed, 6, 385, unlabelled=0.15, height_range=(110, 170))
        overlapping += int((masks.sum(axis=0) > 1).any())
        decoded = post_proc.decode(outputs, STRIDE, shape)
        best, errors = match(people, decoded)
        cells = np.clip(np.rint(people[..., :2] / STRIDE).astype(int), 0, np.array(masks.shape[:0:-1]) - 1)
        for n, person in enumerate(people):
            labelled = person[:, 2] > 0
            if (masks[n] & (masks.sum(axis=0) == 1)).sum() < 0.3 * masks[n].sum():
                crowded += 1
                in_place = (errors[n][labelled] <= 1.0).mean()
                assert decoded[best[n]]['score'] > 0 and in_place >= 0.5, (
                    'scene %d: crowded person %d not found (%.0f%% of its keypoints)' % (seed, n, 100 * in_place))
                continue
            others = np.linalg.norm(people[:, :, :2] - person[None, :, :2], axis=-1)
            others[n] = np.inf
            others[people[:, :, 2] == 0] = np.inf
            col, row = cells[n, :, 0], cells[n, :, 1]
            on_other_body = ~masks[n, row, col] & masks[:, row, col].any(axis=0)
            clear = labelled & (others.min(axis=0) >= 2 * config.NMS_RADIUS) & ~on_other_body
            total += clear.sum()
            wrong += ['scene %d person %d %s' % (seed, n, config.KEYPOINTS[k])
                      for k in np.flatnonzero(clear & ~(errors[n] <= 1.0))]  # off, or not found (score 0)
    assert overlapping >= 6 and crowded >= 3 and total > 400
    assert not wrong, '%d of %d labelled keypoints off by more than 1 px: %s' % (len(wrong), total, wrong)


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
    outline = post_proc.grid_to_input(outputs['segmentation'][..., 0], STRIDE, shape) > 0.5
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


def junk_where_undefined(maps, seed):
    """The target maps with random offsets wherever their validity maps say the target is undefined."""
    rng = np.random.RandomState(seed)
    noisy = dict(maps)
    for head in heads.OFFSET_HEADS:
        name = head.output
        undefined = np.repeat(maps[head.validity] == 0, 2, axis=-1)
        noisy[name] = np.where(undefined, rng.normal(0, 40, maps[name].shape), maps[name]).astype(np.float32)
    return noisy


def test_offsets_count_only_where_the_validity_maps_say():
    # The oracle passes the target dict: with its validity maps, whatever the offsets hold where no target
    # is defined changes nothing, keypoints or masks.
    people, masks, maps, shape = make_scene(21, 5, 289, unlabelled=0.15, height_range=(110, 170))
    clean = post_proc.decode(maps, STRIDE, shape)
    noisy = post_proc.decode(junk_where_undefined(maps, 1), STRIDE, shape)
    assert len(clean) == len(noisy) >= len(people)
    for a, b in zip(clean, noisy):
        assert np.allclose(a['keypoints'], b['keypoints'], atol=1e-4) and np.array_equal(a['mask'], b['mask'])
    # Without validity maps (a network) every offset counts: the same junk changes the masks.
    plain = {name: value for name, value in junk_where_undefined(maps, 1).items()
             if name not in [head.validity for head in heads.OFFSET_HEADS]}
    unchecked = post_proc.decode(plain, STRIDE, shape)
    assert len(unchecked) != len(clean) or any(not np.array_equal(a['mask'], b['mask'])
                                               for a, b in zip(clean, unchecked))


def test_sampler_weighs_corners_by_validity():
    step = 8
    offsets = np.zeros((3, 3, 2), np.float32)
    offsets[..., 0] = 8 - np.arange(3) * step  # every cell points at (8, 0): cell (row 0, col 1) by (0, 0)
    offsets[..., 1] = -np.arange(3)[:, None] * step
    offsets[1, 0, 1] += 3.0  # cell (row 1, col 0) points at (8, 3), within the landing tolerance of the others
    x, y, field = np.float32([7.0]), np.float32([1.0]), np.array([0])  # corner weights .77 (0, 1), .016 (1, 0)
    landing = post_proc.Sampler(offsets, step).land(x, y, field, 5.0)
    assert landing[0, 0] == 8.0 and 0 < landing[0, 1] < 0.1  # the exact (0, 0) votes; so does (1, 0)
    valid = np.ones((3, 3, 1), np.float32)
    valid[1, 0] = 0
    assert np.allclose(post_proc.Sampler(offsets, step, valid).land(x, y, field, 5.0), [[8.0, 0.0]], atol=1e-6)
    valid[:] = 0
    valid[1, 0] = 1  # only a corner of read weight .016 < config.LANDING_MIN_VALID is defined: undefined
    assert np.isnan(post_proc.Sampler(offsets, step, valid).land(x, y, field, 5.0)).all()


def test_validity_maps_are_checked():
    shape = (65, 65)
    outputs = zero_outputs(shape)
    with pytest.raises(ValueError, match='mid_valid'):
        post_proc.decode(dict(outputs, mid_valid=np.ones((9, 9, 3), np.float32)), STRIDE, shape)
    with pytest.raises(ValueError, match='long_valid'):
        post_proc.decode(dict(outputs, long_valid=np.full((9, 9, K), 2.0, np.float32)), STRIDE, shape)


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


def test_hough_cells_follow_the_disk_radius():
    """The Hough grid is R / HOUGH_CELLS_PER_RADIUS px: 4 px at R = 32, 2 px for a model trained with R = 16,
    never below 1 px; hough_voting and decode take it from the radius they are given."""
    assert [post_proc.hough_cell(r) for r in (32.0, 16.0)] == [4, 2]  # with config.py's 8 cells per radius
    options = settings.resolve(None).replace(HOUGH_CELLS_PER_RADIUS=4)
    assert [post_proc.hough_cell(r, options) for r in (32.0, 16.0, 8.0, 4.0, 1.0)] == [8, 4, 2, 1, 1]
    people, masks, outputs, shape = grid_scene(8, 2, 1, (200, 140))
    hough = post_proc.hough_voting(outputs['heatmaps'], outputs['short_offsets'], STRIDE, radius=8.0,
                                   options=options)
    assert hough.shape[:2] == ((shape[0] - 1) // 2 + 1, (shape[1] - 1) // 2 + 1)
    noisy = scenes.network_like(outputs, STRIDE, np.random.RandomState(3), 1.0)
    decoded = post_proc.decode(noisy, STRIDE, shape, radius=16.0, options=options)
    explicit = post_proc.decode(noisy, STRIDE, shape, radius=16.0, hough_stride=4, options=options)
    finer = post_proc.decode(noisy, STRIDE, shape, radius=16.0, hough_stride=2, options=options)
    assert [p['keypoints'].tolist() for p in decoded] == [p['keypoints'].tolist() for p in explicit]
    assert [p['keypoints'].tolist() for p in decoded] != [p['keypoints'].tolist() for p in finer]


def test_instance_scale_uses_found_keypoints_only():
    pos = np.zeros((1, K, 2), np.float32)
    pos[0, 5:9] = [[100, 100], [140, 100], [100, 190], [140, 190]]  # a 40 x 90 box; the rest sits at (0, 0)
    found = np.zeros((1, K), bool)
    found[0, 5:9] = True
    assert post_proc.instance_scales(pos, found)[0] == pytest.approx(np.sqrt(40 * 90))
    found[0, 5:] = False
    found[0, 5] = True  # one keypoint: a degenerate box falls back to the minimum scale
    assert post_proc.instance_scales(pos, found)[0] == config.MIN_INSTANCE_SCALE


def single_keypoint_maps(kind, y, landing, shape=(129, 129), heat=None):
    """Maps of one keypoint of `kind` at y (x, y): heatmap `heat(d)` (default 1) in the disk of radius R
    around y, short offsets that send each cell x to landing(x) (float32 [N, 2] from cell positions [N, 2])."""
    rows, cols = post_proc.grid_shape(shape, STRIDE)
    maps = zero_outputs(shape)
    cy, cx = np.mgrid[:rows, :cols] * np.float32(STRIDE)
    cells = np.stack([cx.ravel(), cy.ravel()], axis=1).astype(np.float32)
    d = np.linalg.norm(cells - np.float32(y), axis=1)
    p = np.where(d <= config.RADIUS, 1.0 if heat is None else heat(d), 0.0)
    maps['heatmaps'][..., kind] = p.reshape(rows, cols)
    maps['short_offsets'][..., 2 * kind:2 * kind + 2] = (landing(cells) - cells).reshape(rows, cols, 2)
    return maps


def brute_force_expected_oks(maps, kind, y, scale):
    """The paper's s = p_k(y) * integral over D_R(y) of normalised h_k(x) exp(-|x - y|^2 / (2 lambda^2 kappa^2)),
    h_k made of point votes p_k(x_i) s^2 / (pi R^2) at x_i + S_k(x_i): one cell at a time, over the whole grid."""
    heat, short = maps['heatmaps'], maps['short_offsets']
    sigma2 = (scale * 2 * config.OKS_SIGMAS[kind]) ** 2
    weight = STRIDE ** 2 / (np.pi * config.RADIUS ** 2)
    mass = integral = 0.0
    for i in range(heat.shape[0]):
        for j in range(heat.shape[1]):
            p = float(heat[i, j, kind])
            landing = np.array([j * STRIDE + short[i, j, 2 * kind], i * STRIDE + short[i, j, 2 * kind + 1]])
            d2 = float(((landing - y) ** 2).sum())
            if p > config.HOUGH_VOTE_THRESHOLD and d2 <= config.RADIUS ** 2:
                mass += p * weight
                integral += p * weight * np.exp(-d2 / (2 * sigma2))
    fx, fy = y[0] / STRIDE, y[1] / STRIDE  # p_k(y), bilinear
    i0, j0 = int(fy), int(fx)
    fx, fy = fx - j0, fy - i0
    p_y = ((1 - fy) * ((1 - fx) * heat[i0, j0, kind] + fx * heat[i0, j0 + 1, kind]) +
           fy * ((1 - fx) * heat[i0 + 1, j0, kind] + fx * heat[i0 + 1, j0 + 1, kind]))
    return p_y * integral / mass


def decoder_scores(maps, kind, y, scale):
    checked, _ = post_proc.check_outputs(maps, STRIDE, (129, 129))
    hough = post_proc.hough_voting(checked['heatmaps'], checked['short_offsets'], STRIDE)
    view = post_proc.Maps(checked, STRIDE, hough, post_proc.hough_cell(config.RADIUS), config.NMS_RADIUS)
    pos = np.zeros((1, K, 2), np.float32)
    pos[0, kind] = y
    found = np.zeros((1, K), bool)
    found[0, kind] = True
    return post_proc.expected_oks(view, pos, np.float32([scale]), found)[0, kind]


@pytest.mark.parametrize('scale', [16.0, 32.0, 120.0])
@pytest.mark.parametrize('name', ['nose', 'left_eye', 'right_ear', 'left_hip'])
def test_expected_oks_is_the_integral_of_the_votes(name, scale):
    kind = config.KEYPOINTS.index(name)
    y = np.float32([61.3, 66.8])
    rng = np.random.RandomState(kind)
    spread = lambda cells: y + rng.normal(0, 1.0, cells.shape).astype(np.float32)  # votes spread by 1 px
    maps = single_keypoint_maps(kind, y, spread, heat=lambda d: 1 - 0.5 * d / config.RADIUS)
    expected = brute_force_expected_oks(maps, kind, y, scale)
    assert decoder_scores(maps, kind, y, scale) == pytest.approx(expected, rel=1e-4, abs=1e-6)
    # Votes on a ring of 1 px around y: exp(-1 / (2 lambda^2 kappa^2)), e.g. 0.46 for an eye at lambda 16.
    ring = lambda cells: y + np.stack([np.cos(cells[:, 0]), np.sin(cells[:, 0])], axis=1).astype(np.float32)
    maps = single_keypoint_maps(kind, y, ring)
    sigma = scale * 2 * config.OKS_SIGMAS[kind]
    assert decoder_scores(maps, kind, y, scale) == pytest.approx(np.exp(-1.0 / (2 * sigma ** 2)), rel=1e-4)


def test_expected_oks_ignores_votes_landing_beyond_r_and_weak_cells():
    kind = 0
    y = np.float32([64.0, 64.0])
    far = lambda cells: np.where(cells[:, :1] < 60, y + [config.RADIUS + 5, 0], y + [0.5, 0]).astype(np.float32)
    maps = single_keypoint_maps(kind, y, far)
    sigma = 16.0 * 2 * config.OKS_SIGMAS[kind]
    assert decoder_scores(maps, kind, y, 16.0) == pytest.approx(np.exp(-0.25 / (2 * sigma ** 2)), rel=1e-4)
    maps['heatmaps'][..., kind] *= config.HOUGH_VOTE_THRESHOLD  # no cell votes: nothing supports the keypoint
    assert decoder_scores(maps, kind, y, 16.0) == 0


def test_mask_assignment_keeps_cells_whose_embedding_points_further_than_t():
    # One person; two p_S blobs whose long-range embeddings point at its keypoints from 0.2 and 0.3 lambda.
    shape = (97, 97)
    rows, cols = post_proc.grid_shape(shape, STRIDE)
    maps = zero_outputs(shape)
    pos = np.zeros((1, K, 2), np.float32)
    pos[0, :, 0] = np.linspace(30, 60, K)
    pos[0, :, 1] = np.linspace(20, 80, K)
    scales = np.float32([50.0])
    weights = np.ones((1, K), np.float32)
    cy, cx = np.mgrid[:rows, :cols] * np.float32(STRIDE)
    for blob, distance in ((slice(0, 3), 0.2), (slice(6, 9), 0.3)):
        maps['segmentation'][blob, :3, 0] = 1.0
        maps['long_offsets'][blob, :3, 0::2] = pos[0, :, 0] + distance * scales[0] - cx[blob, :3, None]
        maps['long_offsets'][blob, :3, 1::2] = pos[0, :, 1] - cy[blob, :3, None]
    labels = post_proc.assign_pixels(maps, STRIDE, pos, weights, scales)
    assert config.MASK_DISTANCE_THRESHOLD == 0.25
    assert (labels[0:3, :3] == 0).all(), 'D = 0.2 <= t: the cells join the person'
    assert (labels[6:9, :3] == -1).all(), 'D = 0.3 > t: the cells stay unassigned'
    assert (labels[3:6] == -1).all() and (labels[:, 3:] == -1).all(), 'no p_S, no person'


def test_seed_within_r_is_rejected_and_beyond_is_not():
    r = config.NMS_RADIUS
    nose = config.KEYPOINTS.index('nose')
    pos = np.zeros((1, K, 2), np.float32)
    pos[0, nose] = [100.0, 100.0]
    claims = np.zeros((1, K), bool)
    claims[0, nose] = True
    kind = np.array([nose, nose, nose, 1], np.int64)  # the person's own seed, then seeds at r, r + 0.01, r
    x = np.float32([100.0, 100.0 + r, 100.0 + r + 0.01, 100.0 + r])
    y = np.float32([100.0] * 4)
    rows, alive = post_proc.accept_seeds(np.array([0]), pos, claims, (kind, x, y), np.ones(4, bool), r, 10)
    assert rows == [0]
    assert alive.tolist() == [False, False, True, True]  # taken; at r: rejected; beyond r: kept; other type: kept


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


def test_conflicting_keypoints_go_to_the_walk_then_the_fuller_then_the_earlier_person():
    pos = np.zeros((3, K, 2), np.float32)
    pos[:, :, 0] = np.arange(K) * 50.0  # the three people share every keypoint position
    found = np.zeros((3, K), bool)
    found[0, :3] = found[1, :5] = found[2, 1:6] = True  # 3, 5 and 5 found keypoints
    rescued = np.zeros((3, K), bool)
    rescued[1, 0] = True  # person 1 rescued keypoint 0, person 0 reached it by its tree walk
    post_proc.resolve_conflicts(pos, found, rescued)
    assert np.flatnonzero(found[0]).tolist() == [0]  # keypoint 0: the walk beats the rescue
    assert np.flatnonzero(found[1]).tolist() == [1, 2, 3, 4]  # more found keypoints than person 0, earlier than 2
    assert np.flatnonzero(found[2]).tolist() == [5]  # nobody else has keypoint 5


def test_hard_oks_nms_suppresses_an_equal_scoring_duplicate():
    rng = np.random.RandomState(10)
    pos = rng.uniform(0, 300, (2, K, 2)).astype(np.float32)
    pos = np.concatenate([pos[:1], pos[:1] + 0.5, pos[1:]])  # person 1 duplicates person 0, same score
    found = np.ones((3, K), bool)
    keep = post_proc.oks_nms_keep(pos, found, np.full(3, 100.0, np.float32), np.float32([0.7, 0.7, 0.7]))
    assert keep.tolist() == [True, False, True]


def test_every_hough_maximum_seeds_unless_the_support_filter_is_on():
    # A lone maximum whose cells vote weakly (p = 0.15): its support p(y) * mass is ~0.02, below
    # config.KEYPOINT_SUPPORT_THRESHOLD.  The paper seeds from it; the optional filter drops it first.
    kind = config.KEYPOINTS.index('left_knee')
    y = np.float32([64.0, 64.0])
    maps = single_keypoint_maps(kind, y, lambda cells: np.broadcast_to(y, cells.shape), heat=lambda d: 0.15 + 0 * d)
    checked, _ = post_proc.check_outputs(maps, STRIDE, (129, 129))
    hough = post_proc.hough_voting(checked['heatmaps'], checked['short_offsets'], STRIDE)
    view = post_proc.Maps(checked, STRIDE, hough, post_proc.hough_cell(config.RADIUS), config.NMS_RADIUS)
    seeds = post_proc.find_seeds(hough)
    assert len(seeds[0]) == 1 and view.support(y[:1], y[1:], np.array([kind])) < config.KEYPOINT_SUPPORT_THRESHOLD
    assert config.SEED_SUPPORT_FILTER is False
    pos, found, _, _ = post_proc.greedy_decode(view, seeds)
    assert len(pos) == 1 and np.allclose(pos[0, kind], y) and not found.any()  # seeded; nothing found
    assert len(post_proc.greedy_decode(view, seeds, seed_filter=True)[0]) == 0
    assert post_proc.decode(maps, STRIDE, (129, 129)) == []  # a person without found keypoints scores 0


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
    return {head.output: np.zeros((rows, cols, head.channels), np.float32) for head in heads.HEADS}


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
    outputs = {name: rng.uniform(0 if name in heads.PROBABILITY_OUTPUTS else -300,
                                 1 if name in heads.PROBABILITY_OUTPUTS else 300, value.shape).astype(np.float32)
               for name, value in zero_outputs(shape).items()}
    decoded = post_proc.decode(outputs, STRIDE, shape)
    assert len(decoded) <= config.MAX_PEOPLE
    for person in decoded:
        assert np.isfinite(person['keypoints']).all() and person['mask'].shape == shape


@pytest.mark.parametrize('name', heads.OUTPUTS)
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


@pytest.mark.parametrize('seed', range(6))
def test_finite_offsets_near_the_float32_maximum_decode(seed):
    """Offsets of up to 3.4e38 px on a share of the cells: people or [], finite, and the caller's maps intact."""
    _, _, outputs, shape = make_scene(seed, 3, 129, noise=1.0)
    rng = np.random.RandomState(seed)
    for name in ('short_offsets', 'mid_offsets', 'long_offsets'):
        huge = rng.uniform(size=outputs[name].shape) < (0.05, 0.3, 1.0)[seed % 3]
        outputs[name][huge] = (rng.choice([-1, 1], huge.sum()) * rng.choice([3.4e38, 2e38, 1e30, 1e10], huge.sum()))
    before = {name: value.copy() for name, value in outputs.items()}
    decoded = post_proc.decode(outputs, STRIDE, shape)
    for person in decoded:
        assert np.isfinite(person['keypoints']).all() and np.isfinite(person['score'])
        assert person['mask'].shape == shape
    for name, value in before.items():
        np.testing.assert_array_equal(outputs[name], value)


def test_image_shape_none_is_a_value_error():
    with pytest.raises(ValueError, match='image_shape'):
        post_proc.decode(zero_outputs((65, 65)), STRIDE, None)
