"""export_model.py and serve_example.py: the SavedModel and the frozen graph compute what the checkpoint does.

One export per session of the shared test checkpoint (conftest.inference_checkpoint); the outputs of the
SavedModel, of the frozen graph and of networks.CheckpointNetwork are compared on a synthetic picture, and the
checkpoint network is checked against the Polyak averages read straight from the checkpoint file (also on the
synthetic picture: these run without the real data). serve_example's test needs a real photo (the COCO sample):
the test network, random weights, finds people there and not on synthetic pictures, and the comparison needs people.

What it proves: the SavedModel's outputs equal the checkpoint's exactly (same ops, same weights) and the frozen
graph's to 1e-4 of each map's range (constant folding reorders float operations); the checkpoint network runs the
averages (restoring them independently gives the same maps, the raw weights different ones); serve_example.py
finds what demo.py's path finds (this last check needs a real photo where the test network finds people,
`config.COCO_SAMPLE_DIR`; it skips without it).
"""
import json
import os

import cv2
import numpy as np
import pytest

import checkpoints
import config
import export_model
import images
import inference
import networks
import post_proc
import rescale

LONGER_SIDE = 129  # 16*8+1: small and on the stride-8 grid


@pytest.fixture(scope='module')
def exported(inference_checkpoint, tmp_path_factory):
    output = str(tmp_path_factory.mktemp('export'))
    paths = export_model.export(inference_checkpoint, output, log=lambda message: None)
    return output, paths


@pytest.fixture(scope='module')
def checkpoint_network(inference_checkpoint):
    network = networks.CheckpointNetwork(inference_checkpoint)
    yield network
    network.close()


@pytest.fixture(scope='module')
def synthetic_image():
    """A smooth random RGB picture (no real data needed), 200x140: resized to 129 it is off the stride grid."""
    noise = np.random.RandomState(0).uniform(0, 255, (30, 40, 3)).astype(np.float32)
    return np.clip(cv2.resize(noise, (200, 140), interpolation=cv2.INTER_CUBIC), 0, 255).astype(np.uint8)


def _assert_same_maps(actual, expected, relative=0.0):
    assert set(actual) == set(expected) == set(networks.OUTPUT_NAMES)
    for name in expected:
        assert actual[name].shape == expected[name].shape, name
        tolerance = relative * float(np.abs(expected[name]).max()) + (1e-6 if relative else 0.0)
        np.testing.assert_allclose(actual[name], expected[name], rtol=0, atol=tolerance, err_msg=name)


def test_export_writes_saved_model_frozen_graph_and_info(exported, inference_checkpoint):
    output, paths = exported
    assert os.path.isfile(os.path.join(paths['saved_model'], 'saved_model.pb'))
    assert os.path.isdir(os.path.join(paths['saved_model'], 'variables'))
    assert os.path.getsize(paths['frozen_graph']) > 1e6  # the weights are in it
    info = networks.read_info(output)
    assert info['stride'] == config.EVAL_OUTPUT_STRIDE and info['depth'] == 50 and info['step'] == 2
    assert info['checkpoint'] == checkpoints.find(inference_checkpoint)
    assert info['outputs'] == networks.output_tensor_names()
    assert info['training_input_size'] == 65


def test_saved_model_and_frozen_graph_equal_the_checkpoint(exported, checkpoint_network, synthetic_image):
    output, _ = exported
    padded, geometry = rescale.prepare(synthetic_image, LONGER_SIDE, checkpoint_network.stride)
    expected = checkpoint_network(padded)
    rows, cols = post_proc.grid_shape(geometry.padded_shape, checkpoint_network.stride)
    assert expected['heatmaps'].shape == (rows, cols, config.NUM_KEYPOINTS)

    saved = networks.SavedModelNetwork(output)
    _assert_same_maps(saved(padded), expected)  # same graph, same weights: identical
    # Batched input and an unpadded input of any size: the graph pads itself with config.PAD_VALUE.
    resized, _ = rescale.resize_longer_side(synthetic_image, LONGER_SIDE)
    assert resized.shape[:2] != padded.shape[:2]
    batched = saved.session.run(saved.outputs, {saved.image: resized[None]})
    _assert_same_maps(batched, expected)
    saved.close()

    frozen = networks.FrozenGraphNetwork(output)
    assert frozen.stride == checkpoint_network.stride
    # Constant folding reorders float operations: equal to float tolerance.
    _assert_same_maps(frozen(padded), expected, relative=1e-4)
    frozen.close()


