"""A stand-in for the network that outputs the ground truth of one COCO example as target maps, encoded at
the geometry of whatever resized input it is given: inference.Predictor's resizing, multi-scale merging and
mapping back to source pixels can then be checked against the annotations, without a trained model."""
import numpy as np

import config
import data_generator
import inference
import post_proc
import transformer


class OracleNetwork(object):
    """Callable like inference's networks: padded uint8 image -> target maps of `example` at its geometry.

    The geometry is found among the longer sides the test will use (`longer_sides`, None = source size) by the
    padded shape it produces; the keypoints are moved with cv2.resize's pixel-centre mapping, the masks
    sampled onto the grid through the same affine map.
    """

    def __init__(self, example, longer_sides, stride=None):
        self.example = example
        self.stride = config.EVAL_OUTPUT_STRIDE if stride is None else stride
        self.longer_sides = list(longer_sides)
        self.calls = []

    def _geometry(self, padded):
        for side in self.longer_sides:
            _, geometry = inference.prepare(self.example['image'], side, self.stride)
            if geometry.padded_shape == padded.shape[:2]:
                return geometry
        raise AssertionError('no longer side of %s gives the padded shape %s' % (self.longer_sides, padded.shape))

    def __call__(self, padded):
        geometry = self._geometry(padded)
        self.calls.append(geometry)
        fx, fy = geometry.scale
        matrix = np.array([[fx, 0.0, 0.5 * fx - 0.5], [0.0, fy, 0.5 * fy - 0.5]])
        keypoints = self.example['keypoints'].copy()
        keypoints[..., 0] = keypoints[..., 0] * fx + matrix[0, 2]
        keypoints[..., 1] = keypoints[..., 1] * fy + matrix[1, 2]
        masks = transformer.warp_masks_to_grid(self.example['masks'], matrix, geometry.padded_shape, self.stride)
        crowd = transformer.warp_masks_to_grid(self.example['crowd_mask'], matrix, geometry.padded_shape,
                                               self.stride)
        targets = data_generator.make_targets(keypoints, masks, crowd, geometry.padded_shape, self.stride)
        return {name: targets[name] for name, _ in post_proc.OUTPUT_CHANNELS}
