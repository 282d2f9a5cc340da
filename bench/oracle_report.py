"""Oracle report: what target encoding plus decoding lose on real COCO annotations, and why (docs/evaluation.md).

For every image of a COCO person_keypoints file, the ground truth is encoded into target maps without
augmentation (data_generator.encode_example, output stride --stride) and decoded by post_proc.decode twice:
with the validity maps of the target dict ('short_valid', 'mid_valid', 'long_valid': what the oracle should
pass) and without them (only the network's outputs, as a network gives them).  Printed per run: keypoints AP,
segm AP and segm AP with the persons without labelled keypoints ignored (COCOeval, as eval.py computes them).

Then, per ground-truth person with labelled keypoints (crowd excluded):
  * bound: IoU of the best mask the stride grid allows (the person's own grid mask upsampled bilinearly,
    as post_proc upsamples p_S) with the full-resolution annotation mask;  the segm AP (keypoint persons)
    those bound masks would get (every person found, score 1) is the cap of the third column;
  * decoded: IoU of the decoded mask that matches it best (with validity maps), and how many persons come
    within --slack of their bound;
  * keypoints: the best OKS of a decoded person (COCO's formula with the annotation's area);
  * cut trees: persons whose labelled keypoints do not form one connected piece of the kinematic tree (an
    unlabelled keypoint cuts the walk).

Usage: python bench/oracle_report.py [--annotations FILE --images DIR ...] [--stride 8] [--slack 0.03]
Default: the train and val files of `config.COCO_SAMPLE_DIR`.
Last line: `oracle report: <n> keypoint persons, bound IoU <lo>-<hi> (mean <m>, segm AP cap <c>), decoded
within <slack> of the bound for <k>, min OKS <o>, <t> cut trees`.
"""
import argparse
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import config  # noqa: E402
import data_generator  # noqa: E402
import heads  # noqa: E402
import eval as evaluation  # noqa: E402
import inference  # noqa: E402
import post_proc  # noqa: E402
import transformer  # noqa: E402

SAMPLE = config.COCO_SAMPLE_DIR
VALIDITY = tuple(head.validity for head in heads.OFFSET_HEADS)


def iou(a, b):
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum()) / union if union else 0.0


def cut_tree(labelled):
    """True if the labelled keypoints (bool [K]) are not one connected piece of config.EDGES."""
    kinds = set(np.flatnonzero(labelled))
    if not kinds:
        return False
    reached, frontier = set(), [min(kinds)]
    while frontier:
        k = frontier.pop()
        reached.add(k)
        frontier += [l for a, b in config.EDGES for k2, l in ((a, b), (b, a)) if k2 == k and l in kinds - reached]
    return reached != kinds


def oks(detected, truth, labelled, area):
    kappa2 = post_proc.KAPPA.astype(np.float64) ** 2
    d2 = ((detected[:, :2] - truth[:, :2]) ** 2).sum(axis=1)
    return float(np.exp(-d2 / (2 * max(area, 1e-9) * kappa2))[labelled].mean())


def bound_mask(mask, shape, stride):
    """The best mask a stride grid allows for a full-resolution mask: its grid sample upsampled bilinearly."""
    identity = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    grid = transformer.warp_masks_to_grid(mask, identity, shape, stride).astype(np.float32)
    up = post_proc.grid_to_input(grid, stride, shape) > config.SEGMENTATION_THRESHOLD
    return up[:mask.shape[0], :mask.shape[1]]


def segm_result(mask, image_id, score):
    return {'image_id': int(image_id), 'category_id': 1, 'segmentation': inference.mask_rle(mask),
            'score': float(score)}


def decode_image(targets, height, width, stride, validity=True, options=None):
    """People decoded from one image's target dict (validity maps used or dropped) with the decoding settings
    `options` (settings.Settings; None: config.py's), masks cut to the source size (encode_example pads
    bottom/right only, so input px = source px)."""
    maps = targets if validity else {k: v for k, v in targets.items() if k not in VALIDITY}
    people = post_proc.decode(maps, stride, targets['image'].shape, options=options)
    for person in people:
        person['mask'] = person['mask'][:height, :width]
    return people


def average_precisions(coco_gt, image_ids, people_per_image):
    """(keypoints AP, segm AP, segm AP with the persons without labelled keypoints ignored), as eval.py
    computes them, of decoded people (one list per image id)."""
    people = [r for image_id, image_people in zip(image_ids, people_per_image)
              for r in evaluation.coco_results(image_people, image_id)]
    keypoint_results, segm_results = evaluation.split_results(people)
    return (evaluation.evaluate(coco_gt, keypoint_results, image_ids, 'keypoints', verbose=False)[0],
            evaluation.evaluate(coco_gt, segm_results, image_ids, 'segm', verbose=False)[0],
            evaluation.evaluate(coco_gt, segm_results, image_ids, 'segm', keypoint_persons_only=True,
                                verbose=False)[0])