def test_checkpoint_network_runs_the_polyak_averages(inference_checkpoint, checkpoint_network, synthetic_image):
    """Maps every variable to its average in the checkpoint file independently of inference.py and compares
    outputs; the raw weights give different ones."""
    import tensorflow.compat.v1 as tf
    import settings
    padded, _ = rescale.prepare(synthetic_image, 97, checkpoint_network.stride)
    expected = checkpoint_network(padded)
    prefix = checkpoints.find(inference_checkpoint)
    reader = tf.train.load_checkpoint(prefix)
    results = {}
    for source in ('average', 'raw'):
        run_options = settings.make(overrides=checkpoints.model_overrides(inference_checkpoint))
        with tf.Graph().as_default():
            image, outputs = networks.build_inference_graph(options=run_options)
            mapping = {}
            for variable in tf.global_variables():
                name = variable.op.name
                if source == 'average' and reader.has_tensor(name + checkpoints.EMA_SUFFIX):
                    name += checkpoints.EMA_SUFFIX
                mapping[name] = variable
            with tf.Session() as sess:
                tf.train.Saver(mapping).restore(sess, prefix)
                results[source] = {k: v[0] for k, v in sess.run(outputs, {image: padded}).items()}
    _assert_same_maps(results['average'], expected, relative=1e-5)
    assert not np.allclose(results['raw']['heatmaps'], expected['heatmaps'], atol=1e-3)


def test_serve_example_decodes_what_the_checkpoint_finds(exported, checkpoint_network, coco_sample, tmp_path,
                                                          capsys):
    import serve_example
    output, _ = exported
    path = os.path.join(coco_sample['val_images'], '000000000785.jpg')  # the test network finds people here
    real_image = images.read_image(path)
    result = str(tmp_path / 'people.json')
    assert serve_example.main([path, '--export', output, '--longer-side', str(LONGER_SIDE), '--json', result]) == 0
    printed = capsys.readouterr().out
    with open(result) as f:
        served = json.load(f)
    assert '%d people' % len(served) in printed
    expected = inference.Predictor(checkpoint_network, [LONGER_SIDE]).predict(real_image).people
    assert expected  # checkpoint_maker's network finds people here: the comparison below is not vacuous
    assert len(served) == len(expected)
    for person, reference in zip(served, expected):
        np.testing.assert_allclose(np.array(person['keypoints']), reference['keypoints'], atol=1e-3)
    # Without --longer-side: demo.py's default, the training input size export_info.json records.
    assert serve_example.main([path, '--export', output, '--frozen']) == 0
    assert 'longer side %d px' % networks.read_info(output)['training_input_size'] in capsys.readouterr().out


def test_export_without_checkpoint_says_how_to_train(tmp_path, capsys):
    empty = tmp_path / 'empty'
    empty.mkdir()
    assert export_model.main(['--checkpoint', str(empty), '--output', str(tmp_path / 'out')]) == 2
    message = capsys.readouterr().err
    assert 'no checkpoint in %s' % empty in message and 'python train.py' in message
    assert not os.path.exists(str(tmp_path / 'out'))


def test_exported_graph_rejects_a_non_rgb_input(exported):
    import tensorflow.compat.v1 as tf
    saved = networks.SavedModelNetwork(exported[0])
    for bad in (np.zeros((33, 33), np.uint8), np.zeros((33, 33, 4), np.uint8), np.zeros((2, 33, 33, 3), np.uint8)):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r'image must be uint8 \[H, W, 3\]'):
            saved(bad)
    saved.close()
