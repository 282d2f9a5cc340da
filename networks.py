"""The networks the Predictor runs: anything with a `stride` attribute and `__call__(image)` -> dict name ->
float32 [H', W', C] (no batch axis, the names of heads.OUTPUTS) for a uint8 [H, W, 3] image of
n*stride+1 sides:
  CheckpointNetwork  a train.py checkpoint in a tf.compat.v1 Session (Polyak averages restored)
  SavedModelNetwork  export_model.py's SavedModel (tf.compat.v1.saved_model loader)
  FrozenGraphNetwork export_model.py's frozen GraphDef
(oracle.py adds the ground truth's.) The three run the graph `build_inference_graph` makes: input 'image' uint8
[H, W, 3] or [1, H, W, 3] of any size, padding and preprocessing inside, outputs 'outputs/<name>' [1, H', W', C].

The layout of an export folder is named here, where it is read (export_model.py writes it).
"""
import json
import os

import checkpoints
import grid
import heads
import settings

INPUT_NAME = 'image'  # graph input: uint8 [H, W, 3] or [1, H, W, 3]
OUTPUT_SCOPE = 'outputs'  # graph outputs are 'outputs/<name>', name in OUTPUT_NAMES
OUTPUT_NAMES = heads.OUTPUTS
# An export folder (export_model.py)
SIGNATURE_NAME = 'serving_default'
SAVED_MODEL = 'saved_model'
FROZEN_GRAPH = 'frozen_graph.pb'
INFO = 'export_info.json'


def _tf():
    import tensorflow.compat.v1 as tf  # late: reading an export's info must not wait for TF
    tf.disable_eager_execution()
    return tf


def saved_model_dir(export_dir):
    return os.path.join(export_dir, SAVED_MODEL)


def frozen_graph_path(export_dir):
    return os.path.join(export_dir, FROZEN_GRAPH)


def read_info(export_dir):
    """export_info.json of an export folder: dict. FileNotFoundError if it is not one."""
    path = os.path.join(export_dir, INFO)
    if not os.path.isfile(path):
        raise FileNotFoundError('%s not found: %s is not an export_model.py folder' % (path, export_dir))
    with open(path) as f:
        return json.load(f)


def build_inference_graph(stride=None, depth=None, options=None):
    """The inference network in the default graph.

    Input placeholder 'image': uint8 [H, W, 3] or [1, H, W, 3], any H, W >= 1. Inside: padding bottom/right
    with options.PAD_VALUE to n*stride+1 sides, model.preprocess, model.build_model(is_training=False) at
    `stride` (default options.EVAL_OUTPUT_STRIDE) without the intermediate heads, with the model settings of
    `options` (settings.Settings; None: config.py's).
    Returns (image placeholder, dict name -> float32 [1, H', W', C] tensors named 'outputs/<name>').
    """
    options = settings.resolve(options)
    tf = _tf()
    import model
    stride = options.EVAL_OUTPUT_STRIDE if stride is None else int(stride)
    image = tf.placeholder(tf.uint8, shape=None, name=INPUT_NAME)
    with tf.name_scope('prepare'):
        shape = tf.shape(image)
        rank = tf.rank(image)
        is_rgb = tf.logical_and(tf.logical_or(tf.equal(rank, 3), tf.logical_and(tf.equal(rank, 4),
                                                                               tf.equal(shape[0], 1))),
                                tf.equal(shape[-1], 3))
        check = tf.Assert(is_rgb, ['image must be uint8 [H, W, 3] or [1, H, W, 3], got shape', shape])
        with tf.control_dependencies([check]):
            height, width = shape[-3], shape[-2]
            batch = tf.reshape(image, tf.stack([1, height, width, 3]))
        batch.set_shape([1, None, None, 3])
        pad_value = tf.constant([float(v) for v in options.PAD_VALUE], tf.float32)
        pad_h, pad_w = grid.pad_amount(height, stride), grid.pad_amount(width, stride)
        padded = tf.pad(tf.cast(batch, tf.float32) - pad_value, [[0, 0], [0, pad_h], [0, pad_w], [0, 0]])
        padded = padded + pad_value
    outputs = model.build_model(padded, is_training=False, output_stride=stride, depth=depth, intermediate=False,
                                options=options)
    with tf.name_scope(OUTPUT_SCOPE + '/'):  # trailing slash: exactly this scope, never 'outputs_1'
        named = {name: tf.identity(outputs[name], name=name) for name in OUTPUT_NAMES}
    return image, named


def output_tensor_names():
    """Graph names of the outputs: dict name -> 'outputs/<name>:0'."""
    return {name: '%s/%s:0' % (OUTPUT_SCOPE, name) for name in OUTPUT_NAMES}


def _session_config(threads=None):
    tf = _tf()
    kwargs = {}
    if threads:
        kwargs.update(intra_op_parallelism_threads=threads, inter_op_parallelism_threads=threads)
    return tf.ConfigProto(allow_soft_placement=True, **kwargs)


class _GraphNetwork(object):
    """Runs an inference graph: the checkpoint's, or an imported one (SavedModel or frozen GraphDef) whose
    input is 'image' and outputs 'outputs/<name>'. Call: uint8 [H, W, 3] -> dict name -> float32 [H', W', C]
    (padding to n*stride+1 happens inside the graph)."""

    def _bind(self, input_name, output_names):
        self.image = self.graph.get_tensor_by_name(input_name)
        self.outputs = {name: self.graph.get_tensor_by_name(tensor)[0] for name, tensor in output_names.items()}

    def __call__(self, image):
        return self.session.run(self.outputs, {self.image: image})

    def close(self):
        self.session.close()


