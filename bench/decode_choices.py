"""What each decoding choice where the paper is silent buys (docs/choices.md): the default config.py, then
each switch flipped alone.

Per configuration:
  synthetic  --scenes scenes of 6 overlapping people 110-170 px tall in 385x385, 15% of keypoints unlabelled
             (scenes.py): on the clean target maps, the share of labelled keypoints decoded to within 1 px
             (found) by the decoded person that has most of them, and decoded people per true person; the
             same on network-like noisy maps (scenes.network_like) within 3 px;
  oracle     keypoints AP and segm AP (keypoint persons) on the COCO sample's train and val files
             (bench/oracle_report.oracle: encode_example's target dict, validity maps included);
  speed      post_proc.decode's median CPU ms at 401x401 with 20 people on noisy maps (bench/decode_bench.py's
             scenes), OpenCV on one thread.

Usage: python bench/decode_choices.py [--scenes 40] [--repeats 10]
"""
import argparse
import os
import sys
import time

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import config  # noqa: E402
import oracle_report  # noqa: E402
import post_proc  # noqa: E402
import scenes  # noqa: E402
import settings  # noqa: E402

STRIDE = config.EVAL_OUTPUT_STRIDE
ALTERNATIVES = (  # config name -> the value tried instead of config.py's (None: the other boolean)
    ('SEED_SUPPORT_FILTER', None),
    ('LONG_RANGE_RESCUE', None),
    ('MERGE_FRAGMENTS', None),
    ('MERGE_MIN_SHARED', 2),
    ('RESOLVE_CONFLICTS', None),
    ('LANDING_MIN_VALID', 0.0),
)


def synthetic(count, noise=0.0, tolerance=1.0, options=None):
    """(share of labelled keypoints decoded within `tolerance` px and found, decoded people per true person)
    over `count` scenes of overlapping people, decoded with `options`; noise > 0: network-like maps
    (scenes.network_like)."""
    hits = labelled = decoded_people = true_people = 0
    for seed in range(count):
        people, _, maps = scenes.scene(seed, 6, (385, 385), STRIDE, unlabelled=0.15, height_range=(110, 170),
                                       noise=noise)
        decoded = post_proc.decode(maps, STRIDE, (385, 385), options=options)
        found = np.stack([p['keypoints'] for p in decoded]) if decoded else np.zeros((0, config.NUM_KEYPOINTS, 3))
        for person in people:
            mask = person[:, 2] > 0
            close = (np.linalg.norm(found[:, :, :2] - person[None, :, :2], axis=-1) <= tolerance) & (found[:, :, 2] > 0)
            hits += (close & mask).sum(axis=1).max(initial=0)  # the decoded person that has most of them
            labelled += mask.sum()
        decoded_people += len(decoded)
        true_people += len(people)
    return hits / float(labelled), decoded_people / float(true_people)


def speed(repeats, options=None):
    rng = np.random.RandomState(0)
    people = scenes.random_people(20, (401, 401), rng)
    maps = scenes.network_like(scenes.target_maps(people, scenes.body_masks(people, (401, 401), STRIDE),
                                                  (401, 401), STRIDE), STRIDE, rng)
    post_proc.decode(maps, STRIDE, (401, 401), options=options)
    times = []
    for _ in range(repeats):
        start = time.process_time()
        post_proc.decode(maps, STRIDE, (401, 401), options=options)
        times.append(time.process_time() - start)
    return 1000 * float(np.median(times))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--scenes', type=int, default=40, help='synthetic scenes per configuration')
    parser.add_argument('--repeats', type=int, default=10, help='timed decodes per configuration')
    args = parser.parse_args(argv)
    cv2.setNumThreads(1)
    sample = os.path.join(oracle_report.SAMPLE, '%s')
    splits = [(sample % 'annotations/person_keypoints_%s2017.json' % s, sample % '%s2017' % s)
              for s in ('train', 'val')]
    have_sample = all(os.path.exists(a) for a, _ in splits)
    print('%-28s %9s %7s %9s %7s   %s   %8s' % (
        'configuration', 'kp <=1px', 'people', 'noisy 3px', 'people', 'oracle train / val: keypoints AP, segm AP '
        '(kp persons)' if have_sample else 'oracle: no COCO_SAMPLE_DIR', 'ms 401/20'))
    defaults = settings.defaults()
    choices = [('default (config.py)', {})] + [
        ('%s = %s' % (name, value), {name: value}) for name, value in (
            (name, (not getattr(defaults, name)) if value is None else value) for name, value in ALTERNATIVES)]
    for label, values in choices:
        options = defaults.replace(**values)
        clean = synthetic(args.scenes, options=options)
        noisy = synthetic(args.scenes, noise=1.0, tolerance=3.0, options=options)
        aps = [oracle_report.oracle(a, i, STRIDE, options=options) for a, i in splits] if have_sample else []
        ms = speed(args.repeats, options)
        print('%-28s %8.1f%% %7.2f %8.1f%% %7.2f   %s   %8.2f' % (
            label, 100 * clean[0], clean[1], 100 * noisy[0], noisy[1],
            ' / '.join('%.3f %.3f' % (ap[0], ap[2]) for ap in aps), ms))
        sys.stdout.flush()


if __name__ == '__main__':
    main()
