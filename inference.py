"""PersonLab inference: one image in, people out. The project's single inference path.

demo.py, eval.py (both modes), export_model.py, serve_example.py and bench/infer_bench.py all run images
through `Predictor`, which does:

  source image, H x W RGB uint8, any size (images.py reads and checks it)
    -> resized so its longer side is L px, padded to n*s + 1 px (rescale.prepare)
    -> the network at output stride s (networks.py: a checkpoint's, with the Polyak-averaged weights, or an
       export's; oracle.py: the ground truth's)
    -> with several scales: the maps merged on the output grid of the largest one (rescale.merge_scales)
    -> post_proc.decode on that grid
    -> keypoints and masks mapped back to source-image pixels (rescale.to_source).

Finding checkpoints and the settings a run trained with belong to checkpoints.py; writing outputs safely to
files.py.
"""
import collections
import sys
import time

import numpy as np

import images
import post_proc
import rescale
import settings

# ----------------------------------------------------------------------------------------------------------
# The predictor
# ----------------------------------------------------------------------------------------------------------
Prediction = collections.namedtuple('Prediction', [
    'people',    # list of {'keypoints' float32 [K, 3] (x, y, score) source px, 'score', 'mask' bool [H, W],
                 # 'mask_score'}, best first
    'maps',      # decoded maps, dict name -> float32 [H', W', C] on the grid of `geometry` (debug pictures)
    'geometry',  # Geometry of the grid the maps and decoding used (the largest scale)
    'timings',   # seconds: 'prepare' (resize, pad), 'network', 'merge' (multi-scale), 'decode', 'to_source'
])


class Prediction(Prediction):
    """What Predictor.predict returns; network_seconds and decode_seconds are how every caller reports time."""
    __slots__ = ()

    @property
    def network_seconds(self):
        """Resizing, padding and the network at every scale."""
        return self.timings['prepare'] + self.timings['network']

    @property
    def decode_seconds(self):
        """Multi-scale merging, post_proc.decode and mapping back to source pixels."""
        return self.timings['merge'] + self.timings['decode'] + self.timings['to_source']


def mask_rle(mask):
    """COCO RLE of a bool [H, W] mask as JSON takes it: {'size': [H, W], 'counts': str}."""
    from pycocotools import mask as mask_utils
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {'size': [int(v) for v in rle['size']], 'counts': rle['counts'].decode('ascii')}


class Predictor(object):
    """Image -> people: resize, pad, network at every scale, merge, decode, map back.

    Args:
      network: a network (networks.CheckpointNetwork, SavedModelNetwork, FrozenGraphNetwork or any callable with a
        `stride` attribute returning the maps of a padded uint8 image).
      scales: longer sides in px, one per scale (several: multi-scale testing); None in the list (or
        scales=None) feeds the image at its own size.
      radius: disk radius R (px) to decode with; None: the network's run's (decode_radius).
      options: settings.Settings to decode with (its RADIUS gives way to `radius`); None: config.py's as they
        are at each prediction.
    """

    def __init__(self, network, scales=None, radius=None, options=None):
        self.network = network
        self.radius = decode_radius(network, radius, options)
        self.stride = int(network.stride)
        self.scales = rescale.check_scales(scales)
        self.options = options

    def decode_options(self):
        """The Settings decoding runs with: settings.Settings."""
        return settings.resolve(self.options).replace(RADIUS=self.radius)

    def network_outputs(self, image, timings=None):
        """Maps of an RGB uint8 image at every scale, merged: (maps dict, rescale.Geometry). Adds seconds to
        timings['prepare'], ['network'], ['merge'] if given."""
        timings = {} if timings is None else timings
        maps_per_scale, geometries = [], []
        for longer_side in self.scales:
            t0 = time.perf_counter()
            padded, geometry = rescale.prepare(image, longer_side, self.stride)
            t1 = time.perf_counter()
            maps = self.network(padded)
            t2 = time.perf_counter()
            timings['prepare'] = timings.get('prepare', 0.0) + t1 - t0
            timings['network'] = timings.get('network', 0.0) + t2 - t1
            maps_per_scale.append(maps)
            geometries.append(geometry)
        t0 = time.perf_counter()
        maps, geometry = rescale.merge_scales(maps_per_scale, geometries, self.stride)
        timings['merge'] = timings.get('merge', 0.0) + time.perf_counter() - t0
        return maps, geometry

    def predict(self, image, name='image', with_masks=True):
        """People in an image.

        Args:
          image: [H, W] / [H, W, 1|3|4] array, uint8 / uint16 / float (images.to_rgb_uint8), RGB order.
          name: how error messages call the image.
          with_masks: False skips instance masks ('mask' None).
        Returns a Prediction (people in source px).
        Raises images.UnusableImageError for an image that is too small or of an unsupported kind.
        """
        image = images.check_size(images.to_rgb_uint8(image, name), name)
        timings = {}
        maps, geometry = self.network_outputs(image, timings)
        t0 = time.perf_counter()
        people = post_proc.decode(maps, self.stride, geometry.padded_shape, with_masks=with_masks,
                                  radius=self.radius, options=self.decode_options())
        t1 = time.perf_counter()
        people = rescale.to_source(people, geometry)
        timings['decode'] = t1 - t0
        timings['to_source'] = time.perf_counter() - t1
        return Prediction(people, maps, geometry, timings)


def default_longer_side(network, longer_side=None, setting='DEMO_LONGER_SIDE', options=None):
    """The input size to use: `longer_side` if given, else options.<setting> (DEMO_LONGER_SIDE for demo.py,
    EVAL_LONGER_SIDE for eval.py; options None: config.py's), else the training INPUT_SIZE of the network's
    checkpoint (None if unknown: the source size)."""
    if longer_side is not None:
        return int(longer_side)
    configured = getattr(settings.resolve(options), setting)
    if configured is not None:
        return int(configured)
    return (getattr(network, 'settings', None) or {}).get('input_size')


def decode_radius(network, radius=None, options=None):
    """The disk radius R (px) to decode a network's maps with: `radius` if given (a flag), else the one its run
    trained with (settings['radius'], from config.json or export_info.json), else options.RADIUS (None:
    config.py's). The Hough vote weights and the Expected-OKS vote window depend on R, so a model must be
    decoded with its own."""
    if radius is None:
        radius = (getattr(network, 'settings', None) or {}).get('radius')
    return float(settings.resolve(options).RADIUS if radius is None else radius)


def log(message):
    """Progress and warnings go to stderr, results to stdout."""
    print(message, file=sys.stderr, flush=True)