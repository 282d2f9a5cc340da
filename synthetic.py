"""Synthetic people in COCO format: articulated figures for the CPU quickstart and for tests.

Each image holds a few person-like figures: a torso polygon, thick limb segments and an elliptic head, posed
from random joint angles on the COCO 17-keypoint skeleton. Every body keypoint is marked by a blob whose
colour names its kind (shoulder, elbow, wrist, hip, knee, ankle; config.SYNTHETIC_KEYPOINT_COLOURS), and a
figure seen from the front has a face (eyes, nose) and ears. Left and right are told apart the way they are
on real people, by which way the figure faces (a face means the person's left is on the image's right),
never by colour: a left-right flip (the training augmentation) of a person is another valid person with
swapped labels, and a per-side colour would contradict it.

Scenes also have textured backgrounds with clutter, overlapping figures (drawn back to front), occluding
objects, tiny figures and mostly hidden figures annotated with num_keypoints 0, and sometimes a crowd region
(iscrowd=1, RLE) of many small figures. Files are laid out exactly as COCO 2017's, so every program reads
them through the same pycocotools path as real data:

    <out>/train2017/000000000001.jpg ...
    <out>/val2017/000001000001.jpg ...
    <out>/annotations/person_keypoints_train2017.json, person_keypoints_val2017.json

Annotations:
* keypoints [x, y, v] * 17 in config.KEYPOINTS order, (x, y) in the project convention (pixel centres at
  integers, see config.py). v=2: on the person's visible silhouette; v=1: hidden behind another figure or an
  object, still labelled; v=0: unlabelled (outside the image, a face seen from behind, an ear turned away,
  or a person too hidden to label), stored as 0, 0, 0.
* segmentation: polygons of the VISIBLE silhouette (figures in front and objects cut out, holes bridged);
  pycocotools' annToMask returns exactly the pixel mask of the person (the polygon coordinates follow COCO's
  raster convention, in which pixel (row r, col c) covers [c, c+1] x [r, r+1]). area and bbox as COCO
  computes them from that mask.

Everything is deterministic given the seed: image i of a split depends only on (seed, split, i).

Usage:
    python synthetic.py --output DIR [--train N --val M --size S --seed X]
"""
import argparse
import colorsys
import json
import math
import os
import sys
import time

import cv2
import numpy as np
from pycocotools import mask as mask_utils

import config
import settings

SPLITS = ('train', 'val')
_KP = {name: index for index, name in enumerate(config.KEYPOINTS)}
_SIDES = (('left_', 1.0), ('right_', -1.0))
_BODY_JOINTS = ('shoulder', 'elbow', 'wrist', 'hip', 'knee', 'ankle')
# cv2 draws with fixed-point coordinates of this many fractional bits: sub-pixel positions.
_SHIFT = 4
_ONE = 1 << _SHIFT
# Polygon simplification tolerance, in half-pixels (contours are traced on a half-pixel lattice); a polygon is
# kept only if it rasterises back to the exact mask, else the exact (unsimplified) contour is used.
_SIMPLIFY_TOLERANCE = 0.5
_PROGRESS_SECONDS = 2.0  # at most one progress line per this many seconds
# The annotation files' info.description, which they start with: is_synthetic_run recognises them by it.
DESCRIPTION = 'PersonLab synthetic people (synthetic.py), COCO person_keypoints format'
_HEAD_BYTES = 4096  # is_synthetic_run reads this much of an annotation file (COCO's own are hundreds of MB)


# ----------------------------------------------------------------------------
# Figures
# ----------------------------------------------------------------------------

def _rotate(vector, angle):
    """`vector` (x, y) rotated by `angle` radians (clockwise on screen, y pointing down)."""
    c, s = math.cos(angle), math.sin(angle)
    return np.array([c * vector[0] - s * vector[1], s * vector[0] + c * vector[1]])


def _uniform(rng, bounds):
    return float(rng.uniform(bounds[0], bounds[1]))


