"""End-to-end inference speed of demo.py's path on this machine, split into network, decoding and drawing.

    python bench/infer_bench.py [--sides 401 801 1401] [--depth 26|50|101|152] [--repeats 3] [--checkpoint CKPT]

For each input size (longer side) it runs what demo.py runs on one image: inference.Predictor (resize, pad,
the network at config.EVAL_OUTPUT_STRIDE, decoding, mapping back to source pixels), then the pose and mask
pictures and the JSON with RLE masks (demo.py's functions).

The network is ResNet-v2 of config.BACKBONE_DEPTH (101) with random weights (its time does not depend on the
weights). A random network's maps hold no people, so decoding would have nothing to do: the decoder is handed
instead the ground truth of the image encoded as maps at the same size (oracle.GroundTruthNetwork, what a
good network outputs), after the network has run. The image is a real COCO image of `config.COCO_SAMPLE_DIR` with
13 people (train2017/000000260906.jpg); without the sample, a synthetic scene. --checkpoint runs a trained
network and decodes its own maps. The first run of each size is a warm-up and is not counted.

Columns: ms per image for network (resize, pad, session run; with the ground truth, also its encoding, a few
ms), decoding (post_proc.decode, mapping back), drawing (pose and mask pictures, JSON with RLE masks), their
total, images/s, decoding and drawing as % of the total, people found.
The line before the last gives decoding and drawing at 801 separately and together (the issue's target:
together under 5%). Last line:  infer: <ms> ms per image at 801, decode <p>% of it
where <p> is decoding AND drawing together (the share the issue's target is about), not decoding alone.
"""
import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import config  # noqa: E402
import data_generator  # noqa: E402
import demo  # noqa: E402
import inference  # noqa: E402
import machine  # noqa: E402
import networks  # noqa: E402
import oracle  # noqa: E402
import resnet  # noqa: E402
from _shared import coco_sample_dir  # noqa: E402

SHARED_DIR = coco_sample_dir()
# The benchmark image: train2017/000000260906.jpg of config.COCO_SAMPLE_DIR, chosen for its 13 people (a crowded
# picture gives decoding and drawing their most work; the sample's README lists it).
SHARED_IMAGE_ID = 260906


def bench_example():
    """(example dict as CocoPersons.load_example gives it, description): the shared COCO image, else a
    synthetic scene with its ground truth."""
    annotations = os.path.join(SHARED_DIR, 'annotations', 'person_keypoints_train2017.json')
    if os.path.isfile(annotations):
        dataset = data_generator.CocoPersons(annotations, os.path.join(SHARED_DIR, 'train2017'))
        example = dataset.load_example(SHARED_IMAGE_ID)
        return example, example['file_name']
    import synthetic
    scene = synthetic.render_scene(np.random.default_rng(0), 640)
    persons = [p for p in scene['persons'] if p['kind'] == 'person']
    example = {'image_id': 0, 'image': scene['image'], 'crowd_mask': scene['crowd_mask'],
               'keypoints': np.stack([p['keypoints'] for p in persons]).astype(np.float32),
               'masks': np.stack([p['mask'] for p in persons])}
    return example, 'a synthetic 640x640 scene with %d people' % len(persons)


class NetworkThenGroundTruth(object):
    """Runs the network (timed as the network) and returns the ground truth's maps for the same input."""

    def __init__(self, network, ground_truth):
        self.network, self.ground_truth, self.stride = network, ground_truth, network.stride

    def __call__(self, padded):
        self.network(padded)
        return self.ground_truth(padded)


def run_once(predictor, image):
    """One image through demo.py's path: dict of seconds 'network', 'decode', 'drawing' and the people."""
    prediction = predictor.predict(image)
    t0 = time.perf_counter()
    demo.pose_picture(image, prediction.people)
    demo.masks_picture(image, prediction.people)
    demo.people_json(prediction.people)
    drawing = time.perf_counter() - t0
    return {'network': prediction.network_seconds, 'decode': prediction.decode_seconds,
            'drawing': drawing, 'people': len(prediction.people)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sides', type=int, nargs='+', default=list(config.INFER_BENCH_SIDES))
    parser.add_argument('--depth', type=int, default=config.BACKBONE_DEPTH, choices=sorted(resnet.BLOCKS),
                        help='ResNet-v2 depth of the random network (config.BACKBONE_DEPTH)')
    parser.add_argument('--repeats', type=int, default=3, help='timed runs per size (after one warm-up)')
    parser.add_argument('--checkpoint', help='a trained checkpoint instead of random weights')
    args = parser.parse_args(argv)
    machine.quiet_tensorflow()
    print('machine: %s' % machine.describe(), flush=True)  # the docs give times beside this figure
    example, source = bench_example()
    image = example['image']
    start = time.perf_counter()
    if args.checkpoint:
        network = networks.CheckpointNetwork(args.checkpoint)
        what = '%s (ResNet-v2-%d), its own maps decoded' % (network.checkpoint, network.depth)
    else:
        network = networks.CheckpointNetwork(random_weights=True, depth=args.depth)
        what = 'ResNet-v2-%d with random weights, the ground truth\'s maps decoded' % args.depth
    print('%s, output stride %d, image %s (%dx%d); model ready in %.0f s; %d timed runs per size'
          % (what, network.stride, source, image.shape[1], image.shape[0], time.perf_counter() - start,
             args.repeats))
    print('%6s %10s %10s %10s %10s %9s %8s %8s %7s' % ('side', 'network', 'decoding', 'drawing', 'total',
                                                    'images/s', 'decode%', 'draw%', 'people'))
    results = {}
    for side in args.sides:
        runner = network
        if not args.checkpoint:
            runner = NetworkThenGroundTruth(network, oracle.GroundTruthNetwork(example, [side], network.stride))
        predictor = inference.Predictor(runner, [side])
        run_once(predictor, image)  # warm-up: graph optimisation and allocation for this size
        runs = [run_once(predictor, image) for _ in range(args.repeats)]
        mean = {key: float(np.mean([r[key] for r in runs])) for key in ('network', 'decode', 'drawing')}
        total = sum(mean.values())
        results[side] = (total, mean)
        print('%6d %8.0f ms %7.1f ms %7.1f ms %7.0f ms %9.2f %7.2f%% %7.2f%% %7d'
              % (side, 1000 * mean['network'], 1000 * mean['decode'], 1000 * mean['drawing'], 1000 * total,
                 1.0 / total, 100 * mean['decode'] / total, 100 * mean['drawing'] / total, runs[-1]['people']))
        sys.stdout.flush()
    network.close()
    reference = 801 if 801 in results else args.sides[0]
    total, mean = results[reference]
    shares = {key: 100 * mean[key] / total for key in ('decode', 'drawing')}
    print('at %d: decoding %.2f%% + drawing %.2f%% = %.2f%% of the time (issue 6 target: under 5%%)'
          % (reference, shares['decode'], shares['drawing'], shares['decode'] + shares['drawing']))
    # <p> on the last line is decoding and drawing together, what the target is about.
    print('infer: %.0f ms per image at %d, decode %.2f%% of it' % (1000 * total, reference,
                                                                   shares['decode'] + shares['drawing']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
