"""Overfit real COCO: train PersonLab from random weights on the real images of the COCO sample and evaluate it on
those same images, the most direct proof that targets, losses, refinement, Polyak averaging and decoding fit
together on real data (a wrong sign, scale or offset convention plateaus far below the oracle).

The recipe is config.OVERFIT (`train.py --preset overfit`: ResNet-v2-26 from scratch, 193 px, convolutions in
bfloat16, no scale augmentation, shifts of +-40 px, Adam, 1600 steps) on the images of the real COCO sample (--sample) that hold a
person with labelled keypoints (17 images, 53 such persons; the subset's COCO file is written into the train
dir). Every checkpoint (one per CHECKPOINT_EVERY steps) is then evaluated through eval.py's path at the training
input size (bench/learning.py), next to the oracle (the ground truth encoded as maps and decoded) at the same size.

Usage: python bench/overfit.py [--steps N] [--train-dir DIR] [--fresh] [--png PATH]
Prints the training progress, one line per checkpoint, the machine's matmul GFLOP/s, and last
  overfit: keypoints AP <a> segm AP <b> (oracle <a0> / <b0>) after <n> steps, <m> min
Target (docs/benchmarks.md): <a> >= 0.9 <a0> and <b> >= 0.8 <b0> within 45 minutes on 2 cores.
Run again without --fresh, it resumes the training in its train dir and evaluates the new checkpoints.
"""
import argparse
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import learning  # noqa: E402  (puts the project on the path)
from _shared import coco_sample_dir  # noqa: E402
import config  # noqa: E402
import machine  # noqa: E402

SUBSET_FILE = 'overfit_subset.json'  # the evaluated (and trained) images' COCO file, in the train dir
MIN_IMAGES, MIN_PERSONS = 8, 20  # the least a memorisation test should cover


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--steps', type=int, help='training steps (default config.OVERFIT: %d)'
                                                   % config.OVERFIT['NUM_STEPS'])
    parser.add_argument('--train-dir', default=config.OVERFIT['TRAIN_DIR'], help='checkpoints (default %(default)s)')
    parser.add_argument('--fresh', action='store_true', help='delete the train dir first (default: resume)')
    parser.add_argument('--png', help='learning-curve picture (default: <train dir>/overfit_curve.png)')
    parser.add_argument('--sample', default=coco_sample_dir(), help='the COCO sample folder (default %(default)s)')
    args = parser.parse_args(argv)
    if args.steps is not None and args.steps < 1:
        parser.error('--steps must be positive, got %d' % args.steps)
    return args


def main(argv=None):
    args = parse_args(argv)
    start = time.perf_counter()
    annotations = os.path.join(args.sample, 'annotations', 'person_keypoints_train2017.json')
    images = os.path.join(args.sample, 'train2017')
    if not (os.path.isfile(annotations) and os.path.isdir(images)):
        print('overfit: error: the real COCO sample is missing (%s, %s)' % (annotations, images), file=sys.stderr)
        return 2
    if args.fresh and os.path.isdir(args.train_dir):
        shutil.rmtree(args.train_dir)
    subset, num_images, num_persons = learning.keypoint_subset(annotations,
                                                               os.path.join(args.train_dir, SUBSET_FILE))
    if num_images < MIN_IMAGES or num_persons < MIN_PERSONS:
        print('overfit: error: %s holds %d images with %d keypoint persons; at least %d and %d are needed'
              % (annotations, num_images, num_persons, MIN_IMAGES, MIN_PERSONS), file=sys.stderr)
        return 2
    size, radius = config.OVERFIT['INPUT_SIZE'], config.OVERFIT['RADIUS']
    print('overfit: %d real COCO images with %d keypoint persons, input %d px, matmul %.0f GFLOP/s'
          % (num_images, num_persons, size, machine.matmul_gflops()), flush=True)
    oracle = learning.oracle_ap(subset, images, size, radius)
    print('oracle at %d px: keypoints AP %.3f segm AP %.3f' % (size, oracle[0], oracle[1]), flush=True)

    train_args = ['--preset', 'overfit', '--annotations', subset, '--images', images]
    if args.steps:
        train_args += ['--steps', str(args.steps)]
    png = args.png or os.path.join(args.train_dir, 'overfit_curve.png')
    title = ('Overfit: %d real COCO images at %d px, ResNet-v2-%d from scratch'
             % (num_images, size, config.OVERFIT['BACKBONE_DEPTH']))
    status, rows = learning.train_and_measure(train_args, args.train_dir, subset, images, size, oracle, png, title)
    if status != 0 or not rows:
        print('overfit: error: train.py exited with status %d%s' % (status, '' if status else ', no checkpoint'),
              file=sys.stderr)
        return status or 1
    step, keypoints_ap, segm_ap = rows[-1]
    print('overfit: keypoints AP %.3f segm AP %.3f (oracle %.3f / %.3f) after %d steps, %.1f min'
          % (keypoints_ap, segm_ap, oracle[0], oracle[1], step, (time.perf_counter() - start) / 60.0))
    return 0


if __name__ == '__main__':
    sys.exit(main())
