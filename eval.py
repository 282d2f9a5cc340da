"""Evaluates PersonLab on COCO person_keypoints: keypoint AP and person instance-segmentation AP.

Laid out like TF DeepLab's eval.py: a predictor turns one image into the network's outputs, and one shared
path decodes them (post_proc.decode), writes COCO results (keypoints, segm as RLE, scores) and runs
pycocotools' COCOeval for 'keypoints' and 'segm'.

Modes:
  --oracle      the ground truth, encoded into target maps by data_generator.encode_example at
                config.EVAL_OUTPUT_STRIDE without augmentation, stands in for the network: the upper bound of
                target encoding plus decoding (README, "Evaluation").
  --checkpoint  (a later issue) a predictor that runs the trained network; it only has to implement
                `Predictor.predict` below, everything after the outputs is shared.

Usage:
  python eval.py --oracle --annotations FILE --images DIR [--output results.json] [--max-images N]

The last line printed is
  oracle: keypoints AP <a> segm AP <b> segm AP (keypoint persons) <c>
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

import cv2
import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

import config
import data_generator
import post_proc


# ----------------------------------------------------------------------------------------------------------
# Predictors: one image -> network outputs
# ----------------------------------------------------------------------------------------------------------
class Predictor(object):
    """Turns one example (CocoPersons.load_example) into decodable outputs.

    `predict(example)` returns (outputs, input_shape, scale): outputs as post_proc.decode reads them (no batch
    axis), the (H, W) of the input they belong to, and the factor from source-image pixels to input pixels
    (the input may be resized and padded bottom/right; the source image is its top-left part after scaling).
    """
    stride = config.EVAL_OUTPUT_STRIDE

    def predict(self, example):
        raise NotImplementedError


class OraclePredictor(Predictor):
    """The ground truth's target maps as the network's outputs (no augmentation, source resolution)."""

    def __init__(self, stride=None):
        self.stride = config.EVAL_OUTPUT_STRIDE if stride is None else stride

    def predict(self, example):
        targets = data_generator.encode_example(example, self.stride)
        outputs = {name: targets[name] for name, _ in post_proc.OUTPUT_CHANNELS}
        return outputs, targets['image'].shape[:2], 1.0


# ----------------------------------------------------------------------------------------------------------
# People -> COCO results
# ----------------------------------------------------------------------------------------------------------
def to_source_image(people, scale, image_shape):
    """Maps decoded people from input pixels back to the source image: keypoints / scale, masks cropped
    (scale 1) or resized (nearest) to `image_shape` (H, W).  Returns new dicts."""
    height, width = image_shape
    converted = []
    for person in people:
        keypoints = person['keypoints'].copy()
        keypoints[:, :2] /= scale
        mask = person['mask']
        if mask is not None:
            if scale == 1.0:
                mask = mask[:height, :width]
            else:
                crop = mask[:int(round(height * scale)), :int(round(width * scale))]
                mask = cv2.resize(crop.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST) > 0
        converted.append(dict(person, keypoints=keypoints, mask=mask))
    return converted


def coco_results(people, image_id):
    """COCO result dicts of one image: keypoints [x, y, score] * K, 'score', and segm RLE with 'mask_score'
    (the score segm results are ranked by, post_proc.mask_quality)."""
    results = []
    for person in people:
        keypoints = person['keypoints'].astype(np.float64)
        result = {'image_id': int(image_id), 'category_id': 1, 'score': float(person['score']),
                  'keypoints': [round(float(v), 2) for v in keypoints.ravel()]}
        if person['mask'] is not None:
            rle = mask_utils.encode(np.asfortranarray(person['mask'].astype(np.uint8)))
            rle['counts'] = rle['counts'].decode('ascii')
            result['segmentation'] = rle
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
    """Runs predictor + decoder on every image; returns (COCO results, seconds spent decoding)."""
    results = []
    decode_seconds = 0.0
    start = time.time()
    for n, image_id in enumerate(image_ids):
        example = dataset.load_example(image_id)
        outputs, input_shape, scale = predictor.predict(example)
        t0 = time.perf_counter()
        people = post_proc.decode(outputs, predictor.stride, input_shape)
        decode_seconds += time.perf_counter() - t0
        people = to_source_image(people, scale, example['image'].shape[:2])
        results.extend(coco_results(people, image_id))
        if progress:
            elapsed = time.time() - start
            sys.stderr.write('\r[%d/%d] %d people so far, %.1f s elapsed, %.1f s left   ' % (
                n + 1, len(image_ids), len(results), elapsed, elapsed / (n + 1) * (len(image_ids) - n - 1)))
            sys.stderr.flush()
    if progress and image_ids:
        sys.stderr.write('\n')
    return results, decode_seconds


def segm_output_path(output):
    """results.json -> results_segm.json: segm results go beside the keypoint results (pycocotools' loadRes
    reads one result type per file)."""
    root, extension = os.path.splitext(output)
    return root + '_segm' + (extension or '.json')


def run(predictor, annotation_file, image_dir, output=None, max_images=None, progress=True, verbose=True):
    """Evaluates `predictor` on a COCO annotation file.

    Returns dict 'keypoints_ap', 'segm_ap', 'segm_ap_keypoint_persons', 'keypoints_stats', 'segm_stats',
    'segm_keypoint_persons_stats', 'results' (COCO result dicts), 'image_ids', 'decode_seconds'.
    Raises FileNotFoundError naming a missing annotation file or image folder.
    """
    dataset = data_generator.CocoPersons(annotation_file, image_dir, include_empty=True)
    image_ids = list(dataset.image_ids)
    if max_images is not None:
        image_ids = image_ids[:max_images]
    results, decode_seconds = predict_and_decode(predictor, dataset, image_ids, progress)
    keypoint_results = [{k: v for k, v in r.items() if k not in ('segmentation', 'mask_score')} for r in results]
    segm_results = [dict({k: v for k, v in r.items() if k not in ('keypoints', 'mask_score')}, score=r['mask_score'])
                    for r in results if 'segmentation' in r]
    if output:
        for path, entries in ((output, keypoint_results), (segm_output_path(output), segm_results)):
            with open(path, 'w') as f:
                json.dump(entries, f)
            if verbose:
                print('wrote %d results to %s' % (len(entries), path))
    coco_gt = load_ground_truth(annotation_file)
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
    return {'keypoints_ap': float(keypoint_stats[0]), 'segm_ap': float(segm_stats[0]),
            'segm_ap_keypoint_persons': float(segm_kp_stats[0]), 'keypoints_stats': keypoint_stats,
            'segm_stats': segm_stats, 'segm_keypoint_persons_stats': segm_kp_stats, 'results': results,
            'image_ids': image_ids, 'decode_seconds': decode_seconds}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument('--oracle', action='store_true',
                      help='decode the ground truth\'s target maps instead of network outputs')
    parser.add_argument('--annotations', default=config.VAL_ANNOTATIONS, help='COCO person_keypoints json')
    parser.add_argument('--images', default=config.VAL_IMAGES, help='folder of the images it names')
    parser.add_argument('--output', help='write the keypoint results to this json file and the segm results '
                                         'beside it (results.json -> results_segm.json)')
    parser.add_argument('--max-images', type=int, help='evaluate only the first N images')
    parser.add_argument('--stride', type=int, default=config.EVAL_OUTPUT_STRIDE, help='output stride')
    parser.add_argument('--quiet', action='store_true', help='no progress line')
    args = parser.parse_args(argv)
    if args.max_images is not None and args.max_images < 1:
        parser.error('--max-images must be at least 1')
    return args


def main(argv=None):
    args = parse_args(argv)
    predictor = OraclePredictor(args.stride)
    try:
        summary = run(predictor, args.annotations, args.images, args.output, args.max_images,
                      progress=not args.quiet)
    except (FileNotFoundError, data_generator.ImageReadError) as error:
        sys.stderr.write('eval.py: error: %s\n' % error)
        return 2
    print('decoding: %.1f ms per image' % (1000.0 * summary['decode_seconds'] / max(len(summary['image_ids']), 1)))
    print('oracle: keypoints AP %.3f segm AP %.3f segm AP (keypoint persons) %.3f' % (
        summary['keypoints_ap'], summary['segm_ap'], summary['segm_ap_keypoint_persons']))
    return 0


if __name__ == '__main__':
    sys.exit(main())
