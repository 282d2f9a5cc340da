"""Evaluates PersonLab on COCO person_keypoints: keypoint AP and person instance-segmentation AP.

Laid out like TF DeepLab's eval.py: a predictor turns one image into people, and one shared path writes COCO
results (keypoints, segm as RLE, scores) and runs pycocotools' COCOeval for 'keypoints' and 'segm'. The
predictor is inference.Predictor, the project's single inference path (resize, pad, network, multi-scale
merge, post_proc.decode, mapping back to the original image's pixels); the modes differ only in the network
that hands it maps:

  --checkpoint  the trained network (networks.CheckpointNetwork: Polyak-averaged weights, output stride
                config.EVAL_OUTPUT_STRIDE), each image resized so its longer side is --scales (default
                config.EVAL_LONGER_SIDE; None: the checkpoint's training input size; several values:
                multi-scale, config.EVAL_SCALES).
  --oracle      the ground truth, encoded into target maps (oracle.GroundTruthNetwork, i.e.
                data_generator.make_targets) at the source size without augmentation: the upper bound of
                target encoding plus decoding (docs/evaluation.md).

Usage:
  python eval.py --checkpoint CKPT [--annotations FILE] [--images DIR] [--scales 1401 | 601 1201 1801]
                 [--output results.json] [--max-images N]
  python eval.py --oracle --annotations FILE --images DIR [--output results.json] [--max-images N]

A progress bar gives the network and decoding time per image. With --checkpoint the results are always
written (default: config.EVAL_RESULTS_DIR/person_keypoints_<split>_personlab_results.json for keypoints and
detections_<split>_personlab_results.json for segm, the names and format COCO's test-dev server takes). An
annotation file without annotations (test-dev's image_info) gives the results files only. The last line is
  <mode>: keypoints AP <a> segm AP <b> segm AP (keypoint persons) <c>
where <c> is segm AP with the ground-truth persons that have no labelled keypoint marked ignore (a
keypoint-seeded decoder cannot find them, so <b> is capped by their share).
"""
import argparse
import contextlib
import io
import json
import os
import sys
import time

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import checkpoints
import config
import data_generator
import files
import images
import inference
import machine
import networks
import oracle
import rescale
import settings


# ----------------------------------------------------------------------------------------------------------
# Predictors: one image -> people
# ----------------------------------------------------------------------------------------------------------
class OraclePredictor(inference.Predictor):
    """The ground truth's target maps as the network's outputs (no augmentation, source resolution)."""

    def __init__(self, stride=None, radius=None, options=None):
        super(OraclePredictor, self).__init__(oracle.GroundTruthNetwork(stride=stride, radius=radius,
                                                                        options=options),
                                              scales=[None], options=options)


def checkpoint_predictor(checkpoint=None, scales=None, stride=None, radius=None, oracle_heads=(), options=None):
    """inference.Predictor of a train.py checkpoint at the longer sides `scales` (default: config.EVAL_LONGER_SIDE,
    or the checkpoint's training INPUT_SIZE when that is None), decoding with the disk radius `radius` (default:
    the run's, inference.decode_radius). oracle_heads: output names whose maps the ground truth replaces
    (oracle.PartialOracleNetwork). options: settings.Settings (None: config.py's) the run's model settings are
    laid over (networks.CheckpointNetwork) and decoding runs with.
    Raises checkpoints.NoCheckpointError, ValueError (see CheckpointNetwork)."""
    network = networks.CheckpointNetwork(checkpoint, stride=stride, options=options)
    if scales is None:
        scales = [inference.default_longer_side(network, setting='EVAL_LONGER_SIDE', options=options)]
    if oracle_heads:
        network = oracle.PartialOracleNetwork(network, oracle_heads, scales)
    return inference.Predictor(network, scales, radius=radius, options=options)


def predict_people(predictor, example):
    """People of one example in source-image px, and the seconds of 'network' and 'decoding'."""
    if hasattr(predictor.network, 'set_example'):  # the oracle's maps come from the annotations
        predictor.network.set_example(example)
    prediction = predictor.predict(example['image'], name=example['file_name'])
    return prediction.people, {'network': prediction.network_seconds, 'decoding': prediction.decode_seconds}


