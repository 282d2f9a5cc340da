"""Pictures of PersonLab results with OpenCV: skeletons, instance masks, heatmap and Hough-map views.

Every function takes an RGB uint8 image [H, W, 3] and returns a new RGB uint8 image of the same size (the
input is never modified); save_image writes one to disk.  Keypoints are float32 [K, 3] (x, y, score) in
input pixels, as post_proc.decode returns them, or COCO (x, y, v) ground truth: a keypoint is drawn only if
its third value exceeds `threshold` and its position is finite, so missing keypoints (COCO stores them at
(0, 0) with v = 0) never appear.
"""
import colorsys
import os

import cv2
import numpy as np

import config
import post_proc
import settings

MIN_FONT_SCALE = 0.35  # below this OpenCV's Hershey glyphs are unreadable
TEXT_LIFT = 4  # px between a score and the person's top keypoint
TEXT_MIN_Y = 10  # px: a score is never written above the image's top edge (its baseline is at least here)
SUBPIXEL_BITS = 4  # cv2 drawing shift: coordinates in 1/16 px keep sub-pixel keypoints in place


def _palette(count, saturation=0.9, value=1.0, hue_step=None):
    """`count` distinct RGB colours, hues evenly spaced (or `hue_step` apart, modulo 1)."""
    hue_step = 1.0 / max(count, 1) if hue_step is None else hue_step
    return [tuple(int(255 * c) for c in colorsys.hsv_to_rgb((i * hue_step) % 1.0, saturation, value))
            for i in range(count)]


LIMB_COLOURS = _palette(len(config.EDGES))  # one colour per limb (tree edge)
PERSON_COLOURS = _palette(12, saturation=0.75, hue_step=0.618034)  # golden-ratio hues: neighbours differ


def _check_image(image):
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError('image must be uint8 [H, W, 3] RGB, got %s %s' % (image.dtype, image.shape))
    return image


def _line_width(image, options):
    return max(1, int(round(max(image.shape[:2]) * options.PLOT_LINE_WIDTH)))


def existing(keypoints, threshold=None, options=None):
    """bool [K]: keypoints [K, 3] (x, y, score or COCO v) whose third value exceeds `threshold` (default
    config.PLOT_KEYPOINT_THRESHOLD) and whose position is finite: the ones that are drawn."""
    threshold = settings.resolve(options).PLOT_KEYPOINT_THRESHOLD if threshold is None else threshold
    keypoints = np.asarray(keypoints, np.float64).reshape(config.NUM_KEYPOINTS, 3)
    return (keypoints[:, 2] > threshold) & np.isfinite(keypoints).all(axis=1)


def draw_skeleton(image, keypoints, threshold=None, thickness=None, options=None):
    """Limbs (one colour each) between existing keypoints and a dot on every existing keypoint.

    keypoints: [K, 3] (x, y, score or v); threshold: default config.PLOT_KEYPOINT_THRESHOLD.
    """
    options = settings.resolve(options)
    canvas = _check_image(image).copy()
    keypoints = np.asarray(keypoints, np.float64).reshape(config.NUM_KEYPOINTS, 3)
    exists = existing(keypoints, threshold, options=options)
    thickness = _line_width(canvas, options) if thickness is None else thickness
    shift = SUBPIXEL_BITS
    points = [tuple(int(round(v * (1 << shift))) for v in p[:2]) if ok else None
              for p, ok in zip(keypoints, exists)]
    for (a, b), colour in zip(config.EDGES, LIMB_COLOURS):
        if exists[a] and exists[b]:
            cv2.line(canvas, points[a], points[b], colour, thickness, cv2.LINE_AA, shift)
    for k in np.flatnonzero(exists):
        cv2.circle(canvas, points[k], (thickness + 1) << shift, (255, 255, 255), -1, cv2.LINE_AA, shift)
        cv2.circle(canvas, points[k], (thickness + 1) << shift, (0, 0, 0), 1, cv2.LINE_AA, shift)
    return canvas


def overlay_masks(image, masks, alpha=None, options=None):
    """Instance masks (bool [H, W] each, None skipped) blended in one colour per person."""
    alpha = settings.resolve(options).PLOT_MASK_ALPHA if alpha is None else alpha
    canvas = _check_image(image).copy()
    blend = canvas.astype(np.float32)
    for n, mask in enumerate(masks):
        if mask is None:
            continue
        mask = np.asarray(mask, bool)
        if mask.shape != canvas.shape[:2]:
            raise ValueError('mask %d has shape %s, the image %s' % (n, mask.shape, canvas.shape[:2]))
        colour = np.array(PERSON_COLOURS[n % len(PERSON_COLOURS)], np.float32)
        blend[mask] = (1 - alpha) * blend[mask] + alpha * colour
    return np.clip(blend + 0.5, 0, 255).astype(np.uint8)


def draw_people(image, people, threshold=None, alpha=None, options=None):
    """Masks and skeletons of decoded people (post_proc.decode's list), with each person's score."""
    options = settings.resolve(options)
    canvas = overlay_masks(image, [p.get('mask') for p in people], alpha, options=options)
    for person in people:
        canvas = draw_skeleton(canvas, person['keypoints'], threshold, options=options)
    scale = max(max(canvas.shape[:2]) * options.PLOT_FONT_SCALE, MIN_FONT_SCALE)
    for person in people:
        keypoints = np.asarray(person['keypoints'])
        exists = existing(keypoints, threshold, options=options)
        if exists.any() and 'score' in person:
            x, y = keypoints[exists, :2].min(axis=0)
            cv2.putText(canvas, '%.2f' % person['score'], (int(x), max(int(y) - TEXT_LIFT, TEXT_MIN_Y)),
                        cv2.FONT_HERSHEY_SIMPLEX, scale, (255, 255, 255), 1, cv2.LINE_AA)
    return canvas


