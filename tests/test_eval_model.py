"""eval.py --checkpoint: COCO evaluation of a network through the same path as the oracle mode.

The network is the shared small test checkpoint (conftest.inference_checkpoint, random weights: its AP means
nothing, the run, the summaries and the files do). That results come back in original-image pixels is checked
with the ground truth standing in for the network at a resized scale, where AP must stay that of the oracle.
"""
import json
import os
import re
import subprocess
import sys

import pytest
from pycocotools.coco import COCO

import config
import eval as evaluation
import images
import inference
import networks
import oracle
import rescale

KEYPOINTS_SUMMARY = 'Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets= 20 ]'
SEGM_SUMMARY = 'Average Precision  (AP) @[ IoU=0.50:0.95 | area=   all | maxDets=100 ]'


def _args(coco_sample, *extra):
    return ['--annotations', coco_sample['val_annotations'], '--images', coco_sample['val_images']] + list(extra)


def test_eval_with_a_checkpoint_on_the_val_sample(coco_sample, inference_checkpoint, tmp_path, capsys):
    output = str(tmp_path / 'results.json')
    code = evaluation.main(_args(coco_sample, '--checkpoint', inference_checkpoint, '--scales', '161',
                                 '--output', output))
    out, err = capsys.readouterr()
    assert code == 0, err
    assert out.count(KEYPOINTS_SUMMARY) == 1 and out.count(SEGM_SUMMARY) == 2  # keypoints, segm (both ways)
    assert out.strip().splitlines()[-1].startswith('checkpoint: keypoints AP ')
    assert '[4/4]' in err and 'network' in err and 'decoding' in err  # the progress bar
    # Results in the COCO format the test-dev server accepts, one file per task, loadable by pycocotools.
    with open(output) as f:
        keypoints = json.load(f)
    segm_path = evaluation.segm_output_path(output)
    with open(segm_path) as f:
        segm = json.load(f)
    assert keypoints and len(segm) == len(keypoints)
    with open(coco_sample['val_annotations']) as f:
        image_ids = {image['id'] for image in json.load(f)['images']}
    for result in keypoints:
        assert set(result) == {'image_id', 'category_id', 'keypoints', 'score'}
        assert result['category_id'] == 1 and result['image_id'] in image_ids
        assert len(result['keypoints']) == 3 * config.NUM_KEYPOINTS
    for result in segm:
        assert set(result) == {'image_id', 'category_id', 'segmentation', 'score'}
        assert isinstance(result['segmentation']['counts'], str)
    ground_truth = COCO(coco_sample['val_annotations'])
    ground_truth.loadRes(output)
    loaded = ground_truth.loadRes(segm_path)
    for annotation in loaded.anns.values():  # masks at the original image size
        image = ground_truth.imgs[annotation['image_id']]
        assert annotation['segmentation']['size'] == [image['height'], image['width']]


def test_eval_quiet_prints_the_summary_line_and_nothing_else(coco_sample, inference_checkpoint, tmp_path):
    """As a user runs it (quickstart.sh does): --quiet gives the AP line alone, no COCOeval tables, and
    TensorFlow's C++ start-up lines (absl::InitializeLog, cpu_feature_guard, MLIR) are hidden."""
    env = dict(os.environ)
    env.pop('TF_CPP_MIN_LOG_LEVEL', None)  # the user's own level would win (machine.quiet_tensorflow)
    result = subprocess.run(
        [sys.executable, 'eval.py', '--quiet', '--max-images', '1', '--scales', '97', '--output',
         str(tmp_path / 'results.json')] + _args(coco_sample, '--checkpoint', inference_checkpoint),
        cwd=config.ROOT_DIR, env=env, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r'checkpoint: keypoints AP \S+ segm AP \S+ segm AP \(keypoint persons\) \S+\n',
                        result.stdout), result.stdout
    assert 'absl::InitializeLog' not in result.stderr
    assert not re.search(r'^[IWEF]\d{4} ', result.stderr, re.M), result.stderr  # absl's C++ log line format
    assert os.path.isfile(str(tmp_path / 'results.json'))


