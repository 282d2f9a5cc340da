"""Where the quickstart recipe converges: config.QUICKSTART trained --factor times longer (4 by default: NUM_STEPS
and the cosine schedule stretched, everything else the preset's), every checkpoint evaluated on the 100 synthetic
validation images at their 193 px, as quickstart.sh evaluates (bench/learning.py), and the curve drawn as a PNG
next to the oracle.

Needs the synthetic set (`python synthetic.py`, or quickstart.sh). Usage:
  python bench/quickstart_curve.py [--factor 4] [--every NUM_STEPS // 3] [--train-dir DIR] [--fresh] [--png PATH]
Last line: `quickstart curve: keypoints AP <a> segm AP <b> (oracle <a0> / <b0>) after <n> steps, <m> min`
Run again without --fresh, it resumes the training in its train dir.
"""
import argparse
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import learning  # noqa: E402  (puts the project on the path)
import config  # noqa: E402
import machine  # noqa: E402

VAL_ANNOTATIONS = os.path.join(config.SYNTHETIC_DIR, 'annotations', 'person_keypoints_val2017.json')
VAL_IMAGES = os.path.join(config.SYNTHETIC_DIR, 'val2017')
EVAL_SIDE = config.SYNTHETIC_IMAGE_SIZE  # quickstart.sh evaluates the synthetic images at their own size


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--factor', type=float, default=4.0, help='times the preset\'s NUM_STEPS')
    parser.add_argument('--every', type=int, default=config.QUICKSTART['NUM_STEPS'] // 3,
                        help='steps between evaluated checkpoints (default %(default)s: three per preset length)')
    parser.add_argument('--train-dir', default=os.path.join(config.MODEL_DIR, 'quickstart_curve'))
    parser.add_argument('--fresh', action='store_true', help='delete the train dir first (default: resume)')
    parser.add_argument('--png', help='picture of the curve (default: <train dir>/quickstart_curve.png)')
    args = parser.parse_args(argv)
    if args.factor <= 0 or args.every < 1:
        parser.error('--factor and --every must be positive')
    if not (os.path.isfile(VAL_ANNOTATIONS) and os.path.isdir(VAL_IMAGES)):
        print('quickstart curve: error: no synthetic set in %s: run python synthetic.py first' % config.SYNTHETIC_DIR,
              file=sys.stderr)
        return 2
    start = time.perf_counter()
    if args.fresh and os.path.isdir(args.train_dir):
        shutil.rmtree(args.train_dir)
    steps = int(round(args.factor * config.QUICKSTART['NUM_STEPS']))
    print('quickstart curve: %d steps (%.3g x the preset), matmul %.0f GFLOP/s'
          % (steps, args.factor, machine.matmul_gflops()), flush=True)
    oracle = learning.oracle_ap(VAL_ANNOTATIONS, VAL_IMAGES, EVAL_SIDE, config.QUICKSTART['RADIUS'])
    print('oracle at %d px: keypoints AP %.3f segm AP %.3f' % (EVAL_SIDE, oracle[0], oracle[1]), flush=True)
    train_args = ['--preset', 'quickstart', '--steps', str(steps), '--checkpoint-every', str(args.every),
                  '--set', 'CHECKPOINTS_TO_KEEP=%d' % (steps // args.every + 1)]
    png = args.png or os.path.join(args.train_dir, 'quickstart_curve.png')
    title = 'Quickstart recipe x%.3g: 100 synthetic val images at %d px' % (args.factor, EVAL_SIDE)
    status, rows = learning.train_and_measure(train_args, args.train_dir, VAL_ANNOTATIONS, VAL_IMAGES, EVAL_SIDE,
                                              oracle, png, title)
    if status != 0 or not rows:
        print('quickstart curve: error: train.py exited with status %d%s'
              % (status, '' if status else ', no checkpoint'), file=sys.stderr)
        return status or 1
    step, keypoints_ap, segm_ap = rows[-1]
    print('learning curve: %s' % png)
    print('quickstart curve: keypoints AP %.3f segm AP %.3f (oracle %.3f / %.3f) after %d steps, %.1f min'
          % (keypoints_ap, segm_ap, oracle[0], oracle[1], step, (time.perf_counter() - start) / 60.0))
    return 0


if __name__ == '__main__':
    sys.exit(main())