class CheckpointNetwork(_GraphNetwork):
    """The network of a train.py checkpoint, Polyak-averaged weights, in its own graph and session.

    Args:
      checkpoint: train dir or checkpoint prefix (checkpoints.find; None: the newest under config's folders).
      stride: output stride (default options.EVAL_OUTPUT_STRIDE).
      random_weights: no checkpoint: random initial weights with the model settings of `options` (benchmarks).
      depth: with random_weights, the ResNet depth (default options.BACKBONE_DEPTH).
      threads: TensorFlow intra/inter-op threads (None: TensorFlow's default, all cores).
      finalize: freeze the graph once built (False lets export_model.py add its savers).
      options: settings.Settings the run's model settings are laid over (None: config.py's).
    Attributes: stride, checkpoint (prefix or None), options (the Settings the network was built with),
      settings (checkpoints.checkpoint_settings), warnings, graph, session, image (the input placeholder),
      batch_outputs (name -> [1, H', W', C] tensors).
    A folder's newest checkpoint that vanishes while the graph is built (deleted by a training still writing
    there) or cannot be read (truncated) gives way to the next newest readable one (a warning if damaged).
    Raises checkpoints.NoCheckpointError (before building anything) and ValueError for a checkpoint that does
    not fit or that cannot be read (checkpoints.UnreadableCheckpointError, also when no checkpoint of the
    folder can).
    """

    def __init__(self, checkpoint=None, stride=None, random_weights=False, depth=None, threads=None,
                 finalize=True, options=None):
        options = settings.resolve(options)
        self.stride = options.EVAL_OUTPUT_STRIDE if stride is None else int(stride)
        if random_weights:
            self.checkpoint = None
            self.settings = {'options': options if depth is None else options.replace(BACKBONE_DEPTH=depth),
                             'input_size': None, 'radius': None, 'step': -1, 'warnings': []}
        else:
            self.checkpoint = checkpoints.find(checkpoint)
            # the folder's config.json: any of its checkpoints
            self.settings = checkpoints.checkpoint_settings(self.checkpoint, options)
        self.options = self.settings['options']
        self.warnings = list(self.settings['warnings'])
        tf = _tf()
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.image, self.batch_outputs = build_inference_graph(self.stride, options=self.options)
            self.outputs = {name: tensor[0] for name, tensor in self.batch_outputs.items()}
            self.session = tf.Session(config=_session_config(threads))
            if random_weights:
                self.session.run(tf.global_variables_initializer())
            else:
                self._restore(checkpoint)
        if finalize:  # export_model.py adds its savers to the graph
            self.graph.finalize()

    def _restore(self, asked):
        """Restores the newest readable checkpoint of the folder `asked` names (None: the folder
        checkpoints.find chose): a training may delete or be writing its newest one meanwhile, and a damaged
        one falls back to the previous with a warning. A prefix asked for by name is restored or fails."""
        source = asked if asked and os.path.isdir(asked) else (os.path.dirname(self.checkpoint) if not asked
                                                                else self.checkpoint)

        def restore(prefix):
            self.warnings += checkpoints.restore_polyak_weights(self.session, prefix)

        self.checkpoint, _ = checkpoints.restore_newest_readable(source, restore, self.warnings.append)
        if self.checkpoint is None:
            raise checkpoints.NoCheckpointError('no checkpoint left in %s.\n%s'
                                                % (source, checkpoints.how_to_get_a_checkpoint()))
        self.settings['step'] = checkpoints.step_of(self.checkpoint)

    @property
    def depth(self):
        return self.options.BACKBONE_DEPTH


class SavedModelNetwork(_GraphNetwork):
    """export_model.py's SavedModel, through its 'serving_default' signature; stride, settings['input_size'] and
    settings['radius'] from export_info.json."""

    def __init__(self, export_dir, stride=None, threads=None):
        tf = _tf()
        info = read_info(export_dir)
        self.stride = info['stride'] if stride is None else int(stride)
        self.settings = {'input_size': info.get('training_input_size'), 'radius': info.get('radius')}
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.session = tf.Session(config=_session_config(threads))
            meta_graph = tf.saved_model.loader.load(self.session, [tf.saved_model.tag_constants.SERVING],
                                                    saved_model_dir(export_dir))
        signature = meta_graph.signature_def[SIGNATURE_NAME]
        self._bind(signature.inputs[INPUT_NAME].name,
                   {name: signature.outputs[name].name for name in OUTPUT_NAMES})


class FrozenGraphNetwork(_GraphNetwork):
    """export_model.py's frozen GraphDef (weights as constants); stride, settings['input_size'] and
    settings['radius'] from export_info.json beside it."""

    def __init__(self, export_dir, stride=None, threads=None):
        tf = _tf()
        info = read_info(export_dir)
        self.stride = info['stride'] if stride is None else int(stride)
        self.settings = {'input_size': info.get('training_input_size'), 'radius': info.get('radius')}
        graph_def = tf.GraphDef()
        with open(frozen_graph_path(export_dir), 'rb') as f:
            graph_def.ParseFromString(f.read())
        self.graph = tf.Graph()
        with self.graph.as_default():
            tf.import_graph_def(graph_def, name='')
            self.session = tf.Session(config=_session_config(threads))
        self._bind(INPUT_NAME + ':0', output_tensor_names())
