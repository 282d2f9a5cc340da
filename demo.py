"""PersonLab demo: people, their keypoints and instance masks in your images, folders and videos.

    python demo.py photo.jpg                            # newest checkpoint under model/ -> demo_result/
    python demo.py photos/ clip.mp4 --output out/       # every image and video of a folder, and a video
    python demo.py photo.jpg --longer-side 801          # input size (default: the model's training size)
    python demo.py photo.jpg --multi-scale              # config.EVAL_SCALES, merged before decoding
    python demo.py photo.jpg --scales 401 801 --debug   # two scales; heatmap, Hough and offset pictures
    python demo.py --preset quickstart                  # the quickstart model on synthetic validation images

For each image `name.ext` it writes, in the output folder (config.DEMO_OUTPUT_DIR by default):
  name_pose.jpg      the skeletons (plot.py) of the people scoring at least config.DEMO_PICTURE_MIN_SCORE
  name_masks.jpg     their instance masks, one colour per person
  name.json          {"image", "width", "height", "checkpoint", "longer_sides", "people": [{"score",
                     "mask_score", "keypoints": [[x, y, score] * 17] in source pixels, "mask": COCO RLE
                     {"size": [H, W], "counts": str}, "box": [x, y, w, h]}], ...}
  name_heatmaps.jpg, name_hough.jpg, name_offsets.jpg   with --debug
and for a video `clip.ext`: clip_pose.mp4 (skeletons and instance masks) and clip_frames/<frame>.json.

The network runs with the Polyak-averaged weights at config.EVAL_OUTPUT_STRIDE on the image resized so its
longer side is --longer-side (inference.py holds the whole path, shared with eval.py and the export).
Grey, RGBA, 16-bit and huge images are converted; a file that cannot be read, or an image too small to hold a
person, is reported and skipped, and the run goes on.
"""
import argparse
import colorsys
import json
import os
import sys
import time

import cv2
import numpy as np
from pycocotools import mask as mask_utils

import checkpoints
import config
import files
import images
import inference
import machine
import networks
import plot
import post_proc
import rescale
import settings

PICTURE_EXTENSION = '.jpg'


# ----------------------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------------------
def _extension(path):
    return os.path.splitext(path)[1].lower()


def is_video(path):
    return _extension(path) in config.VIDEO_EXTENSIONS


def list_inputs(paths, limit=None, log=inference.log):
    """Files to process: each path as given if it is a file, the image and video files of a folder (sorted,
    not recursive). Returns list of paths. Raises FileNotFoundError naming a path that does not exist."""
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise FileNotFoundError('input not found: %s' % ', '.join(missing))
    files = []
    for path in paths:
        if not os.path.isdir(path):
            files.append(path)
            continue
        names = sorted(n for n in os.listdir(path) if not n.startswith('.')
                       and os.path.isfile(os.path.join(path, n)))
        known = [n for n in names if _extension(n) in config.IMAGE_EXTENSIONS + config.VIDEO_EXTENSIONS]
        if len(known) < len(names):
            log('demo: %s: ignoring %d files that are neither images nor videos (config.IMAGE_EXTENSIONS, '
                'VIDEO_EXTENSIONS)' % (path, len(names) - len(known)))
        files.extend(os.path.join(path, n) for n in known)
    return files[:limit] if limit else files


def screen_inputs(paths):
    """Splits the inputs by their headers, before the model is loaded (seconds) for nothing: a video by its
    extension (config.VIDEO_EXTENSIONS) that OpenCV opens, else an image whose first bytes are an image
    format's (images.check_image_header). Returns (usable paths, [(path, why) refused])."""
    usable, refused = [], []
    for path in paths:
        try:
            if is_video(path):
                capture = cv2.VideoCapture(path)
                opened = capture.isOpened()
                capture.release()
                if not opened:
                    raise images.ImageReadError('%s cannot be opened as a video by OpenCV' % path)
            else:
                images.check_image_header(path)
            usable.append(path)
        except images.UnusableImageError as error:  # an image, but too large
            refused.append((path, str(error)))
        except images.ImageReadError as error:
            refused.append((path, '%s (nor a video: those need one of the extensions %s)'
                            % (error, ' '.join(config.VIDEO_EXTENSIONS)) if not is_video(path) else str(error)))
    return usable, refused