# ----------------------------------------------------------------------------------------------------------
# People -> COCO results
# ----------------------------------------------------------------------------------------------------------
def coco_results(people, image_id):
    """COCO result dicts of one image: keypoints [x, y, score] * K, 'score', and segm RLE with 'mask_score'
    (the score segm results are ranked by, post_proc.mask_quality)."""
    results = []
    for person in people:
        keypoints = person['keypoints'].astype(np.float64)
        result = {'image_id': int(image_id), 'category_id': 1, 'score': float(person['score']),
                  'keypoints': [round(float(v), 2) for v in keypoints.ravel()]}
        if person['mask'] is not None:
            result['segmentation'] = inference.mask_rle(person['mask'])
            result['mask_score'] = float(person.get('mask_score', person['score']))
        results.append(result)
    return results


# ----------------------------------------------------------------------------------------------------------
# COCOeval
# ----------------------------------------------------------------------------------------------------------
class KeypointPersonsEval(COCOeval):
    """COCOeval that ignores ground-truth persons without labelled keypoints (like crowd regions: a
    detection on them is neither a true nor a false positive).  Used for segm AP (keypoint persons)."""

    def _prepare(self):
        super(KeypointPersonsEval, self)._prepare()
        for annotations in self._gts.values():
            for annotation in annotations:
                if annotation.get('num_keypoints', 0) == 0:
                    annotation['ignore'] = 1


def split_results(results):
    """(keypoint results, segm results) in COCO's result formats from result dicts holding both tasks' fields
    (coco_results); a segm result is scored by its 'mask_score'."""
    keypoint_results = [{k: v for k, v in r.items() if k not in ('segmentation', 'mask_score')} for r in results]
    segm_results = [dict({k: v for k, v in r.items() if k not in ('keypoints', 'mask_score')}, score=r['mask_score'])
                    for r in results if 'segmentation' in r]
    return keypoint_results, segm_results


def load_ground_truth(annotation_file):
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        return COCO(annotation_file)


