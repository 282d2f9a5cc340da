"""Decoding speed: post_proc.decode time per image, by stage, for 5/10/20/40 people at 401, 801 and 1401 px.

The maps are synthetic but shaped like a network's: people with random poses and body masks, blob-shaped
heatmaps with background noise, offsets with a few px of noise where they are defined and random values
elsewhere, a soft noisy segmentation.  The builders here (random_people, synthetic_outputs) also serve the
tests (tests/test_post_proc.py) with noise=0, where they follow the target contract of HELPERS.md exactly.

Usage: python bench/decode_bench.py [--sizes 401 801 1401] [--people 5 10 20 40] [--repeats 5] [--stride 8]
Last line: `decode: <ms> ms per image at 801x801 with 40 people` (when 801 and 40 are measured).
"""
import argparse
import os
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import config  # noqa: E402
import post_proc  # noqa: E402

# A standing person facing the camera, (x, y) as fractions of the height (head top 0, ankles ~1), COCO order.
TEMPLATE = np.array([
    (0.0, 0.08), (0.02, 0.06), (-0.02, 0.06), (0.045, 0.07), (-0.045, 0.07),
    (0.11, 0.2), (-0.11, 0.2), (0.14, 0.36), (-0.14, 0.36), (0.15, 0.5), (-0.15, 0.5),
    (0.07, 0.52), (-0.07, 0.52), (0.075, 0.75), (-0.075, 0.75), (0.08, 0.97), (-0.08, 0.97)], np.float32)
LIMB_WIDTH = 0.08  # body part thickness, fraction of the height
HEAD_RADIUS = 0.08  # fraction of the height


def random_people(num, image_shape, rng, height_range=None, unlabelled=0.0, margin=0.0):
    """Random poses: float32 [num, K, 3] (x, y, v) in input px, v = 2 labelled or 0 (with prob `unlabelled`).

    Heights are uniform in `height_range` px (default: sized so `num` people roughly fill the image); each
    keypoint moves by up to 6% of the height and the whole figure leans by up to 15 degrees.
    """
    height, width = image_shape[:2]
    if height_range is None:
        side = min(height, width) / max(np.sqrt(num), 1.0)
        height_range = (0.6 * side, 1.2 * side)
    people = np.zeros((num, config.NUM_KEYPOINTS, 3), np.float32)
    for n in range(num):
        h = rng.uniform(*height_range)
        points = TEMPLATE * h + rng.uniform(-0.06, 0.06, TEMPLATE.shape) * h
        angle = np.deg2rad(rng.uniform(-15, 15))
        rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]], np.float32)
        points = (points - points.mean(axis=0)) @ rotation.T
        low, high = points.min(axis=0), points.max(axis=0)
        centre = np.array([rng.uniform(margin - low[0], width - 1 - margin - high[0]) if width - 1 - 2 * margin > high[0] - low[0]
                           else (width - 1) / 2.0,
                           rng.uniform(margin - low[1], height - 1 - margin - high[1]) if height - 1 - 2 * margin > high[1] - low[1]
                           else (height - 1) / 2.0], np.float32)
        people[n, :, :2] = points + centre
        people[n, :, 2] = np.where(rng.uniform(size=config.NUM_KEYPOINTS) < unlabelled, 0, 2)
    return people


def body_masks(people, image_shape, stride):
    """Body masks on the output grid, bool [N, H', W']: thick limbs, a torso polygon and a head disk drawn
    through ALL keypoints (labelled or not, as a body has them)."""
    rows, cols = post_proc.grid_shape(image_shape, stride)
    masks = np.zeros((len(people), rows, cols), bool)
    for n, person in enumerate(people):
        points = person[:, :2] / stride
        h = np.linalg.norm(points[0] - (points[15] + points[16]) / 2) / 0.89
        canvas = np.zeros((rows, cols), np.uint8)
        thickness = max(int(round(LIMB_WIDTH * h)), 1)
        for a, b in config.EDGES:
            if a >= 5 or b >= 5 or a == 0:
                pa = tuple(int(round(v)) for v in points[a])
                pb = tuple(int(round(v)) for v in points[b])
                cv2.line(canvas, pa, pb, 1, thickness)
        torso = np.round(points[[5, 6, 12, 11]]).astype(np.int32)
        cv2.fillPoly(canvas, [torso], 1)
        centre = tuple(int(round(v)) for v in points[0])
        cv2.circle(canvas, centre, max(int(round(HEAD_RADIUS * h)), 1), 1, -1)
        masks[n] = canvas > 0
    return masks


