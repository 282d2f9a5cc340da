"""heads.py: the one table of the five heads agrees with everything that reads it.

What these tests prove, on a real COCO sample:
  * every head's output (and logits) of model.build_model, its target and validity maps from data_generator,
    and what post_proc.check_outputs accepts have the head's channel counts, on one grid; compute_losses
    gives one finite loss per head under its name (heads.LOSS_KEYS);
  * the decoder names a head output whose channels differ from the table;
  * each head's loss weight and prior are the settings it names (changing the setting changes that head's
    weight or initial probability, nothing else);
  * heads.by_name finds each head and names the known ones for an unknown name.
"""
import numpy as np
import pytest
import tensorflow.compat.v1 as tf

import data_generator
import heads
import model
import post_proc
import settings

STRIDE = 16  # the training stride: the cheapest network on a full COCO image


@pytest.fixture(scope='module')
def example(coco_sample):
    """One real training example and its targets at STRIDE (no augmentation)."""
    dataset = data_generator.CocoPersons(coco_sample['train_annotations'], coco_sample['train_images'])
    example = dataset.load_example(dataset.image_ids[0])
    return example, data_generator.encode_example(example, STRIDE)


@pytest.fixture(scope='module')
def network(example):
    """Outputs (numpy, batch of 1) and losses of a random ResNet-v2-50 PersonLab network on the example."""
    _, targets = example
    options = settings.make(overrides={'BACKBONE_DEPTH': 50, 'INTERMEDIATE_SUPERVISION': True})
    with tf.Graph().as_default():
        outputs = model.build_model(targets['image'][None], is_training=False, output_stride=STRIDE,
                                    options=options)
        batch = {name: targets[name][None] for name in heads.TARGET_CHANNELS}
        losses = model.compute_losses(outputs, batch, options=options)
        static = {name: outputs[name].shape.as_list() for name in outputs if name != 'intermediate'}
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            values, loss_values = sess.run([{k: v for k, v in outputs.items() if k != 'intermediate'}, losses])
    return static, values, loss_values


def test_every_head_has_its_channels_in_the_network_the_targets_and_the_decoder(example, network):
    _, targets = example
    static, values, losses = network
    rows, cols = targets['heatmaps'].shape[:2]
    assert set(targets) == {'image'} | set(heads.TARGET_CHANNELS)
    for head in heads.HEADS:
        assert static[head.output][-1] == head.channels, head.name
        assert values[head.output].shape == (1, rows, cols, head.channels), head.name
        if head.logits is not None:
            assert values[head.logits].shape == values[head.output].shape, head.name
        assert targets[head.target].shape == (rows, cols, head.channels), head.name
        assert targets[head.validity].shape == (rows, cols, head.validity_channels), head.name
    # The decoder takes the network's maps and the target maps (with their validity maps) as they are.
    maps, _ = post_proc.check_outputs({name: value[0] for name, value in values.items()}, STRIDE,
                                      targets['image'].shape)
    assert set(heads.OUTPUTS) <= set(maps)
    maps, _ = post_proc.check_outputs(targets, STRIDE, targets['image'].shape)
    assert set(heads.OUTPUTS + tuple(head.validity for head in heads.OFFSET_HEADS)) <= set(maps)
    assert set(losses) == set(heads.LOSS_KEYS)
    for head in heads.HEADS:
        assert np.isfinite(losses[head.name]) and losses[head.name] > 0, head.name


@pytest.mark.parametrize('head', heads.HEADS, ids=heads.NAMES)
def test_the_decoder_names_a_head_output_with_other_channels(example, head):
    _, targets = example
    wrong = dict(targets)
    wrong[head.output] = np.concatenate([targets[head.output], targets[head.output][..., :1]], axis=-1)
    with pytest.raises(ValueError, match=r"outputs\['%s'\] has shape" % head.output):
        post_proc.check_outputs(wrong, STRIDE, targets['image'].shape)


@pytest.mark.parametrize('head', heads.HEADS, ids=heads.NAMES)
def test_each_heads_loss_weight_is_the_setting_it_names(head):
    options = settings.defaults()
    weights = model.loss_weights(options)
    assert weights[head.name] == getattr(options, head.loss_weight) > 0
    changed = model.loss_weights(options.replace(**{head.loss_weight: 7.0}))
    assert changed[head.name] == 7.0
    assert {n: w for n, w in changed.items() if n != head.name} == {n: w for n, w in weights.items()
                                                                    if n != head.name}


def test_logistic_heads_start_at_the_prior_they_name():
    options = settings.defaults().replace(HEATMAP_PRIOR=0.2, SEGMENTATION_PRIOR=0.7)
    with tf.Graph().as_default():
        features = tf.zeros([1, 3, 3, 8])  # zero features: each output is its bias
        outputs = model.build_heads(features, STRIDE, options=options)
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            values = sess.run(outputs)
    for head in heads.LOGISTIC_HEADS:
        np.testing.assert_allclose(values[head.output], getattr(options, head.prior), rtol=1e-5)
    for head in heads.OFFSET_HEADS:
        assert head.prior is None and not values[head.output].any()  # offsets start at 0


def test_by_name_finds_each_head_and_names_the_known_ones():
    assert [heads.by_name(name) for name in heads.NAMES] == list(heads.HEADS)
    assert heads.by_name('mid').output == 'mid_offsets' and heads.by_name('mid').fields == 32
    with pytest.raises(KeyError, match='heatmap, short, mid, long, segmentation'):
        heads.by_name('mids')
    with pytest.raises(ValueError, match='logistic'):
        heads.by_name('heatmap').fields