def output_stem(path, output_dir, taken):
    """Output path prefix for an input: <output>/<name without extension>, made unique within the run."""
    stem = os.path.splitext(os.path.basename(path))[0] or 'image'
    candidate, n = stem, 1
    while candidate in taken:
        n += 1
        candidate = '%s_%d' % (stem, n)
    taken.add(candidate)
    return os.path.join(output_dir, candidate)


# ----------------------------------------------------------------------------------------------------------
# Results
# ----------------------------------------------------------------------------------------------------------
def people_json(people):
    """JSON-ready list of people: keypoints [[x, y, score]] in source px, scores, mask as COCO RLE, box."""
    records = []
    for person in people:
        record = {'score': round(float(person['score']), 5),
                  'mask_score': round(float(person.get('mask_score', person['score'])), 5),
                  'keypoints': [[round(float(x), 2), round(float(y), 2), round(float(s), 5)]
                                for x, y, s in person['keypoints']]}
        mask = person.get('mask')
        if mask is not None:
            record['mask'] = inference.mask_rle(mask)
            record['box'] = [round(float(v), 1) for v in mask_utils.toBbox(record['mask'])]
        records.append(record)
    return records


def write_json(path, source, image_shape, prediction, predictor, network, extra=None):
    record = {
        'image': source,
        'width': int(image_shape[1]),
        'height': int(image_shape[0]),
        'checkpoint': getattr(network, 'checkpoint', None),
        'longer_sides': predictor.scales,
        'stride': predictor.stride,
        'radius': predictor.radius,
        'keypoint_names': list(config.KEYPOINTS),
        'people': people_json(prediction.people),
    }
    record.update(extra or {})
    with files.atomic_output(path) as partial, open(partial, 'w') as f:
        json.dump(record, f)


def count_people(count):
    """'1 person', '3 people'."""
    return '%d %s' % (count, 'person' if count == 1 else 'people')


def people_counts(people):
    """'5 people found, 3 drawn': the JSON keeps everyone, the pictures only those shown()."""
    return '%s found, %d drawn' % (count_people(len(people)), len(shown(people)))


def shown(people, min_score=None):
    """The people pictures show: score at least config.DEMO_PICTURE_MIN_SCORE (the JSON keeps everyone)."""
    min_score = config.DEMO_PICTURE_MIN_SCORE if min_score is None else min_score
    return [person for person in people if person['score'] >= min_score]


def pose_picture(image, people):
    """Skeletons and scores of the people shown over the image (plot.py), without their masks."""
    return plot.draw_people(image, [dict(person, mask=None) for person in shown(people)])


def masks_picture(image, people):
    """The instance masks of the people shown over the image, one colour per person (plot.py)."""
    return plot.overlay_masks(image, [person.get('mask') for person in shown(people)])


def offsets_picture(image, heatmaps, short_offsets, stride, threshold=None):
    """Short-range offsets as lines from every grid cell whose strongest heatmap exceeds `threshold`
    (config.DEBUG_OFFSET_THRESHOLD) to where its offset points, one colour per keypoint type."""
    threshold = config.DEBUG_OFFSET_THRESHOLD if threshold is None else threshold
    canvas = np.array(image, copy=True)
    kinds = heatmaps.argmax(axis=2)
    rows, cols = np.nonzero(heatmaps.max(axis=2) > threshold)
    kind = kinds[rows, cols]
    dx = short_offsets[rows, cols, 2 * kind]
    dy = short_offsets[rows, cols, 2 * kind + 1]
    shift = config.DEBUG_OFFSET_SUBPIXEL_BITS
    start = np.stack([cols * stride, rows * stride], axis=1).astype(np.float64)
    end = start + np.stack([dx, dy], axis=1)
    lines = np.round(np.stack([start, end], axis=1) * (1 << shift)).astype(np.int32)
    for k in np.unique(kind):
        hue = k / float(config.NUM_KEYPOINTS)
        colour = tuple(int(255 * c) for c in colorsys.hsv_to_rgb(hue, 0.9, 1.0))
        cv2.polylines(canvas, list(lines[kind == k]), False, colour, 1, cv2.LINE_AA, shift)
    tips = np.round(end).astype(np.int64)
    inside = (tips[:, 0] >= 0) & (tips[:, 1] >= 0) & (tips[:, 0] < canvas.shape[1]) & (tips[:, 1] < canvas.shape[0])
    canvas[tips[inside, 1], tips[inside, 0]] = 255  # the landing points
    return canvas