def sample_pose(rng, height, options=None):
    """A random figure posed on the COCO skeleton, pelvis at the origin.

    Args:
      rng: numpy Generator.
      height: figure height H in px (head top to ankles with straight legs).
    Returns:
      dict 'keypoints' float64 [K, 2] (x, y) px; 'labelled' bool [K] (the feature exists in the picture, so
      an annotator would label it); 'head_centre', 'neck' float64 [2]; 'up' unit vector [2] of the torso;
      'lean' degrees; 'back_view' bool; 'sizes' dict of drawing sizes in px (head radii, thicknesses, blob
      radii).
    """
    options = settings.resolve(options)
    jitter = options.SYNTHETIC_PROPORTION_JITTER
    body = {name: value * height * _uniform(rng, (1.0 - jitter, 1.0 + jitter))
            for name, value in options.SYNTHETIC_BODY.items()}
    face = options.SYNTHETIC_FACE
    lean = math.radians(_uniform(rng, (-options.SYNTHETIC_LEAN_DEGREES, options.SYNTHETIC_LEAN_DEGREES)))
    yaw = math.radians(_uniform(rng, (-options.SYNTHETIC_YAW_DEGREES, options.SYNTHETIC_YAW_DEGREES)))
    back_view = bool(rng.random() < options.SYNTHETIC_BACK_VIEW_PROBABILITY)
    up = np.array([math.sin(lean), -math.cos(lean)])
    right = np.array([math.cos(lean), math.sin(lean)])
    # +1: the person's left is on the image's right (seen from the front); -1 seen from behind.
    facing = -1.0 if back_view else 1.0
    turn = math.cos(yaw)

    def limb_length(name):
        return body[name] * _uniform(rng, options.SYNTHETIC_FORESHORTENING)

    def sign():
        return 1.0 if rng.random() < 0.5 else -1.0

    keypoints = np.zeros((config.NUM_KEYPOINTS, 2))
    neck = up * body['torso']
    for prefix, side in _SIDES:
        outwards = right * facing * side
        shoulder = neck + outwards * 0.5 * body['shoulder_width'] * turn
        hip = outwards * 0.5 * body['hip_width'] * turn
        raise_angle = math.radians(_uniform(rng, options.SYNTHETIC_ARM_RAISE))
        direction = -up * math.cos(raise_angle) + outwards * math.sin(raise_angle)
        elbow = shoulder + direction * limb_length('upper_arm')
        direction = _rotate(direction, sign() * math.radians(_uniform(rng, options.SYNTHETIC_ELBOW_BEND)))
        wrist = elbow + direction * limb_length('forearm')
        spread = math.radians(_uniform(rng, options.SYNTHETIC_LEG_SPREAD))
        direction = -up * math.cos(spread) + outwards * math.sin(spread)
        knee = hip + direction * limb_length('thigh')
        direction = _rotate(direction, sign() * math.radians(_uniform(rng, options.SYNTHETIC_KNEE_BEND)))
        ankle = knee + direction * limb_length('shin')
        for joint, point in zip(_BODY_JOINTS, (shoulder, elbow, wrist, hip, knee, ankle)):
            keypoints[_KP[prefix + joint]] = point

    head_radius = body['head_radius']
    head_width = head_radius * face['head_aspect']
    head_centre = neck + up * (body['neck'] + head_radius)
    # Turning to the person's left (yaw > 0) moves the face towards the person's left side.
    face_centre = head_centre + right * facing * math.sin(yaw) * face['turn_shift'] * head_width
    keypoints[_KP['nose']] = face_centre - up * face['nose_drop'] * head_radius
    labelled = np.ones(config.NUM_KEYPOINTS, bool)
    for prefix, side in _SIDES:
        outwards = right * facing * side
        keypoints[_KP[prefix + 'eye']] = (face_centre + outwards * face['eye_spacing'] * head_width * turn
                                          + up * face['eye_height'] * head_radius)
        keypoints[_KP[prefix + 'ear']] = head_centre + outwards * face['ear_spacing'] * head_width
    hidden_yaw = math.radians(options.SYNTHETIC_HIDDEN_EAR_YAW)
    if back_view:
        labelled[[_KP['nose'], _KP['left_eye'], _KP['right_eye']]] = False
    elif yaw > hidden_yaw:
        labelled[_KP['left_ear']] = False
    elif yaw < -hidden_yaw:
        labelled[_KP['right_ear']] = False

    sizes = {
        'head_radius': head_radius,
        'head_width': head_width,
        'arm': max(1, int(round(body['arm_thickness']))),
        'leg': max(1, int(round(body['leg_thickness']))),
        'neck': max(1, int(round(body['neck_thickness']))),
        'joint': max(1.0, body['joint_radius']),
        'eye': max(1.0, face['eye_radius'] * head_radius),
        'nose': max(1.0, face['nose_radius'] * head_radius),
        'ear': max(1.0, face['ear_radius'] * head_radius),
    }
    return {'keypoints': keypoints, 'labelled': labelled, 'head_centre': head_centre, 'neck': neck, 'up': up,
            'lean': math.degrees(lean), 'back_view': back_view, 'sizes': sizes}


def pose_extent(pose):
    """(x_min, y_min, x_max, y_max) px of a pose: its keypoints and the top of its head."""
    top = pose['head_centre'] + pose['up'] * pose['sizes']['head_radius']
    points = np.vstack([pose['keypoints'], top])
    return np.concatenate([points.min(0), points.max(0)])


def move_pose(pose, offset):
    """The pose translated by `offset` (x, y) px."""
    moved = dict(pose)
    for key in ('keypoints', 'head_centre', 'neck'):
        moved[key] = pose[key] + offset
    return moved


