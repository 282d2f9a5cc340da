"""The settings of one run, built once and passed on (no TensorFlow).

config.py is what users edit: the defaults, one comment each. What a program runs with is a `Settings` made from
those defaults, a preset, the command line and, for a trained model, the run's config.json, then handed to the
code that needs it (DeepLab builds `ModelOptions` once and passes it to `model.predict_labels`):

    options = settings.make(preset='quickstart', overrides={'NUM_STEPS': 300})
    outputs = model.build_model(images, options=options)
    options.RADIUS                                   # 16.0
    options.replace(RADIUS=32.0)                     # a new Settings; options itself never changes

A Settings is frozen and picklable: it crosses into data worker processes and out to a checkpoint's config.json
unchanged. No code sets attributes of the config module at run time.
"""
import json

import config

# --preset name -> the dict of config.py that overrides the defaults
PRESETS = {'quickstart': 'QUICKSTART', 'overfit': 'OVERFIT'}


def _is_setting(name):
    return name.isupper() and not name.startswith('_')


def config_values(module=config):
    """Every upper-case value of a config module as it is now: dict NAME -> value."""
    return {name: getattr(module, name) for name in dir(module) if _is_setting(name)}


class Settings:
    """Every upper-case name of config.py with one run's value, read as attributes (`options.RADIUS`).

    Frozen: `replace(NAME=value, ...)` returns a new Settings; an unknown name is an error, so a typo never
    silently trains with the default.
    """
    __slots__ = ('_values',)

    def __init__(self, values):
        object.__setattr__(self, '_values', dict(values))

    def __getattr__(self, name):
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError('no setting %r (see config.py)' % name) from None

    def __setattr__(self, name, value):
        raise AttributeError('Settings are frozen: use .replace(%s=...)' % name)

    def __reduce__(self):
        return Settings, (self._values,)

    def __eq__(self, other):
        return isinstance(other, Settings) and self._values == other._values

    __hash__ = None  # values may be lists or dicts

    def __repr__(self):
        return 'Settings(%d values)' % len(self._values)

    def __dir__(self):
        return sorted(self._values)

    def replace(self, **changes):
        """A copy with some values changed: Settings."""
        check_names(changes, self._values)
        values = dict(self._values)
        values.update(changes)
        return Settings(values)

    def pick(self, value, name):
        """`value`, or this run's setting `name` when `value` is None (an argument left to its default)."""
        return getattr(self, name) if value is None else value

    def as_dict(self):
        """dict NAME -> value (a copy)."""
        return dict(self._values)

    def to_json(self):
        """JSON-compatible values (tuples become lists, anything else unencodable its repr): dict NAME -> value."""
        return json.loads(json.dumps(self._values, default=repr))


def check_names(values, known):
    """Raises ValueError naming the keys of `values` that are not in `known`."""
    unknown = sorted(name for name in values if name not in known)
    if unknown:
        raise ValueError('unknown config names: %s (see config.py)' % ', '.join(unknown))


def defaults():
    """config.py's values as they are now: Settings."""
    return Settings(config_values())


def preset_overrides(name):
    """The overrides of a preset (config.QUICKSTART for 'quickstart'): dict NAME -> value."""
    if name not in PRESETS:
        raise ValueError('unknown preset %r; known presets: %s' % (name, ', '.join(sorted(PRESETS))))
    return dict(getattr(config, PRESETS[name]))


def make(preset=None, overrides=None, base=None):
    """The settings of a run: `base` (default: config.py's) with a preset's values, then `overrides`: Settings."""
    options = defaults() if base is None else base
    changes = preset_overrides(preset) if preset else {}
    changes.update(overrides or {})
    return options.replace(**changes)


def resolve(options=None):
    """`options`, or config.py's values when None (callers that were handed no settings): Settings."""
    return defaults() if options is None else options


def differences(saved, current):
    """Names whose values differ between two JSON snapshots (dicts): list of (name, saved value, current value)."""
    names = sorted(set(saved) | set(current))
    missing = '<absent>'
    return [(n, saved.get(n, missing), current.get(n, missing)) for n in names
            if saved.get(n, missing) != current.get(n, missing)]

