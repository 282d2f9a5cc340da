"""Decoding speed: post_proc.decode time per image, by stage, for 5/10/20/40 people at 401, 801 and 1401 px.

The maps are shaped like a network's (scenes.py): people with random poses and body masks, encoded by
data_generator.make_targets, then made noisy with scenes.network_like (soft heatmap edges with background
noise, offsets with a few px of noise where a target is defined and random values elsewhere, a soft noisy
segmentation; amounts in config.SCENE_NOISE).  The decoder gets no validity maps, as from a network.

Times are the MEDIAN over --repeats runs after a warm-up, per stage and in total.

Usage: python bench/decode_bench.py [--sizes 401 801 1401] [--people 5 10 20 40] [--repeats 10] [--stride 8]
                                    [--seed 0] [--wall]
Last line: `decode: <ms> ms per image at 801x801 with 40 people` (the median; when 801 and 40 are measured).
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
import scenes  # noqa: E402


def bench_one(size, num_people, stride, repeats, rng):
    """Median seconds per stage and in total over `repeats` runs for one image size and people count, and
    how many people were decoded: (dict stage -> seconds, total seconds, people)."""
    image_shape = (size, size)
    people = scenes.random_people(num_people, image_shape, rng)
    masks = scenes.body_masks(people, image_shape, stride)
    outputs = scenes.network_like(scenes.target_maps(people, masks, image_shape, stride), stride, rng)
    post_proc.decode(outputs, stride, image_shape)  # warm-up
    stages, totals = {}, []
    for _ in range(repeats):
        timings = {}
        start = post_proc.CLOCK()
        found = post_proc.decode(outputs, stride, image_shape, timings=timings)
        totals.append(post_proc.CLOCK() - start)
        for name, seconds in timings.items():
            stages.setdefault(name, []).append(seconds)
    return ({name: float(np.median(values)) for name, values in stages.items()}, float(np.median(totals)),
            len(found))


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
    print('stride %d, Hough cell %d px; %s ms per image, median of %d runs' % (
        args.stride, post_proc.hough_cell(config.RADIUS), 'wall-clock' if args.wall else 'CPU', args.repeats))
    print('%-10s %6s %6s ' % ('size', 'people', 'found') + ' '.join('%7s' % s for s in stages) + '    total')
    result = None
    for size in args.sizes:
        for num in args.people:
            stage_seconds, total, found = bench_one(size, num, args.stride, args.repeats, rng)
            print('%-10s %6d %6d ' % ('%dx%d' % (size, size), num, found) +
                  ' '.join('%7.2f' % (1000 * stage_seconds.get(s, 0.0)) for s in stages) +
                  '  %7.2f' % (1000 * total))
            sys.stdout.flush()
            if size == 801 and num == 40:
                result = total
    if result is not None:
        print('decode: %.1f ms per image at 801x801 with 40 people' % (1000 * result))  # median


if __name__ == '__main__':
    main()