def place_pose(rng, pose, low, high):
    """The pose moved so the centre of its extent is uniform in the box [low, high] (x, y) px."""
    extent = pose_extent(pose)
    centre = 0.5 * (extent[:2] + extent[2:])
    return move_pose(pose, rng.uniform(low, high) - centre)


def _random_colour(rng, options):
    hue = rng.random()
    saturation = _uniform(rng, options.SYNTHETIC_CLOTHING_SATURATION)
    value = _uniform(rng, options.SYNTHETIC_CLOTHING_VALUE)
    return tuple(int(round(255 * c)) for c in colorsys.hsv_to_rgb(hue, saturation, value))


def _palette_colour(rng, palette, options):
    jitter = options.SYNTHETIC_COLOUR_JITTER
    colour = np.asarray(palette[rng.integers(len(palette))], float) + rng.uniform(-jitter, jitter, 3)
    return tuple(int(c) for c in np.clip(colour, 0, 255))


def _fixed(point):
    """cv2 fixed-point (x, y) ints of a point in px."""
    return math.floor(float(point[0]) * _ONE + 0.5), math.floor(float(point[1]) * _ONE + 0.5)


def line_part(start, end, thickness, colour):
    """A segment of `thickness` px with round caps."""
    return ('line', (_fixed(start), _fixed(end), int(thickness)), colour)


def polygon_part(points, colour):
    """A filled polygon, points float [n, 2] px."""
    return ('polygon', np.floor(np.asarray(points, np.float64) * _ONE + 0.5).astype(np.int32), colour)


def ellipse_part(centre, axes, angle, colour, start=0, end=360):
    """A filled ellipse (or the pie between `start` and `end` degrees), axes = half sizes px, angle deg."""
    return ('ellipse', (_fixed(centre), _fixed(axes), float(angle), start, end), colour)


def circle_part(centre, radius, colour):
    """A filled disk."""
    return ('circle', (_fixed(centre), math.floor(radius * _ONE + 0.5)), colour)


def figure_parts(rng, pose, options=None):
    """Drawing primitives of a posed figure, back to front, with its random clothes, skin and hair.

    Returns:
      list of primitives (line_part, polygon_part, ellipse_part, circle_part) for draw_parts.
    """
    options = settings.resolve(options)
    kp = {name: pose['keypoints'][index] for name, index in _KP.items()}
    sizes = pose['sizes']
    colours = options.SYNTHETIC_KEYPOINT_COLOURS
    face = options.SYNTHETIC_FACE
    skin = _palette_colour(rng, options.SYNTHETIC_SKIN_TONES, options)
    hair = _palette_colour(rng, options.SYNTHETIC_HAIR_COLOURS, options)
    shirt = _random_colour(rng, options)
    trousers = _random_colour(rng, options)
    sleeves = shirt if rng.random() < 0.5 else skin
    parts = []
    for prefix, _ in _SIDES:
        parts.append(line_part(kp[prefix + 'hip'], kp[prefix + 'knee'], sizes['leg'], trousers))
        parts.append(line_part(kp[prefix + 'knee'], kp[prefix + 'ankle'], sizes['leg'], trousers))
    parts.append(line_part(kp['left_hip'], kp['right_hip'], sizes['leg'], trousers))
    torso = [kp['left_shoulder'], kp['right_shoulder'], kp['right_hip'], kp['left_hip']]
    parts.append(polygon_part(torso, shirt))
    parts.append(line_part(kp['left_shoulder'], kp['right_shoulder'], sizes['arm'], shirt))
    parts.append(line_part(pose['neck'], pose['head_centre'], sizes['neck'], skin))
    for prefix, _ in _SIDES:
        parts.append(line_part(kp[prefix + 'shoulder'], kp[prefix + 'elbow'], sizes['arm'], shirt))
        parts.append(line_part(kp[prefix + 'elbow'], kp[prefix + 'wrist'], sizes['arm'], sleeves))
    axes = (sizes['head_width'], sizes['head_radius'])
    if pose['back_view']:
        parts.append(ellipse_part(pose['head_centre'], axes, pose['lean'], hair))
    else:
        parts.append(ellipse_part(pose['head_centre'], axes, pose['lean'], skin))
        cap_centre = pose['head_centre'] + pose['up'] * face['hair_offset'] * sizes['head_radius']
        cap_axes = (sizes['head_width'], face['hair_height'] * sizes['head_radius'])
        parts.append(ellipse_part(cap_centre, cap_axes, pose['lean'], hair, 180, 360))
    labelled = pose['labelled']
    for name in ('left_ear', 'right_ear'):
        if labelled[_KP[name]]:
            parts.append(circle_part(kp[name], sizes['ear'], colours['ear']))
    if not pose['back_view']:
        for name in ('left_eye', 'right_eye'):
            parts.append(circle_part(kp[name], sizes['eye'], colours['eye']))
        parts.append(circle_part(kp['nose'], sizes['nose'], colours['nose']))
    for prefix, _ in _SIDES:
        for joint in _BODY_JOINTS:
            parts.append(circle_part(kp[prefix + joint], sizes['joint'], colours[joint]))
    return parts