def synthetic_outputs(people, masks, image_shape, stride, rng=None, noise=0.0, radius=None):
    """Maps of the decoder's inputs for known people.

    noise=0: exactly the target maps of HELPERS.md (disks, nearest keypoint, valid only where defined, 0
    elsewhere).  noise>0 mimics a network: heatmaps fall off smoothly at the disk edge, plus exponential
    background noise of mean noise*0.01 and Gaussian noise of std noise*0.05; offsets carry Gaussian noise of noise*2 px (short), noise*4 px (mid, long)
    where defined and random values of noise*20 px elsewhere; segmentation is blurred and noisy.

    Args:
      people: float32 [N, K, 3] (x, y, v) in input px.
      masks: bool [N, H', W'] grid masks.
    Returns:
      dict of float32 maps named as post_proc.OUTPUT_CHANNELS.
    """
    radius = config.RADIUS if radius is None else radius
    rng = np.random.RandomState(0) if rng is None else rng
    rows, cols = post_proc.grid_shape(image_shape, stride)
    num, kinds = len(people), config.NUM_KEYPOINTS
    gx = (np.arange(cols, dtype=np.float32) * stride)[None, None, :]
    gy = (np.arange(rows, dtype=np.float32) * stride)[None, :, None]
    labelled = people[:, :, 2] > 0
    out = {name: np.zeros((rows, cols, c), np.float32) for name, c in post_proc.OUTPUT_CHANNELS}
    owner = np.full((kinds, rows, cols), -1, np.int64)
    distance = np.full((kinds, rows, cols), np.inf, np.float32)
    for k in range(kinds):
        persons = np.flatnonzero(labelled[:, k])
        if not len(persons):
            continue
        d2 = (people[persons, k, 0][:, None, None] - gx) ** 2 + (people[persons, k, 1][:, None, None] - gy) ** 2
        nearest = np.argmin(d2, axis=0)
        d = np.sqrt(np.take_along_axis(d2, nearest[None], axis=0)[0])
        inside = d <= radius
        owner[k] = np.where(inside, persons[nearest], -1)
        distance[k] = d
        who = persons[nearest]
        out['short_offsets'][..., 2 * k] = np.where(inside, people[who, k, 0] - gx[0], 0)
        out['short_offsets'][..., 2 * k + 1] = np.where(inside, people[who, k, 1] - gy[0], 0)
        if noise:
            out['heatmaps'][..., k] = 1.0 / (1.0 + np.exp(np.minimum((d - radius) / (0.15 * radius), 50)))
        else:
            out['heatmaps'][..., k] = inside
    for e, (k, l) in enumerate(config.DIRECTED_EDGES):
        who = owner[k]
        safe = np.maximum(who, 0)
        valid = (who >= 0) & labelled[safe, l]
        out['mid_offsets'][..., 2 * e] = np.where(valid, people[safe, l, 0] - gx[0], 0)
        out['mid_offsets'][..., 2 * e + 1] = np.where(valid, people[safe, l, 1] - gy[0], 0)
    coverage = masks.sum(axis=0) if num else np.zeros((rows, cols), np.int64)
    out['segmentation'][..., 0] = coverage > 0
    if num:
        who = np.argmax(masks, axis=0)
        single = (coverage == 1) & labelled.any(axis=1)[who]
        for k in range(kinds):
            valid = single & labelled[who, k]
            out['long_offsets'][..., 2 * k] = np.where(valid, people[who, k, 0] - gx[0], 0)
            out['long_offsets'][..., 2 * k + 1] = np.where(valid, people[who, k, 1] - gy[0], 0)
    if noise:
        shape = (rows, cols)
        heat = out['heatmaps'] + rng.exponential(0.01 * noise, out['heatmaps'].shape)
        out['heatmaps'] = np.clip(heat + rng.normal(0, 0.05 * noise, heat.shape), 0, 1).astype(np.float32)
        defined = {'short_offsets': distance <= radius, 'mid_offsets': None, 'long_offsets': None}
        for name, sigma in (('short_offsets', 2.0), ('mid_offsets', 4.0), ('long_offsets', 4.0)):
            values = out[name]
            if name == 'short_offsets':
                valid = np.repeat(np.moveaxis(defined[name], 0, -1), 2, axis=-1)
            else:
                valid = values != 0
            jitter = rng.normal(0, sigma * noise, values.shape)
            junk = rng.normal(0, 20.0 * noise, values.shape)
            out[name] = np.where(valid, values + jitter, junk).astype(np.float32)
        seg = cv2.GaussianBlur(out['segmentation'][..., 0], (0, 0), 0.7) + rng.normal(0, 0.05 * noise, shape)
        out['segmentation'] = np.clip(seg, 0, 1)[..., None].astype(np.float32)
    return out