def test_eval_maps_results_back_to_the_original_pixels(coco_sample):
    """The same path with the ground truth in place of the network, at a resized scale (the val images are
    about 640 px wide): keypoint AP stays the oracle's; only the masks lose resolution."""
    for scales in ([401], [257, 401]):
        predictor = inference.Predictor(oracle.GroundTruthNetwork(longer_sides=scales), scales)
        summary = evaluation.run(predictor, coco_sample['val_annotations'], coco_sample['val_images'],
                                 progress=False, verbose=False)
        assert summary['keypoints_ap'] >= 0.95, (scales, summary['keypoints_ap'])
        assert summary['segm_ap_keypoint_persons'] >= 0.5, (scales, summary['segm_ap_keypoint_persons'])


def test_eval_on_an_annotation_file_without_annotations_writes_results_only(coco_sample, inference_checkpoint,
                                                                             tmp_path, capsys):
    """COCO test-dev's image_info file has images but no annotations: results for the server, no AP."""
    with open(coco_sample['val_annotations']) as f:
        info = json.load(f)
    del info['annotations']
    image_info = str(tmp_path / 'image_info_test-dev2017.json')
    with open(image_info, 'w') as f:
        json.dump(info, f)
    output = str(tmp_path / 'person_keypoints_test-dev2017_personlab_results.json')
    code = evaluation.main(['--checkpoint', inference_checkpoint, '--annotations', image_info, '--images',
                            coco_sample['val_images'], '--scales', '97', '--max-images', '2', '--output', output])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert 'no ground-truth annotations' in out and KEYPOINTS_SUMMARY not in out
    with open(output) as f:
        results = json.load(f)
    assert results  # checkpoint_maker's network finds people: the subset check below is not vacuous
    assert {r['image_id'] for r in results} <= {image['id'] for image in info['images'][:2]}
    assert os.path.isfile(evaluation.segm_output_path(output))


def test_eval_multi_scale_runs_config_eval_scales(coco_sample, inference_checkpoint, tmp_path, monkeypatch,
                                                  capsys):
    monkeypatch.setattr(config, 'EVAL_SCALES', (65, 97))  # small: the paper's sizes take minutes on a CPU
    output = str(tmp_path / 'results.json')
    code = evaluation.main(_args(coco_sample, '--checkpoint', inference_checkpoint, '--multi-scale',
                                 '--max-images', '1', '--output', output))  # not --quiet: the model line is checked
    out, err = capsys.readouterr()
    assert code == 0, err
    assert 'longer side 65/97 px' in out and out.strip().splitlines()[-1].startswith('checkpoint: keypoints AP ')
    assert os.path.isfile(output) and os.path.isfile(evaluation.segm_output_path(output))


def test_eval_without_a_checkpoint_says_how_to_train(coco_sample, tmp_path, capsys):
    empty = tmp_path / 'empty'
    empty.mkdir()
    assert evaluation.main(_args(coco_sample, '--checkpoint', str(empty))) == 2
    err = capsys.readouterr().err
    assert 'no checkpoint in %s' % empty in err and 'python train.py' in err


def test_eval_names_missing_data_before_building_the_network(inference_checkpoint, tmp_path, capsys):
    missing = str(tmp_path / 'missing.json')
    assert evaluation.main(['--checkpoint', inference_checkpoint, '--annotations', missing,
                            '--images', str(tmp_path)]) == 2
    assert missing in capsys.readouterr().err


@pytest.mark.parametrize('argv, message', [
    (['--oracle', '--checkpoint', 'x'], 'argument --checkpoint: not allowed with argument --oracle'),
    (['--checkpoint', 'x', '--scales', '0'], '--scales must be longer sides in px'),
    (['--oracle', '--scales', '401'], '--scales and --multi-scale apply to --checkpoint'),
    (['--checkpoint', 'x', '--max-images', '0'], '--max-images must be at least 1'),
])
def test_eval_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as raised:
        evaluation.main(argv)
    assert raised.value.code == 2
    assert message in capsys.readouterr().err