def draw_parts(canvas, parts, value=None):
    """Draws primitives (figure_parts, random_shape) on `canvas` in place.

    With value=None: anti-aliased, in each part's RGB colour (an image). With a value: that value, no
    anti-aliasing (a mask: exactly the pixels a part covers).
    """
    line_type = cv2.LINE_AA if value is None else cv2.LINE_8
    for kind, geometry, colour in parts:
        colour = colour if value is None else value
        if kind == 'line':
            start, end, thickness = geometry
            cv2.line(canvas, start, end, colour, thickness, line_type, _SHIFT)
        elif kind == 'polygon':
            cv2.fillPoly(canvas, [geometry], colour, line_type, _SHIFT)
        elif kind == 'ellipse':
            centre, axes, angle, start, end = geometry
            cv2.ellipse(canvas, centre, axes, angle, start, end, colour, -1, line_type, _SHIFT)
        elif kind == 'circle':
            centre, radius = geometry
            cv2.circle(canvas, centre, radius, colour, -1, line_type, _SHIFT)
        else:
            raise ValueError('unknown drawing primitive %r' % (kind,))


def parts_mask(parts, size):
    """bool [size, size]: the pixels the primitives cover."""
    mask = np.zeros((size, size), np.uint8)
    draw_parts(mask, parts, 1)
    return mask.astype(bool)


# ----------------------------------------------------------------------------
# Scenes
# ----------------------------------------------------------------------------

def draw_background(rng, size, options=None):
    """uint8 [size, size, 3] RGB: a smooth colour field around a random tone, fine texture, clutter shapes."""
    options = settings.resolve(options)
    cells = _count(rng, options.SYNTHETIC_BACKGROUND_CELLS)
    spread = options.SYNTHETIC_BACKGROUND_VARIATION
    field = (np.float32(_random_colour(rng, options))
             + rng.uniform(-spread, spread, (cells, cells, 3)).astype(np.float32))
    image = cv2.resize(field, (size, size), interpolation=cv2.INTER_LINEAR)
    fine = size // 4 + 1
    texture = rng.standard_normal((fine, fine, 3), dtype=np.float32) * _uniform(rng, options.SYNTHETIC_TEXTURE_STD)
    image += cv2.resize(texture, (size, size), interpolation=cv2.INTER_LINEAR)
    image = np.clip(image, 0, 255).astype(np.uint8)
    count = _count(rng, options.SYNTHETIC_CLUTTER_SHAPES)
    draw_parts(image, [random_shape(rng, size, options.SYNTHETIC_CLUTTER_SIZE, options) for _ in range(count)])
    return image


def random_shape(rng, size, size_range, options=None):
    """One drawing primitive: a rotated box, an ellipse or a bar, anywhere in the image, random colour."""
    options = settings.resolve(options)
    centre = rng.uniform(0, size, 2)
    width, height = rng.uniform(size_range[0] * size, size_range[1] * size, 2)
    angle = _uniform(rng, (0.0, 180.0))
    colour = _random_colour(rng, options)
    kind = rng.integers(3)
    if kind == 0:
        corners = cv2.boxPoints(((float(centre[0]), float(centre[1])), (float(width), float(height)), angle))
        return polygon_part(corners, colour)
    if kind == 1:
        return ellipse_part(centre, (0.5 * width, 0.5 * height), angle, colour)
    direction = _rotate(np.array([0.5 * width, 0.0]), math.radians(angle))
    thickness = max(1, int(round(options.SYNTHETIC_BAR_THICKNESS * height)))
    return line_part(centre - direction, centre + direction, thickness, colour)


def _count(rng, bounds):
    return int(rng.integers(bounds[0], bounds[1] + 1))


def _sample_figures(rng, size, count, height_range, low, high, options):
    figures = []
    for _ in range(count):
        pose = sample_pose(rng, _uniform(rng, height_range) * size, options)
        pose = place_pose(rng, pose, low, high)
        figures.append({'pose': pose, 'parts': figure_parts(rng, pose, options)})
    return figures


def _occlusion(figures, occluder_mask):
    """Visible mask and the mask of what lies in front, for figures listed back to front."""
    covered = occluder_mask.copy()
    for figure in reversed(figures):
        figure['in_front'] = covered.copy()
        figure['visible'] = figure['full_mask'] & ~covered
        covered |= figure['full_mask']
    return covered


