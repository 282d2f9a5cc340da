"""eval.py --oracle on the real COCO sample: ground truth -> target maps -> decoder -> COCOeval."""
import json
import re

import numpy as np
import pytest

import config
import data_generator
import eval as evaluation
import heads
import post_proc


@pytest.fixture(scope='module', params=['train', 'val'])
def oracle(request, coco_sample):
    split = request.param
    summary = evaluation.run(evaluation.OraclePredictor(), coco_sample['%s_annotations' % split],
                             coco_sample['%s_images' % split], progress=False, verbose=False)
    with open(coco_sample['%s_annotations' % split]) as f:
        summary['ground_truth'] = json.load(f)
    return summary


def test_oracle_reaches_the_target_aps(oracle):
    assert oracle['keypoints_ap'] >= 0.95
    assert oracle['segm_ap_keypoint_persons'] >= 0.75
    # Persons without labelled keypoints cannot be found from keypoints: plain segm AP is lower.
    assert oracle['segm_ap'] <= oracle['segm_ap_keypoint_persons']


def test_every_person_with_labelled_keypoints_is_recovered(oracle):
    kappa2 = (2 * np.asarray(config.OKS_SIGMAS)) ** 2
    detections = {}
    for result in oracle['results']:
        detections.setdefault(result['image_id'], []).append(np.reshape(result['keypoints'], (-1, 3)))
    similarities = []
    for annotation in oracle['ground_truth']['annotations']:
        truth = np.reshape(annotation['keypoints'], (-1, 3)).astype(np.float64)
        labelled = truth[:, 2] > 0
        if annotation['iscrowd'] or not labelled.any():
            continue
        found = detections.get(annotation['image_id'], [])
        assert found, 'nobody decoded in image %d' % annotation['image_id']
        oks = [np.exp(-((d[:, :2] - truth[:, :2]) ** 2).sum(1) / (2 * annotation['area'] * kappa2))[labelled].mean()
               for d in found]
        similarities.append(max(oks))
    similarities = np.array(similarities)
    assert len(similarities) >= 12
    assert similarities.min() >= 0.95, 'a person found only at OKS %.2f' % similarities.min()


def test_target_dict_with_validity_maps_recovers_every_labelled_person(coco_sample):
    # encode_example's whole target dict, validity maps included (what the oracle should hand the decoder).
    dataset = data_generator.CocoPersons(coco_sample['val_annotations'], coco_sample['val_images'])
    kappa2 = post_proc.KAPPA.astype(np.float64) ** 2
    checked = 0
    for image_id in dataset.image_ids:
        example = dataset.load_example(image_id)
        targets = data_generator.encode_example(example, config.EVAL_OUTPUT_STRIDE)
        assert all(head.validity in targets for head in heads.OFFSET_HEADS)
        people = post_proc.decode(targets, config.EVAL_OUTPUT_STRIDE, targets['image'].shape)
        for truth, mask in zip(example['keypoints'], example['masks']):
            labelled = truth[:, 2] > 0
            if not labelled.any():
                continue
            area = mask.sum()
            best = max(np.exp(-((p['keypoints'][:, :2] - truth[:, :2]) ** 2).sum(1) / (2 * area * kappa2))[labelled].mean()
                       for p in people)
            assert best >= 0.95, 'image %d: a labelled person found only at OKS %.2f' % (image_id, best)
            checked += 1
    assert checked >= 12


def test_results_are_valid_coco_results(oracle):
    image_ids = set(oracle['image_ids'])
    for result in oracle['results']:
        assert result['image_id'] in image_ids and result['category_id'] == 1
        assert len(result['keypoints']) == 3 * config.NUM_KEYPOINTS
        assert 0 < result['score'] <= 1 and 0 <= result['mask_score'] <= result['score']
        assert set(result['segmentation']) == {'size', 'counts'}


def test_command_line_prints_summaries_and_the_oracle_line(coco_sample, tmp_path, capsys):
    output = str(tmp_path / 'results.json')
    code = evaluation.main(['--oracle', '--annotations', coco_sample['val_annotations'], '--images',
                            coco_sample['val_images'], '--output', output, '--max-images', '2'])
    assert code == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert re.fullmatch(r'oracle: keypoints AP \d\.\d{3} segm AP \d\.\d{3} segm AP \(keypoint persons\) \d\.\d{3}',
                        lines[-1])
    assert sum('Average Precision' in line for line in lines) == 5 + 6 + 6  # keypoints, segm, segm (kp persons)
    assert '[2/2]' in captured.err  # progress
    with open(output) as f:
        keypoints = json.load(f)
    with open(evaluation.segm_output_path(output)) as f:
        segm = json.load(f)
    assert keypoints and len(keypoints) == len(segm)
    assert {r['image_id'] for r in keypoints} <= set(evaluation.data_generator.CocoPersons(
        coco_sample['val_annotations'], coco_sample['val_images'], include_empty=True).image_ids[:2])


def test_missing_files_give_a_clear_error(tmp_path, capsys):
    code = evaluation.main(['--oracle', '--annotations', str(tmp_path / 'none.json'), '--images',
                            str(tmp_path / 'no_images'), '--quiet'])
    assert code == 2
    error = capsys.readouterr().err
    assert 'none.json' in error and 'no_images' in error


def test_mode_is_required(capsys):
    with pytest.raises(SystemExit) as raised:
        evaluation.parse_args(['--annotations', 'x.json'])
    assert raised.value.code == 2
    assert 'one of the arguments --oracle --checkpoint is required' in capsys.readouterr().err
