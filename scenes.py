"""Scenes of known people for the decoder's tests and benchmarks (tests/test_post_proc.py, tests/test_plot.py,
bench/decode_bench.py, bench/decode_choices.py).

A scene is a set of random standing poses with body masks on the output grid.  Its maps are the project's
own target maps (data_generator.make_targets, exactly what eval.py's oracle decodes, validity maps included),
so the decoder is tested against the one target encoder there is.  network_like() turns them into maps that
look like a network's: soft heatmap edges, background noise, a few px of noise on the offsets where a target
is defined and random values where none is (a network outputs something everywhere), and no validity maps.

Units as in config.py: (x, y) in input pixels, masks on the output grid of `stride`.
"""
import cv2
import numpy as np

import config
import data_generator
import heads
import settings
import transformer

# A standing person facing the camera, (x, y) as fractions of the height (head top 0, ankles ~1), COCO order.
TEMPLATE = np.array([
    (0.0, 0.08), (0.02, 0.06), (-0.02, 0.06), (0.045, 0.07), (-0.045, 0.07),
    (0.11, 0.2), (-0.11, 0.2), (0.14, 0.36), (-0.14, 0.36), (0.15, 0.5), (-0.15, 0.5),
    (0.07, 0.52), (-0.07, 0.52), (0.075, 0.75), (-0.075, 0.75), (0.08, 0.97), (-0.08, 0.97)], np.float32)
NOSE = config.KEYPOINTS.index('nose')
ANKLES = [config.KEYPOINTS.index('left_ankle'), config.KEYPOINTS.index('right_ankle')]
TORSO = [config.KEYPOINTS.index(name) for name in ('left_shoulder', 'right_shoulder', 'right_hip', 'left_hip')]
FACE = {config.KEYPOINTS.index(name) for name in ('left_eye', 'right_eye', 'left_ear', 'right_ear')}


def random_people(num, image_shape, rng, height_range=None, unlabelled=0.0, margin=0.0, options=None):
    """Random poses: float32 [num, K, 3] (x, y, v) in input px, v = 2 labelled or 0 (with prob `unlabelled`).

    Heights are uniform in `height_range` px (default: options.SCENE_POSES['fill'] times the side of an equal
    share of the image); each keypoint moves by up to SCENE_POSES['jitter'] of the height and the figure
    leans by up to SCENE_POSES['lean_degrees'].  Figures stay `margin` px inside the image where they fit.
    """
    poses = settings.resolve(options).SCENE_POSES
    height, width = image_shape[:2]
    if height_range is None:
        side = min(height, width) / max(np.sqrt(num), 1.0)
        height_range = (poses['fill'][0] * side, poses['fill'][1] * side)
    people = np.zeros((num, config.NUM_KEYPOINTS, 3), np.float32)
    for n in range(num):
        h = rng.uniform(*height_range)
        points = TEMPLATE * h + rng.uniform(-poses['jitter'], poses['jitter'], TEMPLATE.shape) * h
        angle = np.deg2rad(rng.uniform(-poses['lean_degrees'], poses['lean_degrees']))
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]], np.float32)
        points = (points - points.mean(axis=0)) @ rotation.T
        low, high = points.min(axis=0), points.max(axis=0)
        centre = [rng.uniform(margin - low[a], side - 1 - margin - high[a]) if side - 1 - 2 * margin > high[a] - low[a]
                  else (side - 1) / 2.0 for a, side in ((0, width), (1, height))]
        people[n, :, :2] = points + np.float32(centre)
        people[n, :, 2] = np.where(rng.uniform(size=config.NUM_KEYPOINTS) < unlabelled, 0, 2)
    return people


