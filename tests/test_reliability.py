"""What the programs do on a train dir that a training is writing, on damaged checkpoints, and on a user's
mistakes (docs/reliability.md): the newest readable checkpoint, one line and exit status 2, no half files."""
import errno
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import checkpoints
import demo
import networks

IMAGE = np.random.RandomState(0).randint(0, 256, (65, 49, 3)).astype(np.uint8)


def _copy_with_newer(inference_checkpoint, tmp_path):
    """A copy of the inference test checkpoint's train dir with a second checkpoint one step newer (a copy
    of the first, named by the Saver's state file): (train dir, older prefix, newer prefix)."""
    train_dir = str(tmp_path / 'run')
    shutil.copytree(inference_checkpoint, train_dir)
    older = checkpoints.latest_in(train_dir)
    step = checkpoints.step_of(older)
    newer = '%s-%d' % (older.rsplit('-', 1)[0], step + 1)
    for name in os.listdir(train_dir):
        if name.startswith(os.path.basename(older) + '.'):
            shutil.copyfile(os.path.join(train_dir, name), newer + name[len(os.path.basename(older)):])
    with open(os.path.join(train_dir, checkpoints.CHECKPOINT_STATE), 'w') as f:
        f.write('model_checkpoint_path: "%s"\n' % os.path.basename(newer))
    return train_dir, older, newer


def test_a_checkpoint_deleted_while_the_graph_is_built_falls_back_to_the_next(inference_checkpoint, tmp_path,
                                                                               monkeypatch):
    """The training's retention deletes the newest checkpoint while eval.py or demo.py builds its graph."""
    train_dir, older, newer = _copy_with_newer(inference_checkpoint, tmp_path)
    build = networks.build_inference_graph

    def build_then_retention_deletes(*args, **kwargs):
        built = build(*args, **kwargs)
        checkpoints.remove(newer)
        return built

    monkeypatch.setattr(networks, 'build_inference_graph', build_then_retention_deletes)
    network = networks.CheckpointNetwork(train_dir)
    try:
        assert network.checkpoint == older and network.settings['step'] == checkpoints.step_of(older)
        assert not [w for w in network.warnings if 'cannot be read' in w]
        assert np.isfinite(network(IMAGE)['heatmaps']).all()
    finally:
        network.close()


def test_a_damaged_newest_checkpoint_falls_back_with_a_warning(inference_checkpoint, tmp_path):
    train_dir, older, newer = _copy_with_newer(inference_checkpoint, tmp_path)
    data = [n for n in os.listdir(train_dir) if n.startswith(os.path.basename(newer) + '.data-')][0]
    os.truncate(os.path.join(train_dir, data), 1000)
    network = networks.CheckpointNetwork(train_dir)
    reference = networks.CheckpointNetwork(older)
    try:
        assert network.checkpoint == older
        assert ['%s cannot be read (OutOfRangeError' % newer in w for w in network.warnings].count(True) == 1
        for name, value in reference(IMAGE).items():
            np.testing.assert_array_equal(network(IMAGE)[name], value, err_msg=name)
    finally:
        network.close()
        reference.close()
    # Asked for by name, the damaged checkpoint is an error naming it, not a fallback.
    with pytest.raises(checkpoints.UnreadableCheckpointError, match='%s is damaged' % newer):
        networks.CheckpointNetwork(newer)


# ----------------------------------------------------------------------------------------------------------
# A user's mistakes: one line naming the bad input, exit status 2, before TensorFlow is imported
# ----------------------------------------------------------------------------------------------------------
REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_program(program, args, cwd):
    """<program>.main(args) in a fresh interpreter: (exit status, stderr, whether TensorFlow was imported or
    the program did not return)."""
    code = ('import sys, %s as program\n'
            'try:\n    status = program.main(sys.argv[1:])\n'
            'except SystemExit as stop:  # argparse\n    status = stop.code\n'
            'print("TENSORFLOW_IMPORTED=%%s" %% ("tensorflow" in sys.modules))\n'
            'sys.exit(status)\n' % program)
    result = subprocess.run([sys.executable, '-c', code] + list(args), cwd=REPO_DIR, capture_output=True,
                            text=True, timeout=300)
    return result.returncode, result.stderr, 'TENSORFLOW_IMPORTED=False' not in result.stdout


def _annotations(coco_sample, tmp_path, change):
    """The val sample's annotation file with change(dataset) applied, written to tmp_path: its path."""
    with open(coco_sample['val_annotations']) as f:
        dataset = json.load(f)
    change(dataset)
    path = str(tmp_path / 'changed.json')
    with open(path, 'w') as f:
        json.dump(dataset, f)
    return path