def map_view(image, values, step, alpha=None, options=None):
    """A map [h, w] or [h, w, C] (maximum over channels) of grid `step`, values in [0, 1], coloured (JET) over
    the image."""
    alpha = settings.resolve(options).PLOT_MAP_ALPHA if alpha is None else alpha
    canvas = _check_image(image)
    values = np.asarray(values, np.float32)
    if values.ndim == 3:
        values = values.max(axis=2)
    if not np.isfinite(values).all():
        raise ValueError('the map holds NaN or infinite values')
    up = np.clip(post_proc.grid_to_input(np.ascontiguousarray(values), step, canvas.shape[:2]), 0, 1)
    colours = cv2.applyColorMap((up * 255).astype(np.uint8), cv2.COLORMAP_JET)[..., ::-1]
    weight = (alpha * up)[..., None]  # cold regions keep the image
    return np.clip(canvas * (1 - weight) + colours * weight + 0.5, 0, 255).astype(np.uint8)


def heatmap_view(image, heatmaps, stride, kinds=None, alpha=None, options=None):
    """Keypoint heatmaps p_k [H', W', K] (probabilities) of the given types (default all) over the image."""
    heatmaps = np.asarray(heatmaps, np.float32)
    if kinds is not None:
        heatmaps = heatmaps[..., list(np.atleast_1d(kinds))]
    return map_view(image, heatmaps, stride, alpha, options=options)


def hough_view(image, hough, hough_stride, kinds=None, alpha=None, options=None):
    """Hough maps h_k [Hh, Wh, K] (post_proc.hough_voting), each type scaled to its maximum, over the image."""
    hough = np.asarray(hough, np.float32)
    if kinds is not None:
        hough = hough[..., list(np.atleast_1d(kinds))]
    peak = hough.reshape(-1, hough.shape[-1]).max(axis=0)
    hough = hough / np.where(peak > 0, peak, 1.0)
    return map_view(image, hough, hough_stride, alpha, options=options)


def save_image(path, image):
    """Writes an RGB uint8 image (format from the extension); creates the folder; raises IOError on failure."""
    image = _check_image(image)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    if not cv2.imwrite(path, image[..., ::-1]):
        raise IOError('could not write %s (unknown extension or unwritable folder?)' % path)
    return path


def curve_picture(series, title='', x_label='', y_label='', size=(480, 720), y_range=(0.0, 1.0)):
    """A line chart of learning curves, e.g. AP against training steps (bench/overfit.py).

    Args:
      series: list of (name, [(x, y), ...], dashed): solid lines with a dot per point, or a dashed horizontal
        reference line at the y of the first point (an oracle).
      title, x_label, y_label: text on the chart.
      size: (height, width) px; y_range: (low, high) of the y axis.
    Returns:
      RGB uint8 [height, width, 3], white background.
    """
    height, width = size
    image = np.full((height, width, 3), 255, np.uint8)
    left, right, top, bottom = 60, width - 20, 40, height - 50
    xs = [x for _, points, dashed in series if not dashed for x, _ in points] or [0, 1]
    x0, x1 = min(0, min(xs)), max(xs) if max(xs) > min(0, min(xs)) else min(0, min(xs)) + 1
    y0, y1 = y_range

    def px(x, y):
        return (int(round(left + (x - x0) / float(x1 - x0) * (right - left))),
                int(round(bottom - (min(max(y, y0), y1) - y0) / float(y1 - y0) * (bottom - top))))

    grey, black, font = (200, 200, 200), (0, 0, 0), cv2.FONT_HERSHEY_SIMPLEX
    for i in range(6):
        y = y0 + (y1 - y0) * i / 5.0
        cv2.line(image, px(x0, y), px(x1, y), grey, 1)
        cv2.putText(image, '%.1f' % y, (8, px(x0, y)[1] + 4), font, 0.4, black, 1, cv2.LINE_AA)
    for i in range(6):
        x = x0 + (x1 - x0) * i / 5.0
        cv2.putText(image, '%g' % round(x), (px(x, y0)[0] - 12, bottom + 18), font, 0.4, black, 1, cv2.LINE_AA)
    cv2.rectangle(image, (left, top), (right, bottom), black, 1)
    cv2.putText(image, title, (left, 25), font, 0.55, black, 1, cv2.LINE_AA)
    cv2.putText(image, x_label, ((left + right) // 2 - 30, height - 12), font, 0.45, black, 1, cv2.LINE_AA)
    cv2.putText(image, y_label, (8, top - 8), font, 0.45, black, 1, cv2.LINE_AA)
    solid = sum(1 for _, _, dashed in series if not dashed)
    palette = _palette(max(solid, 1))
    counts = {False: 0, True: 0}
    for n, (name, points, dashed) in enumerate(series):
        # the i-th dashed reference line takes the colour of the i-th solid line (a curve and its oracle)
        colour = tuple(int(c * 0.8) for c in palette[counts[dashed] % len(palette)])
        counts[dashed] += 1
        if dashed and points:
            y = points[0][1]
            for x in np.linspace(x0, x1, 40)[::2]:
                cv2.line(image, px(x, y), px(x + (x1 - x0) / 40.0, y), colour, 1, cv2.LINE_AA)
        else:
            corners = [px(x, y) for x, y in points]
            for a, b in zip(corners[:-1], corners[1:]):
                cv2.line(image, a, b, colour, 2, cv2.LINE_AA)
            for corner in corners:
                cv2.circle(image, corner, 3, colour, -1, cv2.LINE_AA)
        cv2.putText(image, name, (left + 10, top + 18 + 16 * n), font, 0.45, colour, 1, cv2.LINE_AA)
    return image
