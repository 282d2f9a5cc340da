"""Keypoint AP of a train.py checkpoint on COCO-format images: the quickstart's figure in the README.

Runs the network with the Polyak-averaged weights (train.restore_averaged_weights) at the evaluation stride
(config.EVAL_OUTPUT_STRIDE), each image scaled so its longer side is --longer-side (default: the run's
INPUT_SIZE, the scale the model was trained at) and padded bottom/right to n*stride+1; decodes with
post_proc.decode and scores with pycocotools' COCOeval through eval.py's shared path (eval.run).

Usage:
  python bench/quickstart_ap.py [--train-dir model/quickstart] [--annotations synthetic val json]
                                [--images synthetic/val2017] [--longer-side N] [--max-images N]
Last line: `quickstart: keypoint AP <a> (segm AP <b>) on <n> images, <train dir> step <s>`
"""
import argparse
import os
import sys

import cv2
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import config  # noqa: E402
import eval as evaluation  # noqa: E402
import post_proc  # noqa: E402
import train  # noqa: E402


class NetworkPredictor(evaluation.Predictor):
    """The trained network as an eval.py predictor: one image in, decodable outputs (no batch axis) out."""

    def __init__(self, train_dir, longer_side=None, stride=None):
        import tensorflow.compat.v1 as tf
        import model
        self.stride = config.EVAL_OUTPUT_STRIDE if stride is None else stride
        run_config = train.load_run_config(train_dir)
        self.longer_side = run_config['INPUT_SIZE'] if longer_side is None else longer_side
        self.graph = tf.Graph()
        with self.graph.as_default(), train.config_overrides(train.model_overrides(train_dir)):
            self.images = tf.placeholder(tf.uint8, [1, None, None, 3], name='images')
            outputs = model.build_model(self.images, is_training=False, output_stride=self.stride,
                                        intermediate=False)
            self.outputs = {name: outputs[name][0] for name, _ in post_proc.OUTPUT_CHANNELS}
            self.sess = tf.Session()
            self.checkpoint = train.restore_averaged_weights(self.sess, train_dir)
        self.step = int(self.checkpoint.rsplit('-', 1)[1])

    def predict(self, example):
        image = example['image']
        height, width = image.shape[:2]
        scale = self.longer_side / float(max(height, width))
        resized = cv2.resize(image, (max(1, int(round(width * scale))), max(1, int(round(height * scale)))),
                             interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        # The source image is the top-left part of the input: pad bottom/right to n*stride+1.
        pad_h = (-(resized.shape[0] - 1)) % self.stride
        pad_w = (-(resized.shape[1] - 1)) % self.stride
        padded = cv2.copyMakeBorder(resized, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT,
                                    value=tuple(float(v) for v in config.PAD_VALUE))
        outputs = self.sess.run(self.outputs, {self.images: padded[None]})
        return outputs, padded.shape[:2], scale


def main(argv=None):
    synthetic_dir = config.SYNTHETIC_DIR
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--train-dir', default=config.QUICKSTART['TRAIN_DIR'])
    parser.add_argument('--annotations',
                        default=os.path.join(synthetic_dir, 'annotations', 'person_keypoints_val2017.json'))
    parser.add_argument('--images', default=os.path.join(synthetic_dir, 'val2017'))
    parser.add_argument('--longer-side', type=int, help='input size of the longer image side (default: the '
                                                         "run's INPUT_SIZE)")
    parser.add_argument('--stride', type=int, default=config.EVAL_OUTPUT_STRIDE)
    parser.add_argument('--max-images', type=int)
    args = parser.parse_args(argv)
    predictor = NetworkPredictor(args.train_dir, args.longer_side, args.stride)
    print('%s step %d, longer side %d px, output stride %d' % (predictor.checkpoint, predictor.step,
                                                              predictor.longer_side, predictor.stride))
    summary = evaluation.run(predictor, args.annotations, args.images, max_images=args.max_images,
                             progress=False)
    print('quickstart: keypoint AP %.3f (segm AP %.3f) on %d images, %s step %d'
          % (summary['keypoints_ap'], summary['segm_ap'], len(summary['image_ids']), args.train_dir,
             predictor.step))
    return 0


if __name__ == '__main__':
    sys.exit(main())
