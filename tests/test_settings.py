"""settings.Settings: one run's values, frozen, picklable, made from config.py, a preset and overrides."""
import pickle

import pytest

import config
import settings


def test_defaults_are_config_values():
    options = settings.defaults()
    assert options.RADIUS == config.RADIUS
    assert options.KEYPOINTS == config.KEYPOINTS
    assert 'QUICKSTART' in dir(options)


def test_defaults_follow_a_patched_config(monkeypatch):
    monkeypatch.setattr(config, 'RADIUS', 7.0)
    assert settings.defaults().RADIUS == 7.0


def test_frozen_and_replace_makes_a_copy():
    options = settings.defaults()
    with pytest.raises(AttributeError, match='frozen'):
        options.RADIUS = 1.0
    other = options.replace(RADIUS=config.RADIUS + 1)
    assert other.RADIUS == config.RADIUS + 1 and options.RADIUS == config.RADIUS
    with pytest.raises(ValueError, match='RADIU'):
        options.replace(RADIU=1.0)
    with pytest.raises(AttributeError, match='RADIU'):
        options.RADIU


def test_make_applies_preset_then_overrides():
    options = settings.make(preset='quickstart', overrides={'NUM_STEPS': 3})
    assert options.RADIUS == config.QUICKSTART['RADIUS'] and options.NUM_STEPS == 3
    assert options.INPUT_SIZE == config.QUICKSTART['INPUT_SIZE']
    with pytest.raises(ValueError, match='unknown preset'):
        settings.make(preset='fast')
    with pytest.raises(ValueError, match='NUM_STEP'):
        settings.make(overrides={'NUM_STEP': 3})


def test_pickle_and_json_round_trip():
    options = settings.make(overrides={'SCALE_RANGE': (1.0, 2.0)})
    assert pickle.loads(pickle.dumps(options)) == options
    snapshot = options.to_json()
    assert snapshot['SCALE_RANGE'] == [1.0, 2.0]
    assert settings.differences(snapshot, settings.defaults().to_json()) == [
        ('SCALE_RANGE', [1.0, 2.0], list(config.SCALE_RANGE))]


def test_pick_takes_the_argument_unless_it_is_none():
    options = settings.make(overrides={'NUM_STEPS': 5})
    assert options.pick(None, 'NUM_STEPS') == 5
    assert options.pick(0, 'NUM_STEPS') == 0  # a falsy argument is still an argument
    with pytest.raises(AttributeError, match='NUM_STEP'):
        options.pick(None, 'NUM_STEP')