# ----------------------------------------------------------------------------------------------------------
# Decoding with the run's own settings; partial oracles (--oracle-heads)
# ----------------------------------------------------------------------------------------------------------
def test_a_checkpoint_decodes_with_the_radius_it_was_trained_with(coco_sample, tmp_path, capsys):
    """A run trained with R = 16 (config.json) is decoded with 16 by eval.py and inference.Predictor unless a flag
    says otherwise; decoding with config.RADIUS instead would give other scores."""
    import checkpoint_maker
    import post_proc
    radius = config.RADIUS / 2
    train_dir = str(tmp_path / 'run')
    checkpoint_maker.write_checkpoint(train_dir, radius=radius)
    network = networks.CheckpointNetwork(train_dir)
    try:
        assert network.settings['radius'] == radius
        predictor = inference.Predictor(network, [161])
        assert predictor.radius == radius and inference.Predictor(network, [161], radius=24.0).radius == 24.0
        image = images.read_image(os.path.join(coco_sample['val_images'], os.listdir(coco_sample['val_images'])[0]))
        prediction = predictor.predict(image, with_masks=False)
        assert prediction.people  # scores to compare: the comparisons below are not vacuous
        shape = prediction.geometry.padded_shape
        own = post_proc.decode(prediction.maps, predictor.stride, shape, with_masks=False, radius=radius)
        other = post_proc.decode(prediction.maps, predictor.stride, shape, with_masks=False, radius=config.RADIUS)
        scores = [p['score'] for p in prediction.people]
        assert scores == [p['score'] for p in own]
        assert scores != [p['score'] for p in other]
    finally:
        network.close()
    code = evaluation.main(_args(coco_sample, '--checkpoint', train_dir, '--scales', '97', '--max-images', '1',
                                 '--output', str(tmp_path / 'a.json')))
    out = capsys.readouterr().out
    assert code == 0 and 'decoding radius %g px' % radius in out
    code = evaluation.main(_args(coco_sample, '--checkpoint', train_dir, '--scales', '97', '--max-images', '1',
                                 '--radius', '24', '--output', str(tmp_path / 'b.json')))
    assert code == 0 and 'decoding radius 24 px' in capsys.readouterr().out


def test_partial_oracle_replaces_only_the_named_outputs(coco_sample, inference_checkpoint):
    network = networks.CheckpointNetwork(inference_checkpoint)
    try:
        dataset = evaluation.data_generator.CocoPersons(coco_sample['val_annotations'], coco_sample['val_images'])
        example = dataset.load_example(dataset.image_ids[0])
        partial = oracle.PartialOracleNetwork(network, oracle.parse_oracle_heads('short,segmentation'), [97])
        partial.set_example(example)
        padded, _ = rescale.prepare(example['image'], 97, network.stride)
        maps, own, truth = partial(padded), network(padded), partial.truth(padded)
        for name in ('short_offsets', 'segmentation', 'short_valid'):
            assert (maps[name] == truth[name]).all(), name
        for name in ('heatmaps', 'mid_offsets', 'long_offsets'):
            assert (maps[name] == own[name]).all() and not (maps[name] == truth[name]).all(), name
        assert 'mid_valid' not in maps and 'long_valid' not in maps
    finally:
        network.close()


def test_all_five_oracle_heads_equal_the_oracle(coco_sample, inference_checkpoint, tmp_path, capsys):
    """eval.py --checkpoint C --oracle-heads all decodes exactly the oracle's maps: same results, same AP."""
    output = str(tmp_path / 'partial.json')
    code = evaluation.main(_args(coco_sample, '--checkpoint', inference_checkpoint, '--oracle-heads', 'all',
                                 '--scales', '161', '--output', output, '--quiet'))
    out, err = capsys.readouterr()
    assert code == 0, err
    last = out.strip().splitlines()[-1]
    assert last.startswith('checkpoint with oracle heatmaps+short_offsets+mid_offsets+long_offsets+segmentation: ')
    oracle_predictor = inference.Predictor(oracle.GroundTruthNetwork(longer_sides=[161]), [161])
    summary = evaluation.run(oracle_predictor, coco_sample['val_annotations'], coco_sample['val_images'],
                             output=str(tmp_path / 'oracle.json'), progress=False, verbose=False)
    assert last.endswith('keypoints AP %.3f segm AP %.3f segm AP (keypoint persons) %.3f' % (
        summary['keypoints_ap'], summary['segm_ap'], summary['segm_ap_keypoint_persons']))
    results = []
    for name in ('partial.json', 'oracle.json'):
        with open(str(tmp_path / name)) as f:
            results.append(json.load(f))
    assert results[0] == results[1] and results[1]


@pytest.mark.parametrize('argv, message', [
    (['--checkpoint', 'x', '--oracle-heads', 'short,elbows'], "unknown head 'elbows'"),
    (['--oracle', '--oracle-heads', 'short'], '--oracle-heads replaces some outputs of a --checkpoint'),
    (['--checkpoint', 'x', '--radius', '0'], '--radius must be a positive number of px')])
def test_eval_oracle_heads_and_radius_errors_name_the_bad_value(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        evaluation.main(argv)
    assert stop.value.code == 2 and message in capsys.readouterr().err