def _keypoint_visibility(pose, figure, size):
    """float32 [K, 3] (x, y, v) of a figure; unlabelled points are 0, 0, 0."""
    xy = pose['keypoints']
    pixel = np.floor(xy + 0.5).astype(np.int64)  # pixel (col, row) whose centre is nearest
    inside = np.all((pixel >= 0) & (pixel < size), axis=1)
    col, row = np.clip(pixel[:, 0], 0, size - 1), np.clip(pixel[:, 1], 0, size - 1)
    labelled = pose['labelled'] & inside
    visible = labelled & figure['visible'][row, col]
    hidden = labelled & ~visible & figure['full_mask'][row, col] & figure['in_front'][row, col]
    v = np.where(visible, 2, np.where(hidden, 1, 0))
    keypoints = np.zeros((config.NUM_KEYPOINTS, 3), np.float32)
    keypoints[:, :2] = np.where(v[:, None] > 0, xy, 0.0)
    keypoints[:, 2] = v
    return keypoints


def render_scene(rng, size, options=None):
    """One synthetic image with its exact ground truth, before COCO encoding.

    Args:
      rng: numpy Generator (all randomness comes from it).
      size: image side, px.
    Returns:
      dict
        'image': uint8 [size, size, 3] RGB (before JPEG compression);
        'persons': list, back to front, of dicts 'keypoints' float32 [K, 3] (x, y, v), 'mask' bool [S, S]
          (visible silhouette), 'full_mask' bool [S, S] (whole figure), 'in_front' bool [S, S] (figures in
          front and objects), 'kind' ('person' labelled figure, or 'tiny'), 'visible_fraction' float;
        'crowd_mask': bool [S, S] visible crowd region (all False without a crowd);
        'occluder_mask': bool [S, S] objects in front of everyone.
    """
    options = settings.resolve(options)
    image = draw_background(rng, size, options)
    low, high = np.multiply(options.SYNTHETIC_PLACEMENT, size)
    people = _sample_figures(rng, size, _count(rng, options.SYNTHETIC_PEOPLE_PER_IMAGE),
                             options.SYNTHETIC_PERSON_HEIGHT, low, high, options)
    tiny = _sample_figures(rng, size, _count(rng, options.SYNTHETIC_TINY_PERSONS),
                           options.SYNTHETIC_TINY_HEIGHT, low, high, options)
    for figure in people:
        figure['kind'] = 'person'
    for figure in tiny:
        figure['kind'] = 'tiny'

    crowd = []
    if rng.random() < options.SYNTHETIC_CROWD_PROBABILITY:
        width = _uniform(rng, options.SYNTHETIC_CROWD_EXTENT) * size
        centre = rng.uniform(low, high, 2)
        half = 0.5 * width * np.array([1.0, options.SYNTHETIC_CROWD_ASPECT])
        crowd = _sample_figures(rng, size, _count(rng, options.SYNTHETIC_CROWD_FIGURES),
                                options.SYNTHETIC_CROWD_HEIGHT, centre - half, centre + half, options)

    occluders = []
    if rng.random() < options.SYNTHETIC_OCCLUDER_PROBABILITY:
        occluders = [random_shape(rng, size, options.SYNTHETIC_OCCLUDER_SIZE, options)
                     for _ in range(_count(rng, options.SYNTHETIC_OCCLUDERS))]
    occluder_mask = parts_mask(occluders, size)

    # Nearer figures stand lower in the picture: depth order by the bottom of each figure.
    figures = sorted(people + tiny, key=lambda f: pose_extent(f['pose'])[3])
    for figure in figures:
        figure['full_mask'] = parts_mask(figure['parts'], size)
    covered = _occlusion(figures, occluder_mask)
    # Figures hidden almost entirely are left out of the picture (their few pixels could not be annotated);
    # the others' occlusion is then worked out again without them.
    kept = [f for f in figures if f['visible'].sum() >= options.SYNTHETIC_MIN_VISIBLE_AREA]
    if len(kept) < len(figures):
        figures = kept
        covered = _occlusion(figures, occluder_mask)

    crowd_mask = np.zeros((size, size), bool)
    if crowd:
        union = np.zeros((size, size), np.uint8)
        for figure in crowd:
            draw_parts(union, figure['parts'], 1)
        # A crowd region is the area the crowd fills, gaps between its figures included, as in COCO.
        heights = [pose_extent(f['pose'])[3] - pose_extent(f['pose'])[1] for f in crowd]
        side = 2 * int(round(options.SYNTHETIC_CROWD_CLOSING * np.mean(heights))) + 1
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
        crowd_mask = cv2.morphologyEx(union, cv2.MORPH_CLOSE, kernel).astype(bool) & ~covered
        if crowd_mask.sum() < options.SYNTHETIC_MIN_VISIBLE_AREA:
            crowd_mask[:] = False

    for figure in crowd + figures:
        draw_parts(image, figure['parts'])
    draw_parts(image, occluders)
    noise = rng.standard_normal(image.shape, dtype=np.float32) * _uniform(rng, options.SYNTHETIC_NOISE_STD)
    image = np.clip(np.rint(image + noise), 0, 255).astype(np.uint8)

    persons = []
    for figure in figures:
        full_area = figure['full_mask'].sum()
        fraction = float(figure['visible'].sum()) / max(1, full_area)
        if figure['kind'] == 'person' and fraction >= options.SYNTHETIC_MIN_VISIBLE_FRACTION:
            keypoints = _keypoint_visibility(figure['pose'], figure, size)
        else:
            keypoints = np.zeros((config.NUM_KEYPOINTS, 3), np.float32)
        persons.append({'keypoints': keypoints, 'mask': figure['visible'], 'full_mask': figure['full_mask'],
                        'in_front': figure['in_front'], 'kind': figure['kind'], 'visible_fraction': fraction})
    return {'image': image, 'persons': persons, 'crowd_mask': crowd_mask, 'occluder_mask': occluder_mask}


