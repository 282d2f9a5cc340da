"""Exports a trained PersonLab network for serving: a SavedModel and a frozen graph, Polyak-averaged weights.

    python export_model.py                                   # newest checkpoint -> model/export/
    python export_model.py --checkpoint model/quickstart --output /tmp/personlab_export [--stride 8]

Writes, in the output folder (config.EXPORT_DIR by default):
  saved_model/        tf.compat.v1.saved_model (tag 'serve'), signature 'serving_default':
                        input  'image'  uint8 [H, W, 3] or [1, H, W, 3] RGB, any size
                        outputs 'heatmaps' [1,H',W',K], 'short_offsets' [1,H',W',2K], 'mid_offsets' [1,H',W',2E],
                                'long_offsets' [1,H',W',2K], 'segmentation' [1,H',W',1]; float32, probabilities
                                and offsets in input px, on the output grid of the exported stride
  frozen_graph.pb     the same graph as one GraphDef with the weights as constants: feed 'image:0', fetch
                      'outputs/<name>:0'
  export_info.json    stride, depth, checkpoint, step, tensor names, pad value, the training input size and
                      disk radius (decoding needs the radius the model was trained with)

Preprocessing is inside the graph (padding bottom/right with config.PAD_VALUE to n*stride+1 sides, so any size
works, and the [-1, 1] scaling); an input of H x W gives H' = (H_pad - 1) / stride + 1 rows. Resizing is
left to the client (serve_example.py does it with rescale.prepare, then decodes with post_proc.decode).
The weights are the checkpoint's Polyak averages, exactly what demo.py and eval.py run
(tests/test_export.py checks the outputs equal theirs).
"""
import argparse
import json
import os
import shutil
import sys

import checkpoints
import config
import inference
import machine
import networks
import settings

def export(checkpoint=None, output_dir=None, stride=None, overwrite=True, log=inference.log, options=None):
    """Writes the SavedModel, the frozen graph and export_info.json of a checkpoint.

    Args:
      checkpoint: train dir or checkpoint prefix (None: the newest, checkpoints.find).
      output_dir: default config.EXPORT_DIR.
      stride: output stride of the exported network (default config.EVAL_OUTPUT_STRIDE).
      overwrite: replace an existing saved_model/ (SavedModelBuilder refuses to write into one).
      options: settings.Settings the run's model settings are laid over (None: config.py's).
    Returns dict 'saved_model', 'frozen_graph', 'info' (paths) and 'checkpoint'.
    Raises checkpoints.NoCheckpointError, ValueError (checkpoint does not fit), FileExistsError.
    """
    output_dir = config.EXPORT_DIR if output_dir is None else output_dir
    network = networks.CheckpointNetwork(checkpoint, stride=stride, finalize=False, options=options)
    for warning in network.warnings:
        log('export_model: WARNING: %s' % warning)
    try:
        tf = networks._tf()
        os.makedirs(output_dir, exist_ok=True)
        saved = networks.saved_model_dir(output_dir)
        if os.path.exists(saved):
            if not overwrite:
                raise FileExistsError('%s exists (use --overwrite)' % saved)
            shutil.rmtree(saved)
        with network.graph.as_default():
            outputs = network.batch_outputs
            signature = tf.saved_model.signature_def_utils.predict_signature_def(
                inputs={networks.INPUT_NAME: network.image}, outputs=outputs)
            builder = tf.saved_model.Builder(saved)
            builder.add_meta_graph_and_variables(network.session, [tf.saved_model.tag_constants.SERVING],
                                                 signature_def_map={networks.SIGNATURE_NAME: signature},
                                                 strip_default_attrs=True)
            builder.save()
            log('export_model: wrote %s' % saved)
            output_nodes = [tensor.op.name for tensor in outputs.values()]
            frozen = tf.graph_util.convert_variables_to_constants(
                network.session, network.graph.as_graph_def(), output_nodes)
            # Only what the outputs need: no savers, no initialisers.
            frozen = tf.graph_util.extract_sub_graph(frozen, output_nodes)
        frozen_path = networks.frozen_graph_path(output_dir)
        with open(frozen_path, 'wb') as f:
            f.write(frozen.SerializeToString())
        log('export_model: wrote %s (%.1f MB)' % (frozen_path, os.path.getsize(frozen_path) / 1e6))
        info = {
            'checkpoint': network.checkpoint,
            'step': network.settings['step'],
            'depth': network.depth,
            'stride': network.stride,
            'training_input_size': network.settings['input_size'],
            'radius': network.settings['radius'],  # decoding uses the run's disk radius (inference.Predictor)
            'pad_value': list(network.options.PAD_VALUE),
            'input': networks.INPUT_NAME + ':0',
            'outputs': networks.output_tensor_names(),
            'signature': networks.SIGNATURE_NAME,
            'keypoints': list(config.KEYPOINTS),
            'directed_edges': [list(edge) for edge in config.DIRECTED_EDGES],
        }
        info_path = os.path.join(output_dir, networks.INFO)
        with open(info_path, 'w') as f:
            json.dump(info, f, indent=1)
    finally:
        network.close()
    return {'saved_model': saved, 'frozen_graph': frozen_path, 'info': info_path, 'checkpoint': network.checkpoint}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--checkpoint', help='train dir or checkpoint prefix (default: the newest under %s, '
                                             'then under %s)' % (config.TRAIN_DIR, config.MODEL_DIR))
    parser.add_argument('--output', default=config.EXPORT_DIR, help='export folder (config.EXPORT_DIR)')
    parser.add_argument('--stride', type=int, choices=(8, 16, 32), default=config.EVAL_OUTPUT_STRIDE,
                        help='output stride of the exported network (config.EVAL_OUTPUT_STRIDE)')
    parser.add_argument('--no-overwrite', action='store_true', help='fail if the output folder holds an export')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        paths = export(args.checkpoint, args.output, args.stride, overwrite=not args.no_overwrite,
                       options=settings.defaults())
    except checkpoints.NoCheckpointError as error:
        print('export_model.py: %s' % error, file=sys.stderr)
        return 2
    except (ValueError, FileExistsError) as error:
        print('export_model.py: error: %s' % error, file=sys.stderr)
        return 2
    print('exported %s -> %s and %s' % (paths['checkpoint'], paths['saved_model'], paths['frozen_graph']))
    return 0


if __name__ == '__main__':
    machine.quiet_tensorflow()  # before main() imports TensorFlow
    sys.exit(main())