def evaluate(coco_gt, results, image_ids, iou_type, keypoint_persons_only=False, verbose=True):
    """Runs COCOeval on `results` over `image_ids`; prints the standard summary if verbose.

    Returns the 10 (keypoints) or 12 (segm) summary numbers, AP first; all 0 when there is no detection.
    """
    evaluator_class = KeypointPersonsEval if keypoint_persons_only else COCOeval
    if not results:
        if verbose:
            print('no detections for %s: AP 0' % iou_type)
        return np.zeros(10 if iou_type == 'keypoints' else 12)
    with contextlib.redirect_stdout(io.StringIO()):
        coco_dt = coco_gt.loadRes([dict(r) for r in results])  # loadRes adds fields in place: copy
        evaluator = evaluator_class(coco_gt, coco_dt, iou_type)
        evaluator.params.imgIds = list(image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        evaluator.summarize()
    if verbose:
        print(summary.getvalue(), end='')
    return np.asarray(evaluator.stats)


# ----------------------------------------------------------------------------------------------------------
# The shared path
# ----------------------------------------------------------------------------------------------------------
def predict_and_decode(predictor, dataset, image_ids, progress=True):
    """Runs the predictor on every image; returns (COCO results, dict of total seconds 'network',
    'decoding'). The progress bar shows both per image."""
    results = []
    totals = {'network': 0.0, 'decoding': 0.0}
    start = time.time()
    for n, image_id in enumerate(image_ids):
        example = dataset.load_example(image_id)
        people, timings = predict_people(predictor, example)
        for name in totals:
            totals[name] += timings[name]
        results.extend(coco_results(people, image_id))
        if progress:
            elapsed = time.time() - start
            sys.stderr.write('\r[%d/%d] %d people so far; per image: network %.2f s, decoding %.0f ms; '
                             '%.0f s elapsed, %.0f s left   ' % (
                                 n + 1, len(image_ids), len(results), totals['network'] / (n + 1),
                                 1000.0 * totals['decoding'] / (n + 1), elapsed,
                                 elapsed / (n + 1) * (len(image_ids) - n - 1)))
            sys.stderr.flush()
    if progress and image_ids:
        sys.stderr.write('\n')
    return results, totals


def segm_output_path(output):
    """Where the segm results go beside the keypoint results (pycocotools' loadRes reads one result type per
    file): COCO's server names person_keypoints_<split>_<alg>_results.json -> detections_<split>_<alg>_results
    .json; any other results.json -> results_segm.json."""
    folder, name = os.path.split(output)
    if name.startswith('person_keypoints_'):
        return os.path.join(folder, 'detections_' + name[len('person_keypoints_'):])
    root, extension = os.path.splitext(output)
    return root + '_segm' + (extension or '.json')


def default_output(annotation_file):
    """config.EVAL_RESULTS_DIR/person_keypoints_<split>_personlab_results.json, <split> from the annotation
    file's name (person_keypoints_val2017.json -> val2017, image_info_test-dev2017.json -> test-dev2017)."""
    split = os.path.splitext(os.path.basename(annotation_file))[0]
    for prefix in ('person_keypoints_', 'image_info_'):
        if split.startswith(prefix):
            split = split[len(prefix):]
    return os.path.join(config.EVAL_RESULTS_DIR, 'person_keypoints_%s_personlab_results.json' % split)


def run(predictor, annotation_file, image_dir, output=None, max_images=None, progress=True, verbose=True,
        data=None):
    """Evaluates `predictor` (an inference.Predictor) on a COCO annotation file.

    Returns dict 'keypoints_ap', 'segm_ap', 'segm_ap_keypoint_persons' (None without ground-truth
    annotations), 'keypoints_stats', 'segm_stats', 'segm_keypoint_persons_stats', 'results' (COCO result dicts
    with both tasks' fields), 'image_ids', 'network_seconds', 'decode_seconds'.
    `data`: load_data(annotation_file, image_dir) if already loaded.
    Raises FileNotFoundError naming a missing annotation file or image folder, ValueError naming a malformed one.
    """
    dataset, coco_gt = data or load_data(annotation_file, image_dir)
    image_ids = list(dataset.image_ids)
    if max_images is not None:
        image_ids = image_ids[:max_images]
    results, seconds = predict_and_decode(predictor, dataset, image_ids, progress)
    keypoint_results, segm_results = split_results(results)
    if output:
        for path, entries in ((output, keypoint_results), (segm_output_path(output), segm_results)):
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            with files.atomic_output(path) as partial, open(partial, 'w') as f:
                json.dump(entries, f)
            if verbose:
                print('wrote %d results to %s' % (len(entries), path))
    summary = {'keypoints_ap': None, 'segm_ap': None, 'segm_ap_keypoint_persons': None, 'keypoints_stats': None,
               'segm_stats': None, 'segm_keypoint_persons_stats': None, 'results': results,
               'image_ids': image_ids, 'network_seconds': seconds['network'], 'decode_seconds': seconds['decoding']}
    if 'annotations' not in coco_gt.dataset:
        if verbose:
            print('no ground-truth annotations in %s (COCO test-dev?): results only, no AP' % annotation_file)
        return summary
    if verbose:
        print('keypoints (%d images, %d people found):' % (len(image_ids), len(results)))
    keypoint_stats = evaluate(coco_gt, keypoint_results, image_ids, 'keypoints', verbose=verbose)
    if verbose:
        print('segm:')
    segm_stats = evaluate(coco_gt, segm_results, image_ids, 'segm', verbose=verbose)
    if verbose:
        print('segm, ground-truth persons without labelled keypoints ignored:')
    segm_kp_stats = evaluate(coco_gt, segm_results, image_ids, 'segm', keypoint_persons_only=True,
                             verbose=verbose)
    summary.update(keypoints_ap=float(keypoint_stats[0]), segm_ap=float(segm_stats[0]),
                   segm_ap_keypoint_persons=float(segm_kp_stats[0]), keypoints_stats=keypoint_stats,
                   segm_stats=segm_stats, segm_keypoint_persons_stats=segm_kp_stats)
    return summary


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument('--oracle', action='store_true',
                      help='decode the ground truth\'s target maps instead of network outputs')
    mode.add_argument('--checkpoint', help='evaluate a trained network: train dir or checkpoint prefix')
    parser.add_argument('--annotations', default=config.VAL_ANNOTATIONS, help='COCO person_keypoints json')
    parser.add_argument('--images', default=config.VAL_IMAGES, help='folder of the images it names')
    parser.add_argument('--output', help='write the keypoint results to this json file and the segm results '
                                         'beside it (person_keypoints_X.json -> detections_X.json, else '
                                         'results.json -> results_segm.json); --checkpoint default: %s'
                                         % default_output('person_keypoints_<split>.json'))
    parser.add_argument('--max-images', type=int, help='evaluate only the first N images')
    scales = parser.add_mutually_exclusive_group()
    scales.add_argument('--scales', type=int, nargs='+', metavar='SIDE',
                        help='--checkpoint: longer side(s) of the network input in px; several: multi-scale '
                             '(default: config.EVAL_LONGER_SIDE = %s; None: the checkpoint\'s training input size)'
                             % config.EVAL_LONGER_SIDE)
    scales.add_argument('--multi-scale', action='store_true',
                        help='--checkpoint: the paper\'s scales, config.EVAL_SCALES %s' % (config.EVAL_SCALES,))
    parser.add_argument('--oracle-heads', metavar='HEADS',
                        help='--checkpoint: replace these network outputs by the ground truth encoded at the same '
                             'size before decoding, a comma-separated subset of %s, or all (docs/evaluation.md, '
                             '"Partial oracles")' % ','.join(oracle.ORACLE_HEADS))
    parser.add_argument('--radius', type=float,
                        help='disk radius R in px to decode with (default: the RADIUS the checkpoint was trained '
                             'with, from its config.json; the oracle: config.RADIUS)')
    parser.add_argument('--stride', type=int, default=config.EVAL_OUTPUT_STRIDE, help='output stride')
    parser.add_argument('--quiet', action='store_true', help='print only the last line (the APs): no progress, '
                                                             'no COCOeval tables')
    args = parser.parse_args(argv)
    if args.max_images is not None and args.max_images < 1:
        parser.error('--max-images must be at least 1')
    if args.oracle and (args.scales or args.multi_scale):
        parser.error('--scales and --multi-scale apply to --checkpoint (the oracle works at the source size)')
    try:
        rescale.check_scales(args.scales)
    except ValueError as error:
        parser.error('--%s' % error)
    if args.radius is not None and not args.radius > 0:
        parser.error('--radius must be a positive number of px, got %s' % args.radius)
    if args.oracle_heads is not None:
        if args.oracle:
            parser.error('--oracle-heads replaces some outputs of a --checkpoint (--oracle replaces all)')
        try:
            args.oracle_heads = oracle.parse_oracle_heads(args.oracle_heads)
        except ValueError as error:
            parser.error(str(error))
    return args


def check_ground_truth(coco_gt, annotation_file):
    """Raises ValueError naming the first person annotation COCOeval would fail on, so that a malformed file
    stops before any image is predicted, not after: 'keypoints' not 3 * config.NUM_KEYPOINTS numbers, no
    'area', 'iscrowd' or 4-number 'bbox', a segmentation pycocotools cannot turn into a mask."""
    expected = 3 * config.NUM_KEYPOINTS
    for annotation in coco_gt.dataset.get('annotations', []):
        where = '%s: annotation %s (image %s)' % (annotation_file, annotation.get('id'), annotation.get('image_id'))
        try:
            keypoints = np.asarray(annotation['keypoints'], np.float64)
            problem = (None if keypoints.ndim == 1 and keypoints.size == expected else
                       "'keypoints' has %d numbers, COCO person keypoints have %d" % (keypoints.size, expected))
            float(annotation['area']), int(annotation['iscrowd'])
            if problem is None and np.asarray(annotation['bbox'], np.float64).shape != (4,):
                problem = "'bbox' is not 4 numbers"
        except KeyError as error:
            problem = 'no %s' % error
        except (TypeError, ValueError) as error:
            problem = 'a value is not a number (%s)' % error
        if problem is None:
            try:
                rle = coco_gt.annToRLE(annotation)
                mask_utils.area(rle)  # reads the counts as COCOeval's IoU will
                image = coco_gt.imgs[annotation['image_id']]
                if [int(v) for v in rle['size']] != [image['height'], image['width']]:
                    problem = "'segmentation' of size %s on a %dx%d image" % (rle['size'], image['width'],
                                                                              image['height'])
            except Exception as error:  # pycocotools raises anything from TypeError to IndexError
                problem = "unreadable 'segmentation' (%s: %s)" % (type(error).__name__, error)
        if problem:
            raise ValueError('%s: %s' % (where, problem))


def load_data(annotations, images):
    """(CocoPersons, pycocotools COCO) of the evaluation set, checked before any model is built.
    Raises FileNotFoundError naming a missing file or folder, ValueError naming a file that is not COCO
    person keypoints (truncated, another format, a malformed annotation)."""
    dataset = data_generator.CocoPersons(annotations, images, include_empty=True)
    coco_gt = load_ground_truth(annotations)
    check_ground_truth(coco_gt, annotations)
    return dataset, coco_gt


def main(argv=None):
    args = parse_args(argv)
    output = args.output if args.output or args.oracle else default_output(args.annotations)
    try:  # everything a user gives is checked before the model is built and any image predicted
        data = load_data(args.annotations, args.images)
        if output:
            if os.path.isdir(output):
                raise OSError('--output %s is a folder; give a file name such as %s' % (
                    output, os.path.join(output, os.path.basename(default_output(args.annotations)))))
            files.writable_folder(os.path.dirname(os.path.abspath(output)), 'results folder')
    except (OSError, ValueError) as error:
        sys.stderr.write('eval.py: error: %s\n' % error)
        return 2
    options = settings.defaults()  # config.py as the user edited it; each checkpoint's model values on top
    if args.oracle:
        predictor, mode = OraclePredictor(args.stride, args.radius, options), 'oracle'
    else:
        mode = 'checkpoint'
        scales = list(config.EVAL_SCALES) if args.multi_scale else args.scales
        try:
            checkpoints.find(args.checkpoint)  # before TensorFlow: a missing model fails at once
            predictor = checkpoint_predictor(args.checkpoint, scales, args.stride, args.radius, args.oracle_heads,
                                             options)
        except checkpoints.NoCheckpointError as error:
            sys.stderr.write('eval.py: %s\n' % error)
            return 2
        except ValueError as error:
            sys.stderr.write('eval.py: error: %s\n' % error)
            return 2
        network = getattr(predictor.network, 'network', predictor.network)  # under a partial oracle
        for warning in network.warnings:
            sys.stderr.write('eval.py: WARNING: %s\n' % warning)
        if not args.quiet:
            print('%s (ResNet-v2-%d, step %d), longer side %s px, output stride %d, decoding radius %g px%s'
                  % (network.checkpoint, network.depth, network.settings['step'],
                     '/'.join(str(s) for s in predictor.scales), network.stride, predictor.radius,
                     ', ground truth for %s' % ', '.join(args.oracle_heads) if args.oracle_heads else ''))
        if args.oracle_heads:
            mode = 'checkpoint with oracle %s' % '+'.join(args.oracle_heads)
    try:
        summary = run(predictor, args.annotations, args.images, output, args.max_images,
                      progress=not args.quiet, verbose=not args.quiet, data=data)
    except (FileNotFoundError, images.ImageReadError) as error:
        sys.stderr.write('eval.py: error: %s\n' % error)
        return 2
    except OSError as error:  # a fault, not a mistake: a full disk while writing the results
        sys.stderr.write('eval.py: error: %s\n' % error)
        return 1
    count = max(len(summary['image_ids']), 1)
    if not args.quiet:
        print('per image: network %.2f s, decoding %.1f ms' % (summary['network_seconds'] / count,
                                                              1000.0 * summary['decode_seconds'] / count))
    if summary['keypoints_ap'] is None:
        print('%s: no AP (no ground truth); results in %s and %s' % (mode, output, segm_output_path(output)))
    else:
        print('%s: keypoints AP %.3f segm AP %.3f segm AP (keypoint persons) %.3f' % (
            mode, summary['keypoints_ap'], summary['segm_ap'], summary['segm_ap_keypoint_persons']))
    return 0


if __name__ == '__main__':
    machine.quiet_tensorflow()  # before main() imports TensorFlow
    sys.exit(main())