# ----------------------------------------------------------------------------
# COCO encoding
# ----------------------------------------------------------------------------

def _polygons_from_contours(contours, hierarchy, tolerance, origin):
    """COCO polygons (flat x, y lists) of lattice contours (mask_to_polygons); holes bridged into their outer."""
    rings = {}
    for index, contour in enumerate(contours):
        if tolerance > 0:
            contour = cv2.approxPolyDP(contour, tolerance, True)
        points = contour[:, 0, :].astype(np.float64)
        parent = hierarchy[index][3]
        if parent < 0:
            rings.setdefault(index, [None, []])[0] = points
        else:
            rings.setdefault(parent, [None, []])[1].append(points)
    polygons = []
    for outer, holes in rings.values():
        for hole in holes:
            # A zero-width bridge to the hole: walked there and back, it adds nothing to the even-odd fill.
            distance = ((outer[:, None, :] - hole[None, :, :]) ** 2).sum(-1)
            i, j = np.unravel_index(np.argmin(distance), distance.shape)
            outer = np.concatenate([outer[:i + 1], hole[j:], hole[:j + 1], outer[i:]])
        # Lattice cell X is the COCO raster coordinate X / 2 (pixel c covers [c, c+1]) relative to `origin`.
        coordinates = (outer / 2.0 + origin).ravel()
        polygons.append([int(v) if v == int(v) else float(v) for v in coordinates])  # short JSON
    return polygons


def _rasterise(polygons, height, width):
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))).astype(bool)


def mask_to_polygons(mask):
    """COCO polygons whose pycocotools rasterisation (annToMask) is exactly `mask`.

    Args:
      mask: bool [H, W], not empty.
    Returns:
      list of flat [x0, y0, x1, y1, ...] lists in COCO's raster frame, or None if no exact polygon was found.
    """
    height, width = mask.shape
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        raise ValueError('mask_to_polygons: the mask is empty')
    top, left = rows.min() - 1, cols.min() - 1
    # A half-pixel lattice: cell (2r, 2c) is the centre of pixel (r, c) of the one-pixel-padded crop, odd cells
    # its edges and corners. A pixel fills its 3 x 3 cells, so contours run along pixel edges, half a pixel
    # from every pixel centre on either side: the polygon separates mask from background centres exactly.
    lattice = np.zeros((2 * (rows.max() - top) + 3, 2 * (cols.max() - left) + 3), np.uint8)
    lattice[2 * (rows - top), 2 * (cols - left)] = 1
    lattice = cv2.dilate(lattice, np.ones((3, 3), np.uint8))
    contours, hierarchy = cv2.findContours(lattice, cv2.RETR_CCOMP, cv2.CHAIN_APPROX_SIMPLE)
    # Cell X is the pixel-centre coordinate X / 2 + left, i.e. COCO raster coordinate X / 2 + left + 0.5.
    origin = np.array([left, top], np.float64) + 0.5
    for tolerance in (_SIMPLIFY_TOLERANCE, 0.0):
        polygons = _polygons_from_contours(contours, hierarchy[0], tolerance, origin)
        polygons = [p for p in polygons if len(p) >= 6]
        if polygons and np.array_equal(_rasterise(polygons, height, width), mask):
            return polygons
    return None


def mask_to_rle(mask):
    """Uncompressed COCO RLE {'counts': [int], 'size': [H, W]} of a bool mask (column-major runs)."""
    flat = np.asarray(mask, np.uint8).ravel(order='F')
    changes = np.flatnonzero(np.diff(flat)) + 1
    counts = np.diff(np.concatenate([[0], changes, [flat.size]]))
    if flat.size and flat[0]:
        counts = np.concatenate([[0], counts])
    return {'counts': [int(c) for c in counts], 'size': [int(mask.shape[0]), int(mask.shape[1])]}


def _area_and_box(mask):
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    box = mask_utils.toBbox(rle)
    return float(mask_utils.area(rle)), [float(v) for v in box]


