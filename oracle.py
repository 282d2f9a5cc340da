"""The ground truth as a network: what a perfect network would output (eval.py --oracle), or a real network
with some heads replaced by it (eval.py --oracle-heads), both run through inference.Predictor.
"""
import collections

import numpy as np

import data_generator
import heads
import inference
import networks
import rescale
import settings


class GroundTruthNetwork(object):
    """Stands in for the network with the ground truth of one COCO example, encoded as target maps
    (data_generator.make_targets) at the geometry of the input it is given: what a perfect network outputs.

    eval.py's oracle mode, the tests (resizing, multi-scale merging and mapping back checked against the
    annotations) and bench/infer_bench.py (decoding as much as on a real result) run it through Predictor.
    The geometry is recognised among `longer_sides` (None: the source size) by the padded shape it gives;
    keypoints move with cv2.resize's pixel-centre mapping, masks are sampled onto the grid through the same map.

    Args:
      example: dict of data_generator.CocoPersons.load_example (replace with set_example for the next image).
      longer_sides: the longer sides the Predictor uses.
      stride: output stride (default options.EVAL_OUTPUT_STRIDE).
      radius: disk radius R of the encoded maps (default options.RADIUS); settings['radius'] tells the Predictor.
      options: settings.Settings to encode the targets with (None: config.py's as they are at each call).
    """

    def __init__(self, example=None, longer_sides=(None,), stride=None, radius=None, options=None):
        self.example = example
        self.options = options
        self.stride = settings.resolve(options).EVAL_OUTPUT_STRIDE if stride is None else int(stride)
        self.settings = {'radius': radius}
        self.longer_sides = list(longer_sides)
        self.calls = []  # the Geometry of every call

    def set_example(self, example):
        self.example = example

    def _geometry(self, padded):
        for side in self.longer_sides:
            _, geometry = rescale.prepare(self.example['image'], side, self.stride)
            if geometry.padded_shape == padded.shape[:2]:
                return geometry
        raise ValueError('GroundTruthNetwork: no longer side of %s turns image %s into the padded shape %s'
                         % (self.longer_sides, self.example.get('image_id'), padded.shape[:2]))

    def __call__(self, padded):
        import transformer
        geometry = self._geometry(padded)
        self.calls.append(geometry)
        fx, fy = geometry.scale
        matrix = np.array([[fx, 0.0, 0.5 * fx - 0.5], [0.0, fy, 0.5 * fy - 0.5]])  # source px -> input px
        keypoints = np.array(self.example['keypoints'], np.float32, copy=True)
        keypoints[..., 0] = keypoints[..., 0] * fx + matrix[0, 2]
        keypoints[..., 1] = keypoints[..., 1] * fy + matrix[1, 2]
        masks = transformer.warp_masks_to_grid(self.example['masks'], matrix, geometry.padded_shape, self.stride)
        crowd = transformer.warp_masks_to_grid(self.example['crowd_mask'], matrix, geometry.padded_shape,
                                               self.stride)
        targets = data_generator.make_targets(keypoints, masks, crowd, geometry.padded_shape, self.stride,
                                              radius=self.settings['radius'], options=settings.resolve(self.options))
        # The validity maps tell the decoder where a target offset is undefined (a network has none).
        names = networks.OUTPUT_NAMES + tuple(head.validity for head in heads.OFFSET_HEADS)
        return {name: targets[name] for name in names}


# The network outputs a partial oracle can replace, by the short names eval.py --oracle-heads takes.
ORACLE_HEADS = collections.OrderedDict((('heatmaps', 'heatmaps'), ('short', 'short_offsets'),
                                        ('mid', 'mid_offsets'), ('long', 'long_offsets'),
                                        ('segmentation', 'segmentation')))


def parse_oracle_heads(text):
    """'short,mid' (any subset of ORACLE_HEADS' names, or 'all') -> tuple of output names in ORACLE_HEADS'
    order. Raises ValueError naming an unknown head."""
    names = [name.strip() for name in text.split(',') if name.strip()]
    if names == ['all']:
        names = list(ORACLE_HEADS)
    unknown = [name for name in names if name not in ORACLE_HEADS]
    if unknown or not names:
        raise ValueError('unknown head %s: --oracle-heads takes a comma-separated subset of %s, or all'
                         % (', '.join(repr(n) for n in unknown) or "''", ', '.join(ORACLE_HEADS)))
    return tuple(ORACLE_HEADS[name] for name in ORACLE_HEADS if name in names)


class PartialOracleNetwork(object):
    """A network with some of its outputs replaced by the ground truth (GroundTruthNetwork) encoded for the same
    input: the AP it reaches says what a perfect version of those heads would be worth (eval.py --oracle-heads).

    A replaced offset head comes with its validity map, as the oracle's does, so replacing all five outputs
    gives exactly the oracle's maps. The ground truth is encoded with the network's run's disk radius.

    Args:
      network: the real network (CheckpointNetwork, ...); its stride and settings are this one's.
      outputs: output names to replace (parse_oracle_heads).
      longer_sides: the longer sides the Predictor uses (the ground truth's geometry is found among them).
    """

    def __init__(self, network, outputs, longer_sides):
        self.network = network
        self.outputs = tuple(outputs)
        self.stride = network.stride
        self.settings = getattr(network, 'settings', {})
        self.truth = GroundTruthNetwork(longer_sides=longer_sides, stride=network.stride,
                                        radius=inference.decode_radius(network))
        validity = {head.output: head.validity for head in heads.OFFSET_HEADS}
        self.replaced = self.outputs + tuple(validity[name] for name in self.outputs if name in validity)

    def set_example(self, example):
        self.truth.set_example(example)

    def __call__(self, padded):
        maps = dict(self.network(padded))
        truth = self.truth(padded)
        maps.update((name, truth[name]) for name in self.replaced)
        return maps

    def close(self):
        self.network.close()
