"""Shared test helpers: where the real data the tests read is, and how its absence is treated.

Two folders outside the clone hold real data: the COCO sample (`config.COCO_SAMPLE_DIR`) and the TF-Slim ResNet-v2
reference (`slim_reference` beside it; the environment variable `PERSONLAB_SHARED` moves both).
Tests that need them skip with a reason when they are missing, so a fresh clone passes; under CI (CI=true) a
missing folder fails instead, so that nothing skips silently there.
"""
import os
import subprocess
import sys

import pytest

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO_DIR not in sys.path:
    sys.path.insert(0, REPO_DIR)

import config  # noqa: E402

COCO_SAMPLE_DIR = config.COCO_SAMPLE_DIR
SLIM_REFERENCE_DIR = os.path.join(os.path.dirname(COCO_SAMPLE_DIR), 'slim_reference')


def require_shared(path):
    """Returns `path` if it exists; otherwise skips the test (fails under CI=true)."""
    if os.path.exists(path):
        return path
    message = '%s is missing: these tests need the real data folder (config.COCO_SAMPLE_DIR)' % path
    if os.environ.get('CI', '').lower() == 'true':
        pytest.fail(message + ' (CI=true: missing real data is a failure)')
    pytest.skip(message)


@pytest.fixture(scope='session')
def coco_sample():
    """Paths of the real COCO sample: dict with train/val images and annotation files."""
    root = require_shared(COCO_SAMPLE_DIR)
    return {
        'root': root,
        'train_images': os.path.join(root, 'train2017'),
        'train_annotations': os.path.join(root, 'annotations', 'person_keypoints_train2017.json'),
        'val_images': os.path.join(root, 'val2017'),
        'val_annotations': os.path.join(root, 'annotations', 'person_keypoints_val2017.json'),
    }


@pytest.fixture(scope='session')
def slim_reference():
    """Folder of the TF-Slim ResNet-v2 reference (manifests, make_checkpoint.py, reference outputs)."""
    return require_shared(SLIM_REFERENCE_DIR)


@pytest.fixture(scope='session')
def make_slim_checkpoint(slim_reference, tmp_path_factory):
    """depth -> prefix of the checkpoint the reference's make_checkpoint.py writes from that depth's
    manifest (TF-Slim names, deterministic well-scaled weights; made once per session and depth)."""
    made = {}

    def make(depth):
        if depth not in made:
            prefix = str(tmp_path_factory.mktemp('slim_%d' % depth) / ('resnet_v2_%d.ckpt' % depth))
            command = [sys.executable, os.path.join(slim_reference, 'make_checkpoint.py'),
                       os.path.join(slim_reference, 'resnet_v2_%d.manifest' % depth), prefix]
            result = subprocess.run(command, capture_output=True, text=True)
            assert result.returncode == 0, 'make_checkpoint.py failed:\n%s' % result.stderr[-3000:]
            made[depth] = prefix
        return made[depth]

    return make


@pytest.fixture(scope='session')
def inference_checkpoint(tmp_path_factory):
    """Train dir of a small checkpoint in train.py's layout (ResNet-v2-50, tamed random weights, Polyak
    averages that differ from the raw weights, config.json), written once per session by
    tests/checkpoint_maker.py for the inference tests (demo, eval --checkpoint, export)."""
    import checkpoint_maker
    train_dir = str(tmp_path_factory.mktemp('inference_checkpoint'))
    checkpoint_maker.write_checkpoint(train_dir)
    return train_dir