def scene_annotations(scene, image_id, first_id):
    """COCO person annotations of a scene (render_scene), ids first_id, first_id + 1, ...

    Persons get polygon segmentations of their visible silhouette; the crowd region (if any) an iscrowd=1
    annotation with an uncompressed RLE, as in the COCO files.
    """
    annotations = []
    for person in scene['persons']:
        segmentation = mask_to_polygons(person['mask'])
        if segmentation is None:  # never seen; an RLE is still a mask pycocotools reads
            segmentation = mask_to_rle(person['mask'])
        area, box = _area_and_box(person['mask'])
        keypoints = person['keypoints']
        values = []
        for x, y, v in keypoints:
            values += [round(float(x), 2), round(float(y), 2), int(v)]
        annotations.append({
            'id': first_id + len(annotations), 'image_id': image_id, 'category_id': 1,
            'segmentation': segmentation, 'area': area, 'bbox': box, 'iscrowd': 0,
            'keypoints': values, 'num_keypoints': int((keypoints[:, 2] > 0).sum())})
    if scene['crowd_mask'].any():
        area, box = _area_and_box(scene['crowd_mask'])
        annotations.append({
            'id': first_id + len(annotations), 'image_id': image_id, 'category_id': 1,
            'segmentation': mask_to_rle(scene['crowd_mask']), 'area': area, 'bbox': box, 'iscrowd': 1,
            'keypoints': [0] * (3 * config.NUM_KEYPOINTS), 'num_keypoints': 0})
    return annotations


def person_category():
    """COCO's person category with its keypoint names (config.KEYPOINTS order) and skeleton."""
    return {'supercategory': 'person', 'id': 1, 'name': 'person', 'keypoints': list(config.KEYPOINTS),
            'skeleton': [list(pair) for pair in config.COCO_SKELETON]}


# ----------------------------------------------------------------------------
# Dataset
# ----------------------------------------------------------------------------

def dataset_paths(output_dir):
    """Where a dataset in `output_dir` keeps its images and annotation files (COCO 2017 layout)."""
    return {
        'root': output_dir,
        'train_images': os.path.join(output_dir, 'train2017'),
        'train_annotations': os.path.join(output_dir, 'annotations', 'person_keypoints_train2017.json'),
        'val_images': os.path.join(output_dir, 'val2017'),
        'val_annotations': os.path.join(output_dir, 'annotations', 'person_keypoints_val2017.json'),
    }


def image_rng(seed, split, index):
    """The Generator of image `index` of `split`: images do not depend on how many others are made."""
    return np.random.default_rng([seed, SPLITS.index(split), index])


def write_split(split, count, paths, image_size, seed, log=print, options=None):
    """Writes `count` images of `split` and its annotation file; returns a dict of counts."""
    options = settings.resolve(options)
    image_dir = paths[split + '_images']
    annotation_file = paths[split + '_annotations']
    os.makedirs(image_dir, exist_ok=True)
    os.makedirs(os.path.dirname(annotation_file), exist_ok=True)
    first_id = 0 if split == 'train' else options.SYNTHETIC_VAL_ID_OFFSET
    images, annotations = [], []
    jpeg = [cv2.IMWRITE_JPEG_QUALITY, int(options.SYNTHETIC_JPEG_QUALITY)]
    start = last_report = time.time()
    for index in range(count):
        scene = render_scene(image_rng(seed, split, index), image_size, options)
        image_id = first_id + index + 1
        file_name = '%012d.jpg' % image_id
        path = os.path.join(image_dir, file_name)
        if not cv2.imwrite(path, cv2.cvtColor(scene['image'], cv2.COLOR_RGB2BGR), jpeg):
            raise OSError('could not write image %s' % path)
        images.append({'id': image_id, 'file_name': file_name, 'width': image_size, 'height': image_size})
        annotations += scene_annotations(scene, image_id, first_id + len(annotations) + 1)
        now = time.time()
        if log and (now - last_report >= _PROGRESS_SECONDS or index + 1 == count):
            last_report = now
            log('%s2017: %d/%d images, %.0f images/s' % (split, index + 1, count,
                                                         (index + 1) / max(now - start, 1e-9)))
    data = {
        'info': {'description': DESCRIPTION,  # first in the file: is_synthetic_run reads only the start
                 'version': '1.0', 'year': 2024, 'contributor': 'synthetic.py',
                 'seed': seed, 'image_size': image_size},
        'licenses': [],
        'images': images,
        'annotations': annotations,
        'categories': [person_category()],
    }
    temporary = annotation_file + '.tmp'
    with open(temporary, 'w') as f:
        json.dump(data, f, separators=(',', ':'))
    os.replace(temporary, annotation_file)
    persons = [a for a in annotations if not a['iscrowd']]
    stats = {
        'images': len(images),
        'persons': len(persons),
        'persons_with_keypoints': sum(a['num_keypoints'] > 0 for a in persons),
        'crowd_regions': len(annotations) - len(persons),
        'visible_keypoints': sum(a['keypoints'][2::3].count(2) for a in persons),
        'occluded_keypoints': sum(a['keypoints'][2::3].count(1) for a in persons),
    }
    if log:
        log('%s2017: %d persons (%d with keypoints), %d crowd regions, keypoints %d visible + %d occluded'
            ' -> %s' % (split, stats['persons'], stats['persons_with_keypoints'], stats['crowd_regions'],
                        stats['visible_keypoints'], stats['occluded_keypoints'], annotation_file))
    return stats


