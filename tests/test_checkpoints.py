"""checkpoints.py owns a train dir without TensorFlow: the run's settings come back as a settings.Settings
(the run's model values over a base, what inference builds the network with), and a folder that is no train
dir is named in the error. Finding checkpoints is covered in
test_inference.py (find, latest), restoring in test_train.py and test_reliability.py, the backbone's prefix in
test_resnet.py.
"""
import json
import os

import pytest

import checkpoints
import settings


def write_run(train_dir, values):
    os.makedirs(train_dir, exist_ok=True)
    with open(os.path.join(train_dir, checkpoints.CONFIG_SNAPSHOT), 'w') as f:
        json.dump({'config': values, 'argv': ['train.py'], 'start_step': 0}, f)


def test_run_settings_lay_the_run_model_values_over_the_base(tmp_path):
    run = str(tmp_path / 'run')
    # A run trained with R=16 on ResNet-50, from before LONG_SELF_REFINEMENT_STEPS existed, with another
    # decoding threshold (not a model value: the base decides it).
    write_run(run, {'RADIUS': 16.0, 'BACKBONE_DEPTH': 50, 'PEAK_THRESHOLD': 0.5, 'INTERMEDIATE_SUPERVISION': False})
    base = settings.defaults().replace(PEAK_THRESHOLD=0.2, EVAL_OUTPUT_STRIDE=16)
    options = checkpoints.run_settings(run, base)
    assert isinstance(options, settings.Settings)
    assert (options.RADIUS, options.BACKBONE_DEPTH, options.INTERMEDIATE_SUPERVISION) == (16.0, 50, False)
    assert options.LONG_SELF_REFINEMENT_STEPS == checkpoints.MODEL_CONFIG_BEFORE['LONG_SELF_REFINEMENT_STEPS']
    assert (options.PEAK_THRESHOLD, options.EVAL_OUTPUT_STRIDE) == (0.2, 16)
    assert base.RADIUS == settings.defaults().RADIUS  # the base itself is unchanged
    # Without a base: config.py's values under the run's.
    defaults = checkpoints.run_settings(run)
    assert defaults.RADIUS == 16.0 and defaults.PEAK_THRESHOLD == settings.defaults().PEAK_THRESHOLD


def test_the_snapshot_is_read_whole_and_its_model_values_taken(tmp_path):
    run = str(tmp_path / 'run')
    write_run(run, {'BATCH_NORM_EPSILON': 1e-3, 'REFINEMENT_STEPS': 1})
    options = checkpoints.run_settings(run)
    assert options.BATCH_NORM_EPSILON == 1e-3 and options.REFINEMENT_STEPS == 1
    assert checkpoints.read_snapshot(run)['argv'] == ['train.py']
    assert checkpoints.read_snapshot(str(tmp_path)) is None


def test_a_folder_without_config_json_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match='%s is not a train.py train dir' % tmp_path):
        checkpoints.run_settings(str(tmp_path))
    assert checkpoints.has_checkpoint(str(tmp_path)) is False and checkpoints.checkpoint_step(str(tmp_path)) is None