def bench_one(size, num_people, stride, repeats, rng):
    """Seconds per stage and in total for one image size and people count: the minimum over `repeats` runs
    (the fastest run is the one least disturbed by other processes on a shared machine), the median total,
    and how many people were decoded."""
    image_shape = (size, size)
    people = random_people(num_people, image_shape, rng)
    masks = body_masks(people, image_shape, stride)
    outputs = synthetic_outputs(people, masks, image_shape, stride, rng, noise=1.0)
    post_proc.decode(outputs, stride, image_shape)  # warm-up
    stages, totals = {}, []
    for _ in range(repeats):
        timings = {}
        start = post_proc.CLOCK()
        found = post_proc.decode(outputs, stride, image_shape, timings=timings)
        totals.append(post_proc.CLOCK() - start)
        for name, seconds in timings.items():
            stages[name] = min(stages.get(name, np.inf), seconds)
    return stages, min(totals), float(np.median(totals)), len(found)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sizes', type=int, nargs='+', default=[401, 801, 1401])
    parser.add_argument('--people', type=int, nargs='+', default=[5, 10, 20, 40])
    parser.add_argument('--repeats', type=int, default=10)
    parser.add_argument('--stride', type=int, default=config.EVAL_OUTPUT_STRIDE)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--wall', action='store_true',
                        help='wall-clock time (default: CPU time of this process, OpenCV on one thread, so that '
                             'other jobs on a shared machine do not count)')
    args = parser.parse_args(argv)
    if not args.wall:
        cv2.setNumThreads(1)
        post_proc.CLOCK = time.process_time
    rng = np.random.RandomState(args.seed)
    stages = ('hough', 'seeds', 'greedy', 'scores', 'masks')
    print('stride %d, Hough cell %d px; %s ms per image, fastest of %d runs (median total in brackets)' % (
        args.stride, config.HOUGH_STRIDE, 'wall-clock' if args.wall else 'CPU', args.repeats))
    print('%-10s %6s %6s ' % ('size', 'people', 'found') + ' '.join('%7s' % s for s in stages) + '    total')
    result = None
    for size in args.sizes:
        for num in args.people:
            stage_seconds, total, median, found = bench_one(size, num, args.stride, args.repeats, rng)
            print('%-10s %6d %6d ' % ('%dx%d' % (size, size), num, found) +
                  ' '.join('%7.2f' % (1000 * stage_seconds.get(s, 0.0)) for s in stages) +
                  '  %7.2f (%.2f)' % (1000 * total, 1000 * median))
            sys.stdout.flush()
            if size == 801 and num == 40:
                result = total
    if result is not None:
        print('decode: %.1f ms per image at 801x801 with 40 people' % (1000 * result))


if __name__ == '__main__':
    main()