def _check_arguments(num_train, num_val, image_size, seed, options):
    problems = []
    for name, value in (('num_train', num_train), ('num_val', num_val), ('seed', seed)):
        if not isinstance(value, (int, np.integer)) or value < 0:
            problems.append('%s must be an integer >= 0, got %r' % (name, value))
    if not isinstance(image_size, (int, np.integer)) or image_size < options.SYNTHETIC_MIN_IMAGE_SIZE:
        problems.append('image_size must be an integer >= %d (config.SYNTHETIC_MIN_IMAGE_SIZE), got %r' % (
            options.SYNTHETIC_MIN_IMAGE_SIZE, image_size))
    if problems:
        raise ValueError('make_dataset: ' + '; '.join(problems))


def is_synthetic_run(run_config):
    """True if a train.py run trained on a synthetic.py set, from its config.json values (checkpoints.load_run_config):
    its TRAIN_ANNOTATIONS lie in its SYNTHETIC_DIR (true wherever the checkpoint was copied), or the file, if
    it is here, starts with DESCRIPTION (a set written with --output elsewhere)."""
    path = run_config.get('TRAIN_ANNOTATIONS')
    if not path:
        return False
    folder = run_config.get('SYNTHETIC_DIR')
    if folder and os.path.abspath(path).startswith(os.path.join(os.path.abspath(folder), '')):
        return True
    try:
        with open(path, 'rb') as f:
            head = f.read(_HEAD_BYTES)
    except OSError:
        return False
    return json.dumps(DESCRIPTION).encode() in head


def make_dataset(output_dir=None, num_train=None, num_val=None, image_size=None, seed=None, log=print,
                 options=None):
    """Writes a synthetic people dataset in the COCO 2017 person_keypoints layout.

    Args:
      output_dir: folder to write into (options.SYNTHETIC_DIR); existing files of the same names are replaced.
      num_train, num_val: images per split (options.SYNTHETIC_NUM_TRAIN / SYNTHETIC_NUM_VAL).
      image_size: side of the square images in px (options.SYNTHETIC_IMAGE_SIZE).
      seed: the same seed writes byte-identical files (options.SYNTHETIC_SEED).
      log: progress printer (None for silence).
      options: settings.Settings of the generator (SYNTHETIC_*); None -> config.py's.
    Returns:
      dict of paths 'root', 'train_images', 'train_annotations', 'val_images', 'val_annotations'.
    Raises:
      ValueError naming every bad argument, before anything is written.
    """
    options = settings.resolve(options)
    output_dir, num_train, num_val, image_size, seed = (options.pick(value, name) for value, name in (
        (output_dir, 'SYNTHETIC_DIR'), (num_train, 'SYNTHETIC_NUM_TRAIN'), (num_val, 'SYNTHETIC_NUM_VAL'),
        (image_size, 'SYNTHETIC_IMAGE_SIZE'), (seed, 'SYNTHETIC_SEED')))
    _check_arguments(num_train, num_val, image_size, seed, options)
    paths = dataset_paths(os.path.abspath(output_dir))
    for split, count in zip(SPLITS, (num_train, num_val)):
        write_split(split, int(count), paths, int(image_size), int(seed), log, options)
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(description='Write a synthetic people dataset in COCO person_keypoints '
                                                 'format (train2017/, val2017/, annotations/).')
    parser.add_argument('--output', default=config.SYNTHETIC_DIR, help='output folder (default %(default)s)')
    parser.add_argument('--train', type=int, default=config.SYNTHETIC_NUM_TRAIN, help='training images')
    parser.add_argument('--val', type=int, default=config.SYNTHETIC_NUM_VAL, help='validation images')
    parser.add_argument('--size', type=int, default=config.SYNTHETIC_IMAGE_SIZE, help='image side, px')
    parser.add_argument('--seed', type=int, default=config.SYNTHETIC_SEED, help='random seed')
    args = parser.parse_args(argv)
    start = time.time()
    try:
        paths = make_dataset(args.output, args.train, args.val, args.size, args.seed)
    except ValueError as error:
        parser.error(str(error))
    print('synthetic dataset written to %s in %.1f s' % (paths['root'], time.time() - start))
    return 0


if __name__ == '__main__':
    sys.exit(main())
