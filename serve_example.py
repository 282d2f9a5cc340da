"""Serving example: load export_model.py's SavedModel (or frozen graph), run it, decode with post_proc.py.

    python export_model.py --output model/export               # once
    python serve_example.py photo.jpg [--export model/export] [--longer-side 401] [--frozen] [--json out.json]
                            [--radius R]

Prints one line per person found (score, box of its keypoints in source-image pixels) and optionally writes
them as JSON. The steps, each one call:

    network = networks.SavedModelNetwork(export_dir)            # tf.compat.v1 loader, 'serving_default'
    padded, geometry = rescale.prepare(image, longer_side, network.stride)     # resize, pad to n*s+1
    maps = network(padded)                                      # heads on the output grid, no batch axis
    people = post_proc.decode(maps, network.stride, geometry.padded_shape,     # input pixels,
                              radius=inference.decode_radius(network))         # with the run's disk radius
    people = rescale.to_source(people, geometry)                # source-image pixels

The graph also takes an unresized image of any size ([H, W, 3] or [1, H, W, 3] uint8): it pads inside, and
the output grid is then that of the padded size (export_model.py). Without TensorFlow Serving at hand, this
is how a Python service runs the export.
"""
import argparse
import json
import sys

import config
import images
import inference
import machine
import networks
import post_proc
import rescale
import settings


def load(export_dir, frozen=False):
    """The exported network: SavedModelNetwork, or FrozenGraphNetwork with frozen=True."""
    return networks.FrozenGraphNetwork(export_dir) if frozen else networks.SavedModelNetwork(export_dir)


def detect(network, image, longer_side=None, radius=None, options=None):
    """People in an RGB uint8 image: list of post_proc's person dicts in source-image pixels. radius: the disk
    radius to decode with (None: the exported run's, export_info.json); options: settings.Settings to decode
    with (None: config.py's)."""
    padded, geometry = rescale.prepare(image, longer_side, network.stride)
    maps = network(padded)
    radius = inference.decode_radius(network, radius, options)
    people = post_proc.decode(maps, network.stride, geometry.padded_shape, radius=radius,
                              options=settings.resolve(options).replace(RADIUS=radius))
    return rescale.to_source(people, geometry)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('image', help='an image file')
    parser.add_argument('--export', default=config.EXPORT_DIR, help='export_model.py output folder')
    parser.add_argument('--frozen', action='store_true', help='run frozen_graph.pb instead of the SavedModel')
    parser.add_argument('--longer-side', type=int, help='input size, longer side px (default: the training '
                                                       'input size in export_info.json)')
    parser.add_argument('--radius', type=float, help='disk radius R in px to decode with (default: the one the '
                                                   'model was trained with, export_info.json)')
    parser.add_argument('--json', help='write the people (keypoints [x, y, score] in source px) here')
    args = parser.parse_args(argv)
    if args.radius is not None and not args.radius > 0:
        parser.error('--radius must be a positive number of px, got %s' % args.radius)
    try:
        networks.read_info(args.export)  # a missing export fails here, before TensorFlow starts
        image = images.read_image(args.image)
    except (FileNotFoundError, IOError) as error:
        print('serve_example.py: error: %s' % error, file=sys.stderr)
        return 2
    options = settings.defaults()
    network = load(args.export, args.frozen)
    # The same choice as demo.py; the exported network knows its training size from export_info.json.
    longer_side = inference.default_longer_side(network, args.longer_side, options=options)
    try:
        people = detect(network, image, longer_side, args.radius, options)
    finally:
        network.close()
    print('%s: %d people (longer side %s px, stride %d)' % (args.image, len(people), longer_side, network.stride))
    for n, person in enumerate(people):
        x, y = person['keypoints'][:, 0], person['keypoints'][:, 1]
        print('  person %d: score %.3f, keypoints within x %.0f..%.0f, y %.0f..%.0f'
              % (n, person['score'], x.min(), x.max(), y.min(), y.max()))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump([{'score': p['score'], 'keypoints': p['keypoints'].tolist()} for p in people], f)
    return 0


if __name__ == '__main__':
    machine.quiet_tensorflow()  # before main() imports TensorFlow
    sys.exit(main())