def _first_person(dataset):
    return next(a for a in dataset['annotations'] if not a.get('iscrowd'))


def _truncated(coco_sample, tmp_path):
    with open(coco_sample['val_annotations'], 'rb') as f:
        data = f.read()
    path = str(tmp_path / 'truncated.json')
    with open(path, 'wb') as f:
        f.write(data[:len(data) // 2])
    return path


def _not_coco(coco_sample, tmp_path):
    path = str(tmp_path / 'other.json')
    with open(path, 'w') as f:
        json.dump({'images': 'none', 'results': [1, 2]}, f)
    return path


def _short_keypoints(coco_sample, tmp_path):
    return _annotations(coco_sample, tmp_path, lambda d: _first_person(d).update(keypoints=[0.0] * 48))


def _bad_segmentation(coco_sample, tmp_path):
    return _annotations(coco_sample, tmp_path, lambda d: _first_person(d).update(segmentation={'counts': 7}))


@pytest.mark.parametrize('make, message', [
    (_truncated, 'truncated.json is not a COCO annotation file'),
    (_not_coco, 'other.json is not a COCO annotation file'),
    (_short_keypoints, "'keypoints' has 48 numbers, COCO person keypoints have 51"),
    (_bad_segmentation, "unreadable 'segmentation'"),
])
def test_eval_refuses_a_bad_annotation_file_before_predicting(coco_sample, tmp_path, make, message):
    annotations = make(coco_sample, tmp_path)
    status, stderr, tensorflow = run_program('eval', ['--oracle', '--annotations', annotations, '--images',
                                                      coco_sample['val_images']], tmp_path)
    assert status == 2 and message in stderr and not tensorflow, stderr
    assert stderr.startswith('eval.py: error: ') and len(stderr.strip().splitlines()) == 1, stderr


def test_eval_refuses_an_unusable_output_before_predicting(coco_sample, tmp_path):
    blocker = tmp_path / 'a_file'
    blocker.write_text('x')
    data = ['--annotations', coco_sample['val_annotations'], '--images', coco_sample['val_images']]
    for output, message in ((str(tmp_path), 'is a folder'), (str(blocker / 'results.json'), 'cannot be written')):
        status, stderr, tensorflow = run_program('eval', ['--checkpoint', 'x', '--output', output] + data, tmp_path)
        assert status == 2 and message in stderr and output.rsplit('/', 1)[0] in stderr and not tensorflow, stderr
        assert len(stderr.strip().splitlines()) == 1, stderr


def test_demo_refuses_bad_sizes_and_outputs_before_the_model(coco_sample, tmp_path):
    image = os.path.join(coco_sample['val_images'], '000000000785.jpg')
    blocker = tmp_path / 'a_file'
    blocker.write_text('x')
    checkpoint = str(tmp_path / 'model.ckpt-1')  # found without TensorFlow; never read: every case stops first
    open(checkpoint + '.index', 'w').close()
    for extra, message in ((['--longer-side', '1'], '--longer-side must be at least 2 px'),
                           (['--scales', '401', '0'], '--scales must be longer sides in px (integers >= 2), got 0'),
                           (['--output', str(blocker)], '--output folder %s cannot be written' % blocker),
                           (['--output', str(blocker / 'sub')], '--output folder %s/sub cannot' % blocker)):
        status, stderr, tensorflow = run_program('demo', [image, '--checkpoint', checkpoint] + extra, tmp_path)
        assert status == 2 and message in stderr and not tensorflow, (extra, stderr)
        assert stderr.strip().splitlines()[-1].startswith('demo.py') or 'usage:' in stderr, stderr


def test_demo_full_disk_leaves_no_partial_file_and_names_the_input(coco_sample, inference_checkpoint, tmp_path,
                                                                   monkeypatch, capsys):
    """The JSON write fails halfway (no space left): the input is skipped by name, nothing half-written stays."""
    image = os.path.join(coco_sample['val_images'], '000000000785.jpg')
    real_dump = json.dump

    def disk_full(record, f, **kwargs):
        f.write(json.dumps(record)[:100])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(json, 'dump', disk_full)
    out = tmp_path / 'out'
    status = demo.main([image, '--checkpoint', inference_checkpoint, '--output', str(out), '--longer-side', '65'])
    monkeypatch.setattr(json, 'dump', real_dump)
    stderr = capsys.readouterr().err
    assert status == 1 and 'SKIPPED %s: [Errno %d]' % (image, errno.ENOSPC) in stderr, stderr
    for name in os.listdir(str(out)):
        assert not name.endswith('.json') and 'partial' not in name, name
        assert os.path.getsize(str(out / name)) > 0, name
