"""Training-sample throughput of data_generator.SampleGenerator: augmented images and all PersonLab targets.

Reads a COCO person_keypoints file (default: the real sample in `config.COCO_SAMPLE_DIR`), runs SampleGenerator
with the given worker processes and measures, after the first batch (worker start-up left out), samples per
second of wall-clock time and samples per CPU second spent by this process and its workers together, the
figure "per core" (it charges the batching side too and does not depend on other load on the machine).
Also prints where one sample's time goes, measured in this process.

Usage: python bench/data_bench.py [--annotations FILE --images DIR --input-size 801 --workers 2
                                   --stride 16 --samples 200 --batch-size 8]
Last line: `data: <X> samples/s per core at <N>x<N>`
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import config  # noqa: E402
import data_generator  # noqa: E402
import grid  # noqa: E402
import heads  # noqa: E402
import transformer  # noqa: E402

COCO_SAMPLE = config.COCO_SAMPLE_DIR


def stage_times(dataset, input_size, stride, count=40):
    """Mean CPU seconds per sample of each stage, in this process: read, warp, targets.

    CPU time rather than wall-clock time, so other load on the machine does not inflate it.
    """
    totals = np.zeros(3)
    ids = dataset.image_ids
    for n in range(count):
        rng = np.random.default_rng(n)
        start = time.process_time()
        example = dataset.load_example(ids[n % len(ids)])
        read = time.process_time()
        shape = (input_size, input_size)
        matrix, flip = transformer.random_affine(rng, example['image'].shape, shape)
        warped = transformer.apply_affine(example, matrix, flip, shape, stride)
        warp = time.process_time()
        data_generator.make_targets(warped['keypoints'], warped['masks'], warped['crowd_mask'], shape, stride)
        totals += [read - start, warp - read, time.process_time() - warp]
    return totals / count


def cpu_seconds(pids):
    """User + system CPU seconds of this process (all threads) and of the given processes."""
    ticks = os.sysconf('SC_CLK_TCK')
    total = time.process_time()
    for pid in pids:
        try:
            with open('/proc/%d/stat' % pid) as f:
                fields = f.read().rsplit(')', 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / float(ticks)  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return total


def throughput(dataset, input_size, stride, workers, batch_size, samples, seed=0):
    """(samples/s of wall time, samples per CPU second of this process + workers, skipped) after batch 1."""
    generator = data_generator.SampleGenerator(dataset, batch_size, input_size, stride, num_workers=workers,
                                               seed=seed)
    batches = max(1, -(-samples // batch_size))
    with generator:
        iterator = iter(generator)
        next(iterator)
        pids = list(generator.worker_pids)
        start, cpu_start = time.perf_counter(), cpu_seconds(pids)
        for i in range(batches):
            next(iterator)
            if (i + 1) % max(1, batches // 4) == 0:
                print('  %d/%d batches' % (i + 1, batches), flush=True)
        elapsed, cpu = time.perf_counter() - start, cpu_seconds(pids) - cpu_start
    count = batches * batch_size
    return count / elapsed, count / cpu, generator.skipped


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--annotations', default=os.path.join(COCO_SAMPLE, 'annotations',
                                                              'person_keypoints_train2017.json'))
    parser.add_argument('--images', default=os.path.join(COCO_SAMPLE, 'train2017'))
    parser.add_argument('--input-size', type=int, default=801, help='square input side (801 in the paper)')
    parser.add_argument('--workers', type=int, default=config.NUM_WORKERS, help='worker processes (0: in-process)')
    parser.add_argument('--stride', type=int, default=config.TRAIN_OUTPUT_STRIDE, help='output stride')
    parser.add_argument('--samples', type=int, default=200, help='measured samples (after the first batch)')
    parser.add_argument('--batch-size', type=int, default=config.BATCH_SIZE)
    args = parser.parse_args(argv)

    grid.check_input_size(args.input_size, args.stride)  # before the stage timings, not after
    dataset = data_generator.CocoPersons(args.annotations, args.images)
    size = args.input_size
    cells = grid.grid_shape((size, size), args.stride)
    print('data bench: %d images from %s, input %dx%d, stride %d (grid %dx%d), %d worker(s), %d CPU(s)' % (
        len(dataset), args.annotations, size, size, args.stride, cells[0], cells[1], args.workers, os.cpu_count()))
    read, warp, targets = stage_times(dataset, size, args.stride)
    print('one sample in this process (CPU time): read+decode %.1f ms, warp (image, masks, keypoints) %.1f ms, '
          'targets %.1f ms, total %.1f ms' % (1e3 * read, 1e3 * warp, 1e3 * targets, 1e3 * (read + warp + targets)))
    sample = data_generator.augment_example(dataset.load_example(dataset.image_ids[0]), 0, size, args.stride)
    print('one sample holds %.2f MB of targets + %.2f MB of image' % (
        sum(sample[n].nbytes for n in heads.TARGET_CHANNELS) / 1e6, sample['image'].nbytes / 1e6))
    rate, per_cpu_second, skipped = throughput(dataset, size, args.stride, args.workers, args.batch_size,
                                               args.samples)
    cores = max(1, min(args.workers, os.cpu_count() or 1))
    print('SampleGenerator: %.1f samples/s (wall clock) with %d worker(s) on %d CPU(s), %.1f per worker%s' % (
        rate, args.workers, os.cpu_count(), rate / cores, ', %d unreadable images skipped' % skipped if skipped
        else ''))
    # Per core = samples per CPU second used by this process and its workers together: it does not depend
    # on what else runs on the machine, and charges the consumer side (unpickling, stacking) too.
    print('data: %.1f samples/s per core at %dx%d' % (per_cpu_second, size, size))

if __name__ == '__main__':
    main()
