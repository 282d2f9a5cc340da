"""Training speed of train.py's full pipeline at 401x401: steps/s, samples/s and the time spent waiting for input.

Runs train.train() itself (SampleGenerator workers -> prefetch thread -> feed -> towers -> SGD + moving
averages) on the real COCO sample (`config.COCO_SAMPLE_DIR`, 640x480-ish JPEGs; a synthetic set if it is missing)
in a temporary train dir, from random weights (the speed is the same as from ImageNet weights; batch norm
trains so that random weights stay finite). The first --warmup steps (graph optimisation, worker start) are
left out. Also measures the input pipeline alone (SampleGenerator with the same workers, no training), the
rate the workers can sustain: a GPU faster than that would wait on input.

Usage: python bench/train_bench.py [--steps 6] [--warmup 2] [--batch-size 8] [--depth 101] [--workers 2]
Last line: `train: <s> s per step at 401x401 batch <b>, input wait <p>%`
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import config  # noqa: E402
import machine  # noqa: E402
import settings  # noqa: E402
import train  # noqa: E402
from _shared import coco_sample_dir  # noqa: E402

# The benchmark size is config.INPUT_SIZE's default (401); the benchmark follows config.py.
INPUT_SIZE = config.INPUT_SIZE
COCO_SAMPLE = coco_sample_dir()


def training_data(work_dir):
    """(annotations, images, description): the real COCO sample if present, else a synthetic set."""
    annotations = os.path.join(COCO_SAMPLE, 'annotations', 'person_keypoints_train2017.json')
    images = os.path.join(COCO_SAMPLE, 'train2017')
    if os.path.isfile(annotations) and os.path.isdir(images):
        return annotations, images, 'real COCO sample (%s)' % COCO_SAMPLE
    import synthetic
    paths = synthetic.make_dataset(os.path.join(work_dir, 'synthetic'), num_train=64, num_val=0,
                                   image_size=401, seed=0, log=None)
    return paths['train_annotations'], paths['train_images'], 'synthetic set (no COCO_SAMPLE_DIR)'


def input_only_rate(annotations, images, batch_size, workers, batches):
    """Samples per second of SampleGenerator alone (after its first batch)."""
    import data_generator
    dataset = data_generator.CocoPersons(annotations, images)
    generator = data_generator.SampleGenerator(dataset, batch_size, INPUT_SIZE, config.LOSS_STRIDE,
                                               num_workers=workers, seed=1)
    with generator:
        iterator = iter(generator)
        next(iterator)
        start = time.perf_counter()
        for _ in range(batches):
            next(iterator)
        elapsed = time.perf_counter() - start
    return batches * batch_size / elapsed


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--steps', type=int, default=6, help='measured steps')
    parser.add_argument('--warmup', type=int, default=2, help='first steps left out')
    parser.add_argument('--batch-size', type=int, default=config.BATCH_SIZE)
    parser.add_argument('--depth', type=int, default=config.BACKBONE_DEPTH)
    parser.add_argument('--workers', type=int, default=config.NUM_WORKERS)
    args = parser.parse_args(argv)
    machine.quiet_tensorflow()
    print('machine: %s' % machine.describe(), flush=True)  # the docs give times beside this figure

    work_dir = tempfile.mkdtemp(prefix='train_bench_')
    try:
        annotations, images, description = training_data(work_dir)
        overrides = {
            'TRAIN_ANNOTATIONS': annotations, 'TRAIN_IMAGES': images, 'INPUT_SIZE': INPUT_SIZE,
            'BATCH_SIZE': args.batch_size, 'BACKBONE_DEPTH': args.depth, 'NUM_WORKERS': args.workers,
            'NUM_STEPS': args.warmup + args.steps, 'TRAIN_FROM_SCRATCH': True, 'FREEZE_BATCH_NORM': False,
            'CHECKPOINT_EVERY': 10 ** 9, 'LOG_EVERY': 1, 'SUMMARY_EVERY': 10 ** 9,
        }
        print('data: %s; ResNet-v2-%d, input %dx%d, batch %d, %d input workers, %d CPU cores'
              % (description, args.depth, INPUT_SIZE, INPUT_SIZE, args.batch_size, args.workers,
                 os.cpu_count()))
        steps = []
        train.train(os.path.join(work_dir, 'run'), on_step=steps.append, options=settings.make(overrides=overrides))
        input_rate = input_only_rate(annotations, images, args.batch_size, args.workers, batches=12)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)

    measured = steps[args.warmup:]
    step_seconds = np.array([s['step_seconds'] for s in measured])
    wait_seconds = np.array([s['wait_seconds'] for s in measured])
    seconds = step_seconds.mean()
    wait = 100.0 * wait_seconds.sum() / step_seconds.sum()
    print('steps %d-%d: %.3f s per step (min %.3f, max %.3f), %.3f steps/s, %.2f samples/s'
          % (measured[0]['step'], measured[-1]['step'], seconds, step_seconds.min(), step_seconds.max(),
             1.0 / seconds, args.batch_size / seconds))
    print('input pipeline alone: %.1f samples/s with %d workers (training consumes %.2f samples/s)'
          % (input_rate, args.workers, args.batch_size / seconds))
    print('train: %.2f s per step at %dx%d batch %d, input wait %.1f%%'
          % (seconds, INPUT_SIZE, INPUT_SIZE, args.batch_size, wait))
    return 0


if __name__ == '__main__':
    sys.exit(main())