# --debug's pictures, <name>_<key>.jpg: what each shows (demo.py says it when it starts)
DEBUG_PICTURES = {'heatmaps': 'strongest keypoint heatmap', 'hough': 'Hough votes per keypoint type',
                  'offsets': 'short-range offsets'}


def debug_pictures(image, prediction, stride, options):
    """name -> RGB picture on the network's input at the decoding grid's scale, for each key of
    DEBUG_PICTURES: 'heatmaps' (maximum over the keypoint types), 'hough' (Hough maps as decoding computes them
    with `options`, the predictor's decode_options(), post_proc.hough_voting) and 'offsets' (short-range
    offsets)."""
    padded, _ = rescale.prepare(image, max(prediction.geometry.input_shape), stride)
    maps = prediction.maps
    cell = post_proc.hough_cell(options.RADIUS, options)
    hough = post_proc.hough_voting(maps['heatmaps'], maps['short_offsets'], stride, cell, radius=options.RADIUS,
                                   options=options)
    return {
        'heatmaps': plot.heatmap_view(padded, maps['heatmaps'], stride),
        'hough': plot.hough_view(padded, hough, cell),
        'offsets': offsets_picture(padded, maps['heatmaps'], maps['short_offsets'], stride),
    }


# ----------------------------------------------------------------------------------------------------------
# Runs
# ----------------------------------------------------------------------------------------------------------
class Demo(object):
    """One predictor, many inputs; counts what was done and skipped."""

    def __init__(self, predictor, network, output_dir, debug=False, log=inference.log):
        self.predictor = predictor
        self.network = network
        self.output_dir = output_dir
        self.debug = debug
        self.log = log
        self.taken = set()
        self.done, self.skipped = [], []
        self.totals = {'network': 0.0, 'decode': 0.0, 'drawing': 0.0, 'images': 0}

    def _account(self, prediction, drawing):
        self.totals['network'] += prediction.network_seconds
        self.totals['decode'] += prediction.decode_seconds
        self.totals['drawing'] += drawing
        self.totals['images'] += 1

    def image(self, path, index, count):
        """Processes one image file; returns the written paths. Raises ImageReadError for a bad file."""
        image = images.read_image(path)
        prediction = self.predictor.predict(image, name=path)
        stem = output_stem(path, self.output_dir, self.taken)
        t0 = time.perf_counter()
        written = {'pose': stem + '_pose' + PICTURE_EXTENSION, 'masks': stem + '_masks' + PICTURE_EXTENSION,
                   'json': stem + '.json'}
        pictures = {'pose': pose_picture(image, prediction.people), 'masks': masks_picture(image, prediction.people)}
        if self.debug:
            debug = debug_pictures(image, prediction, self.predictor.stride, self.predictor.decode_options())
            for name, picture in debug.items():
                written[name] = '%s_%s%s' % (stem, name, PICTURE_EXTENSION)
                pictures[name] = picture
        for name, picture in pictures.items():
            with files.atomic_output(written[name]) as partial:
                plot.save_image(partial, picture)
        drawing = time.perf_counter() - t0
        write_json(written['json'], path, image.shape, prediction, self.predictor, self.network)
        self._account(prediction, drawing)
        pictures = [os.path.basename(written[name]) for name in written if name not in ('pose', 'json')]
        self.log('[%d/%d] %s: %dx%d, %s; network %.2f s, decoding %.0f ms, drawing %.0f ms -> %s (and %s)'
                 % (index, count, path, image.shape[1], image.shape[0], people_counts(prediction.people),
                    prediction.network_seconds, 1000 * prediction.decode_seconds, 1000 * drawing,
                    written['pose'], ', '.join(pictures + [os.path.basename(written['json'])])))
        return written

    def video(self, path, index, count, max_frames=None):
        """Processes a video: annotated video + one JSON per frame. Returns the written paths."""
        capture = cv2.VideoCapture(path)
        if not capture.isOpened():
            raise images.ImageReadError('%s cannot be opened as a video by OpenCV' % path)
        try:
            return self._video_frames(capture, path, index, count, max_frames)
        finally:
            capture.release()

    def _video_frames(self, capture, path, index, count, max_frames):
        fps = capture.get(cv2.CAP_PROP_FPS)
        fps = fps if fps and np.isfinite(fps) and fps > 0 else config.DEMO_VIDEO_FALLBACK_FPS
        total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        if max_frames:
            total = min(total, max_frames) if total > 0 else max_frames
        stem = output_stem(path, self.output_dir, self.taken)
        frames_dir = stem + '_frames'
        os.makedirs(frames_dir, exist_ok=True)
        writer, video_path, partial = None, None, None
        frame_index, start = 0, time.perf_counter()
        try:
            while not max_frames or frame_index < max_frames:
                ok, frame = capture.read()
                if not ok:
                    break
                image = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
                prediction = self.predictor.predict(image, name='%s frame %d' % (path, frame_index))
                t0 = time.perf_counter()
                picture = plot.draw_people(image, shown(prediction.people))
                if writer is None:
                    writer, video_path, partial = open_video_writer(stem, fps, image.shape)
                writer.write(cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
                drawing = time.perf_counter() - t0
                write_json(os.path.join(frames_dir, '%06d.json' % frame_index), path, image.shape, prediction,
                           self.predictor, self.network, {'frame': frame_index, 'time': frame_index / fps})
                self._account(prediction, drawing)
                frame_index += 1
                elapsed = time.perf_counter() - start
                rate = frame_index / elapsed
                left = ', %.0f s left' % ((total - frame_index) / rate) if total > frame_index else ''
                sys.stderr.write('\r[%d/%d] %s: frame %d%s, %s, %.2f frames/s%s   ' % (
                    index, count, path, frame_index, '/%d' % total if total > 0 else '',
                    people_counts(prediction.people), rate, left))
                sys.stderr.flush()
        finally:
            if writer is not None:
                writer.release()
                # Renamed only once complete; OpenCV does not report a failed write (a full disk): an empty
                # file is one.
                complete = sys.exc_info()[0] is None and os.path.getsize(partial) > 0
                if complete:
                    os.replace(partial, video_path)
                else:
                    os.remove(partial)
        sys.stderr.write('\n')
        if writer is not None and not os.path.exists(video_path):
            raise OSError('the video %s could not be written' % video_path)
        if frame_index == 0:
            raise images.ImageReadError('%s: no frame could be read' % path)
        self.log('[%d/%d] %s: %d frames -> %s, %s/' % (index, count, path, frame_index, video_path, frames_dir))
        return {'video': video_path, 'frames': frames_dir, 'count': frame_index}

    def run(self, paths, max_frames=None):
        """Processes every input; unreadable ones are reported and skipped. Returns list of written dicts."""
        for n, path in enumerate(paths, 1):
            try:
                if is_video(path):
                    self.done.append(self.video(path, n, len(paths), max_frames))
                else:
                    self.done.append(self.image(path, n, len(paths)))
            except (images.ImageReadError, OSError) as error:  # OSError: an output cannot be written
                message = str(error) if path in str(error) else '%s: %s' % (path, error)
                self.skipped.append((path, message))
                self.log('[%d/%d] SKIPPED %s' % (n, len(paths), message))
        return self.done


def open_video_writer(stem, fps, shape):
    """cv2.VideoWriter for an RGB frame shape: config.DEMO_VIDEO_FOURCC .mp4, else MJPG .avi. Returns
    (writer, video path, the temporary path it writes to until the video is complete)."""
    height, width = shape[:2]
    for fourcc, extension in ((config.DEMO_VIDEO_FOURCC, '.mp4'), ('MJPG', '.avi')):
        path = stem + '_pose' + extension
        partial = files.partial_path(path)
        writer = cv2.VideoWriter(partial, cv2.VideoWriter_fourcc(*fourcc), fps, (width, height))
        if writer.isOpened():
            return writer, path, partial
        writer.release()
        if os.path.exists(partial):
            os.remove(partial)
    raise OSError('OpenCV cannot write a video (tried %s .mp4 and MJPG .avi) to %s' % (config.DEMO_VIDEO_FOURCC,
                                                                                     stem))


# ----------------------------------------------------------------------------------------------------------
# Command line
# ----------------------------------------------------------------------------------------------------------
def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='PersonLab demo: skeletons, instance masks and JSON for images, folders and videos.',
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split('\n\n')[1])
    parser.add_argument('inputs', nargs='*', help='image files, folders of images and videos, video files')
    parser.add_argument('--checkpoint', help='train dir or checkpoint prefix (default: the newest in %s, else '
                                             'in the folders of %s)' % (config.TRAIN_DIR, config.MODEL_DIR))
    parser.add_argument('--output', help='output folder (default %s)' % config.DEMO_OUTPUT_DIR)
    size = parser.add_mutually_exclusive_group()
    size.add_argument('--longer-side', type=int, help='input size, longer side in px (default '
                                                       'config.DEMO_LONGER_SIDE, else the training INPUT_SIZE)')
    size.add_argument('--scales', type=int, nargs='+', metavar='SIDE', help='several input sizes (multi-scale)')
    size.add_argument('--multi-scale', action='store_true', help='the paper\'s scales, config.EVAL_SCALES %s'
                                                                 % (config.EVAL_SCALES,))
    parser.add_argument('--radius', type=float, help='disk radius R in px to decode with (default: the RADIUS the '
                                                   'checkpoint was trained with, from its config.json)')
    parser.add_argument('--debug', action='store_true', help='also write heatmap, Hough-map and offset pictures')
    parser.add_argument('--limit', type=int, help='process only the first N inputs')
    parser.add_argument('--max-frames', type=int, help='process only the first N frames of each video')
    parser.add_argument('--preset', choices=('quickstart',),
                        help='quickstart: the model of `train.py --preset quickstart` on %d synthetic validation '
                             'images at longer side %s' % (config.DEMO_PRESET_IMAGES,
                                                           config.QUICKSTART['DEMO_LONGER_SIDE']))
    args = parser.parse_args(argv)
    for name in ('limit', 'max_frames'):
        value = getattr(args, name)
        if value is not None and value < 1:
            parser.error('--%s must be positive' % name.replace('_', '-'))
    if args.longer_side is not None and args.longer_side < rescale.MIN_LONGER_SIDE:
        parser.error('--longer-side must be at least %d px, got %d' % (rescale.MIN_LONGER_SIDE, args.longer_side))
    if args.radius is not None and not args.radius > 0:
        parser.error('--radius must be a positive number of px, got %s' % args.radius)
    try:
        rescale.check_scales(args.scales)
    except ValueError as error:
        parser.error('--%s' % error)
    return args