def body_masks(people, image_shape, stride, options=None):
    """Body masks on the output grid, bool [N, H', W']: thick limbs, a torso polygon and a head disk drawn
    through ALL keypoints (labelled or not, as a body has them)."""
    poses = settings.resolve(options).SCENE_POSES
    rows, cols = transformer.grid_shape(image_shape, stride)
    masks = np.zeros((len(people), rows, cols), bool)
    for n, person in enumerate(people):
        points = person[:, :2] / stride
        h = np.linalg.norm(points[NOSE] - points[ANKLES].mean(axis=0)) / (TEMPLATE[ANKLES, 1].mean() - TEMPLATE[NOSE, 1])
        canvas = np.zeros((rows, cols), np.uint8)
        thickness = max(int(round(poses['limb_width'] * h)), 1)
        for a, b in config.EDGES:
            if a not in FACE and b not in FACE:
                cv2.line(canvas, tuple(int(round(v)) for v in points[a]), tuple(int(round(v)) for v in points[b]), 1,
                         thickness)
        cv2.fillPoly(canvas, [np.round(points[TORSO]).astype(np.int32)], 1)
        cv2.circle(canvas, tuple(int(round(v)) for v in points[NOSE]), max(int(round(poses['head_radius'] * h)), 1),
                   1, -1)
        masks[n] = canvas > 0
    return masks


def target_maps(people, masks, image_shape, stride, options=None):
    """The target maps of the people (data_generator.make_targets with options.RADIUS, no crowd): dict of
    float32 maps named as heads.TARGET_CHANNELS (the decoder's inputs and the offsets' validity maps)."""
    crowd = np.zeros(transformer.grid_shape(image_shape, stride), bool)
    return data_generator.make_targets(people, masks, crowd, image_shape, stride,
                                       radius=settings.resolve(options).RADIUS)


def network_like(targets, stride, rng, noise=1.0, options=None):
    """Maps as a network might output them for `targets` (target_maps), noise scaled by `noise`.

    Heatmap disks get a soft edge (blurred) and background noise; offsets get Gaussian noise where their
    validity map says the target is defined and random values elsewhere; segmentation is blurred and noisy.
    Amounts: options.SCENE_NOISE ('<head name>_noise' for each offset head).  Returns the network's outputs
    only (no validity maps), float32.
    """
    options = settings.resolve(options)
    amounts = options.SCENE_NOISE
    blur = amounts['heatmap_edge'] * options.RADIUS / stride  # grid cells
    heat = np.stack([cv2.GaussianBlur(targets['heatmaps'][..., k], (0, 0), blur)
                     for k in range(targets['heatmaps'].shape[2])], axis=-1)
    heat = heat + rng.exponential(amounts['heatmap_background'] * noise, heat.shape)
    heat = heat + rng.normal(0, amounts['heatmap_noise'] * noise, heat.shape)
    outputs = {'heatmaps': np.clip(heat, 0, 1).astype(np.float32)}
    for head in heads.OFFSET_HEADS:
        values = targets[head.output]
        valid = np.repeat(targets[head.validity] > 0, 2, axis=-1)
        jitter = rng.normal(0, amounts[head.name + '_noise'] * noise, values.shape)
        junk = rng.normal(0, amounts['junk_offsets'] * noise, values.shape)
        outputs[head.output] = np.where(valid, values + jitter, junk).astype(np.float32)
    seg = cv2.GaussianBlur(targets['segmentation'][..., 0], (0, 0), amounts['segmentation_blur'])
    seg = seg + rng.normal(0, amounts['segmentation_noise'] * noise, seg.shape)
    outputs['segmentation'] = np.clip(seg, 0, 1)[..., None].astype(np.float32)
    return outputs


def scene(seed, num, image_shape, stride, unlabelled=0.0, noise=0.0, height_range=None, margin=0.0, options=None):
    """A random scene: (people [N, K, 3], grid masks [N, H', W'], maps).  noise=0: the target maps
    (validity maps included, as the oracle decodes them); noise > 0: network_like maps."""
    options = settings.resolve(options)
    rng = np.random.RandomState(seed)
    people = random_people(num, image_shape, rng, height_range=height_range, unlabelled=unlabelled, margin=margin,
                           options=options)
    masks = body_masks(people, image_shape, stride, options=options)
    maps = target_maps(people, masks, image_shape, stride, options=options)
    return people, masks, network_like(maps, stride, rng, noise, options=options) if noise else maps
