"""What the learning benchmarks share (bench/overfit.py, bench/quickstart_curve.py): AP of checkpoints and of the
oracle through eval.py's own path, training with train.py, the learning-curve picture.

Every AP here comes from eval.run on an inference.Predictor: the Polyak-averaged weights of a train.py checkpoint
(or the ground truth encoded as maps), resized to one longer side, output stride config.EVAL_OUTPUT_STRIDE,
post_proc.decode with the run's disk radius, pycocotools' COCOeval. 'segm' is segm AP over the persons with
labelled keypoints (eval.py's 'segm AP (keypoint persons)'): a keypoint-seeded decoder cannot find the others.
"""
import json
import os
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import checkpoints  # noqa: E402
import eval as evaluation  # noqa: E402
import inference  # noqa: E402
import networks  # noqa: E402
import oracle  # noqa: E402
import plot  # noqa: E402


def keypoint_subset(annotations, output):
    """Writes the COCO file of the images of `annotations` that hold a person with labelled keypoints (all their
    annotations kept, crowd regions too). Returns (output, number of images, persons with keypoints)."""
    with open(annotations) as f:
        data = json.load(f)
    keep = {a['image_id'] for a in data['annotations'] if a.get('num_keypoints', 0) > 0 and not a.get('iscrowd')}
    subset = dict(data, images=[i for i in data['images'] if i['id'] in keep],
                  annotations=[a for a in data['annotations'] if a['image_id'] in keep])
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    with open(output, 'w') as f:
        json.dump(subset, f)
    persons = sum(1 for a in subset['annotations'] if a.get('num_keypoints', 0) > 0 and not a.get('iscrowd'))
    return output, len(subset['images']), persons


def _aps(predictor, annotations, images):
    summary = evaluation.run(predictor, annotations, images, progress=False, verbose=False)
    return summary['keypoints_ap'], summary['segm_ap_keypoint_persons']


def oracle_ap(annotations, images, longer_side, radius):
    """(keypoints AP, segm AP) of the ground truth encoded as maps at `longer_side` with disk radius `radius`."""
    network = oracle.GroundTruthNetwork(longer_sides=[longer_side], radius=radius)
    return _aps(inference.Predictor(network, [longer_side], radius=radius), annotations, images)


def checkpoint_ap(prefix, annotations, images, longer_side):
    """(keypoints AP, segm AP) of a checkpoint's Polyak weights at `longer_side`, decoded with its run's radius."""
    network = networks.CheckpointNetwork(prefix)
    try:
        return _aps(inference.Predictor(network, [longer_side]), annotations, images)
    finally:
        network.close()


def learning_curve(train_dir, annotations, images, longer_side, log=print):
    """[(step, keypoints AP, segm AP)] of every checkpoint in `train_dir`, oldest first, each logged as it is
    measured."""
    rows = []
    for prefix in checkpoints.all_in(train_dir):
        step = checkpoints.step_of(prefix)
        keypoints_ap, segm_ap = checkpoint_ap(prefix, annotations, images, longer_side)
        rows.append((step, keypoints_ap, segm_ap))
        log('step %d: keypoints AP %.3f segm AP %.3f' % (step, keypoints_ap, segm_ap), flush=True)
    return rows


def save_curve(path, rows, oracle, title):
    """Writes the learning curve (keypoints and segm AP against steps, the oracle's as dashed lines) as a PNG."""
    steps = [r[0] for r in rows]
    series = [('keypoints AP', list(zip(steps, [r[1] for r in rows])), False),
              ('segm AP (keypoint persons)', list(zip(steps, [r[2] for r in rows])), False),
              ('keypoints AP, oracle %.3f' % oracle[0], [(0, oracle[0])], True),
              ('segm AP, oracle %.3f' % oracle[1], [(0, oracle[1])], True)]
    return plot.save_image(path, plot.curve_picture(series, title=title, x_label='training steps', y_label='AP'))


def train_and_measure(train_args, train_dir, annotations, images, longer_side, oracle, png, title):
    """Runs `python train.py <train_args> --train-dir <train_dir>` (its progress shown as it goes), then measures
    every checkpoint it left (learning_curve) and draws the curve next to `oracle` into `png`.

    Returns (exit status of train.py, rows of learning_curve); rows is [] when training failed.
    """
    command = [sys.executable, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                            'train.py')] + list(train_args) + ['--train-dir', train_dir]
    print('training: %s' % ' '.join(command), flush=True)
    status = subprocess.call(command)
    if status != 0:
        return status, []
    rows = learning_curve(train_dir, annotations, images, longer_side)
    if rows:
        save_curve(png, rows, oracle, title)
        print('learning curve: %s' % png, flush=True)
    return status, rows
