"""The five PersonLab heads, each named once (no TensorFlow): what the network outputs, what the targets hold,
which loss weight applies, how decoding reads it.

One record per head, as openpifpaf's headmeta.py: model.py builds the heads and their losses from HEADS,
data_generator.py allocates the target maps from it, post_proc.py checks the maps it decodes against it, and
train.py / inference.py name losses and graph outputs after it.

    head = heads.by_name('mid')
    head.output, head.channels       # 'mid_offsets', 64: the network output (2 x 32 directed edges)
    head.target, head.validity       # 'mid_offsets', 'mid_valid': the target map and its per-field validity
    getattr(options, head.loss_weight)                       # 0.25, config.MID_OFFSET_LOSS_WEIGHT

Channel counts are facts of the keypoint skeleton (config.NUM_KEYPOINTS = K, config.NUM_EDGES = E), not
settings. Every map is on the output grid of a stride, channels last.
"""
import collections

import config

K, E = config.NUM_KEYPOINTS, config.NUM_EDGES


class Head(collections.namedtuple('Head', 'name kind channels output logits target validity validity_channels '
                                          'loss_weight prior')):
    """One head.

    Fields:
      name: the head's name: its variable scope in the network and its key in model.compute_losses' dict.
      kind: 'logistic' (a probability per channel, sigmoid of the logits) or 'offset' (2-vectors (dx, dy) in
        input px, interleaved: 2 channels per field).
      channels: int, channels of the network output and of its target map.
      output: key of the network output decode reads (probabilities, or the refined offsets).
      logits: key of a logistic head's logits output (what its loss reads); None for offset heads.
      target: key of the target map ('heatmaps', 'short_offsets', ...), same channels as the output.
      validity: key of the target map that weighs the loss per cell: a single-channel weight of a logistic
        head, one 0/1 channel per field of an offset head (offsets count only where they are defined).
      validity_channels: int, channels of that map.
      loss_weight: NAME of the config setting holding the weight of this head's loss in the total.
      prior: NAME of the config setting holding the initial probability of a logistic head (its bias starts
        at the logit of it); None for offset heads (bias 0).
    """
    __slots__ = ()

    @property
    def fields(self):
        """Number of 2-vector fields of an offset head (channels / 2); ValueError for a logistic head."""
        if self.kind != 'offset':
            raise ValueError('head %r is %s: it has no offset fields' % (self.name, self.kind))
        return self.channels // 2


HEADS = (  # in the order their channels are stacked in the network's one fused 1x1 convolution
    Head('heatmap', 'logistic', K, 'heatmaps', 'heatmap_logits', 'heatmaps', 'kp_weights', 1,
         'HEATMAP_LOSS_WEIGHT', 'HEATMAP_PRIOR'),
    Head('short', 'offset', 2 * K, 'short_offsets', None, 'short_offsets', 'short_valid', K,
         'SHORT_OFFSET_LOSS_WEIGHT', None),
    Head('mid', 'offset', 2 * E, 'mid_offsets', None, 'mid_offsets', 'mid_valid', E,
         'MID_OFFSET_LOSS_WEIGHT', None),
    Head('long', 'offset', 2 * K, 'long_offsets', None, 'long_offsets', 'long_valid', K,
         'LONG_OFFSET_LOSS_WEIGHT', None),
    Head('segmentation', 'logistic', 1, 'segmentation', 'segmentation_logits', 'segmentation', 'seg_weights', 1,
         'SEGMENTATION_LOSS_WEIGHT', 'SEGMENTATION_PRIOR'),
)
NAMES = tuple(head.name for head in HEADS)
OFFSET_HEADS = tuple(head for head in HEADS if head.kind == 'offset')
LOGISTIC_HEADS = tuple(head for head in HEADS if head.kind == 'logistic')
OUTPUTS = tuple(head.output for head in HEADS)  # the network outputs decoding needs
OFFSET_OUTPUTS = tuple(head.output for head in OFFSET_HEADS)
PROBABILITY_OUTPUTS = tuple(head.output for head in LOGISTIC_HEADS)  # values in [0, 1]
# Keys of model.compute_losses' dict, in the order logs list them: the total, each head's loss, the intermediate
# heads' weighted losses, the weight decay. Here, without TensorFlow, for what only logs them (train.py).
LOSS_KEYS = ('total',) + NAMES + ('intermediate', 'weight_decay')
# Every target map but the image: name -> channels, each head's target then its validity map.
TARGET_CHANNELS = collections.OrderedDict(
    (name, channels) for head in HEADS
    for name, channels in ((head.target, head.channels), (head.validity, head.validity_channels)))


def by_name(name):
    """The Head called `name` ('heatmap', 'short', 'mid', 'long' or 'segmentation'); KeyError naming the known
    ones otherwise."""
    for head in HEADS:
        if head.name == name:
            return head
    raise KeyError('no head %r (heads: %s)' % (name, ', '.join(NAMES)))