def oracle(annotations, images, stride, validity=True, options=None):
    """Average precisions of the oracle on one annotation file (validity maps used or not), decoded with
    `options` (settings.Settings; None: config.py's)."""
    dataset = data_generator.CocoPersons(annotations, images, include_empty=True)
    coco_gt = evaluation.load_ground_truth(annotations)
    decoded = []
    for image_id in dataset.image_ids:
        example = dataset.load_example(image_id)
        targets = data_generator.encode_example(example, stride)
        decoded.append(decode_image(targets, example['image'].shape[0], example['image'].shape[1], stride, validity,
                                    options))
    return average_precisions(coco_gt, dataset.image_ids, decoded)


def report(annotations, images, stride):
    """Runs one annotation file; prints its lines and returns (per-person figures, bound segm AP)."""
    dataset = data_generator.CocoPersons(annotations, images, include_empty=True)
    coco_gt = evaluation.load_ground_truth(annotations)
    image_ids = list(dataset.image_ids)
    results = {'with validity maps': [], 'without': []}
    bound_results, persons = [], []
    for image_id in image_ids:
        example = dataset.load_example(image_id)
        height, width = example['image'].shape[:2]
        targets = data_generator.encode_example(example, stride)
        for name in results:
            results[name].append(decode_image(targets, height, width, stride, validity=name != 'without'))
        decoded = results['with validity maps'][-1]
        for annotation in coco_gt.loadAnns(coco_gt.getAnnIds(imgIds=[image_id], iscrowd=False)):
            truth = np.reshape(annotation['keypoints'], (-1, 3)).astype(np.float64)
            labelled = truth[:, 2] > 0
            if not labelled.any():
                continue
            mask = coco_gt.annToMask(annotation).astype(bool)
            bound = bound_mask(mask, targets['image'].shape, stride)
            bound_results.append(segm_result(bound, image_id, iou(bound, mask)))  # ranked by IoU: the best order
            persons.append({
                'bound': iou(bound, mask),
                'decoded': max([iou(p['mask'], mask) for p in decoded] or [0.0]),
                'oks': max([oks(p['keypoints'], truth, labelled, annotation['area']) for p in decoded] or [0.0]),
                'cut': cut_tree(labelled)})
    print('%s (%d images):' % (annotations, len(image_ids)))
    for name, per_image in results.items():
        print('  decoded %s: keypoints AP %.3f segm AP %.3f segm AP (keypoint persons) %.3f'
              % ((name,) + tuple(average_precisions(coco_gt, image_ids, per_image))))
    cap = evaluation.evaluate(coco_gt, bound_results, image_ids, 'segm', keypoint_persons_only=True, verbose=False)[0]
    print('  bound masks: segm AP (keypoint persons) %.3f' % cap)
    return persons, cap


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--annotations', nargs='+', help='COCO person_keypoints files (default: the sample\'s)')
    parser.add_argument('--images', nargs='+', help='their image folders, in the same order')
    parser.add_argument('--stride', type=int, default=config.EVAL_OUTPUT_STRIDE)
    parser.add_argument('--slack', type=float, default=0.03, help='IoU below the bound still counted as reached')
    args = parser.parse_args(argv)
    if args.annotations is None:
        args.annotations = [os.path.join(SAMPLE, 'annotations', 'person_keypoints_%s2017.json' % s)
                            for s in ('train', 'val')]
        args.images = [os.path.join(SAMPLE, '%s2017' % s) for s in ('train', 'val')]
    if args.images is None or len(args.images) != len(args.annotations):
        parser.error('give one --images folder per --annotations file')
    persons, caps = [], []
    for annotations, images in zip(args.annotations, args.images):
        found, cap = report(annotations, images, args.stride)
        persons += found
        caps.append(cap)
    bound = np.array([p['bound'] for p in persons])
    gap = bound - np.array([p['decoded'] for p in persons])
    worst = np.sort(gap)[::-1][:5]
    print('per keypoint person: bound IoU %.2f-%.2f, mean %.2f; decoded masks: gap to the bound mean %.3f, '
          'largest %s' % (bound.min(), bound.max(), bound.mean(), gap.mean(), ' '.join('%.2f' % g for g in worst)))
    print('oracle report: %d keypoint persons, bound IoU %.2f-%.2f (mean %.2f, segm AP cap %s), decoded within '
          '%.2f of the bound for %d, min OKS %.3f, %d cut trees' % (
              len(persons), bound.min(), bound.max(), bound.mean(), '/'.join('%.3f' % c for c in caps), args.slack,
              int((gap <= args.slack).sum()), min(p['oks'] for p in persons), sum(p['cut'] for p in persons)))


if __name__ == '__main__':
    main()