def resolve(args):
    """Inputs, checkpoint, limit and longer side after the preset: (inputs, checkpoint, limit, longer_side).
    The quickstart preset runs at its DEMO_LONGER_SIDE (the synthetic images' own size) unless --longer-side,
    --scales or --multi-scale says otherwise."""
    inputs, checkpoint, limit, longer_side = list(args.inputs), args.checkpoint, args.limit, args.longer_side
    if args.preset == 'quickstart':
        preset = settings.preset_overrides('quickstart')
        checkpoint = checkpoint or preset['TRAIN_DIR']
        if longer_side is None and not args.scales and not args.multi_scale:
            longer_side = preset.get('DEMO_LONGER_SIDE')
        if not inputs:
            inputs = [os.path.join(config.SYNTHETIC_DIR, 'val2017')]
            limit = limit or config.DEMO_PRESET_IMAGES
    return inputs, checkpoint, limit, longer_side


def main(argv=None):
    args = parse_args(argv)
    inputs, checkpoint, limit, longer_side = resolve(args)
    if not inputs:
        print('demo.py: error: give an image, a folder or a video (or --preset quickstart); see --help',
              file=sys.stderr)
        return 2
    try:
        listed = list_inputs(inputs, limit)
        prefix = checkpoints.find(checkpoint)  # before TensorFlow: a missing model fails at once
    except (FileNotFoundError, checkpoints.NoCheckpointError) as error:
        print('demo.py: %s' % error, file=sys.stderr)
        return 2
    if not listed:
        print('demo.py: no image or video in %s' % ', '.join(inputs), file=sys.stderr)
        return 2
    paths, refused = screen_inputs(listed)  # before the model's seconds of loading
    if not paths:
        print('demo.py: error: nothing to process: %s' % '; '.join(why for _, why in refused), file=sys.stderr)
        return 2
    for path, why in refused:
        inference.log('demo: SKIPPED %s' % why)
    output_dir = args.output or config.DEMO_OUTPUT_DIR
    try:  # before the model: an unusable --output must not wait for the network to have run on every input
        files.writable_folder(output_dir, '--output folder')
    except OSError as error:
        print('demo.py: error: %s' % error, file=sys.stderr)
        return 2
    options = settings.defaults()  # config.py as the user edited it; the checkpoint's model values on top
    start = time.perf_counter()
    try:
        network = networks.CheckpointNetwork(prefix, options=options)
    except ValueError as error:
        print('demo.py: error: %s' % error, file=sys.stderr)
        return 2
    for warning in network.warnings:
        inference.log('demo: WARNING: %s' % warning)
    if args.multi_scale:
        scales = list(config.EVAL_SCALES)
    elif args.scales:
        scales = args.scales
    else:
        scales = [inference.default_longer_side(network, longer_side, options=options)]
    predictor = inference.Predictor(network, scales, radius=args.radius, options=options)
    inference.log('demo: %s (ResNet-v2-%d, step %d), longer side %s px, output stride %d, decoding radius %g px, '
                  'model ready in %.1f s' % (prefix, network.depth, network.settings['step'],
                                             '/'.join('source' if s is None else str(s) for s in scales),
                                             network.stride, predictor.radius, time.perf_counter() - start))
    if network.settings.get('trained_on_synthetic'):
        inference.log('demo: note: this model was trained on synthetic.py\'s figures only (its config.json: '
                      'TRAIN_ANNOTATIONS=%s); on photos of real people it finds few or none: train on COCO '
                      'for those (docs/training.md)' % network.settings['train_annotations'])
    if args.debug:
        inference.log('demo: --debug also writes, for each image NAME, on the network\'s input: %s'
                      % ', '.join('NAME_%s%s (%s)' % (name, PICTURE_EXTENSION, what)
                                  for name, what in DEBUG_PICTURES.items()))
    demo = Demo(predictor, network, output_dir, debug=args.debug)
    demo.skipped.extend(refused)
    try:
        demo.run(paths, args.max_frames)
    finally:
        network.close()
    totals = demo.totals
    if totals['images']:
        inference.log('demo: %d pictures in %.1f s; per picture: network %.2f s, decoding %.0f ms, drawing %.0f ms'
                      % (totals['images'], time.perf_counter() - start, totals['network'] / totals['images'],
                         1000 * totals['decode'] / totals['images'], 1000 * totals['drawing'] / totals['images']))
    if demo.skipped:
        inference.log('demo: skipped %d of %d inputs:\n%s' % (len(demo.skipped), len(listed), '\n'.join(
            '  %s' % message for _, message in demo.skipped)))
    print('demo: results for %d of %d inputs in %s' % (len(demo.done), len(listed), output_dir))
    return 0 if demo.done else 1


if __name__ == '__main__':
    machine.quiet_tensorflow()  # before main() imports TensorFlow
    sys.exit(main())
