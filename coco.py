"""The COCO person reader: a person_keypoints annotation file and the images it names.

`CocoPersons` loads one image with its persons: keypoints, instance masks (polygons or RLE) and the crowd
(iscrowd) regions, on the stored pixels the annotations refer to.
"""
import contextlib
import io
import logging
import os
import pickle

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

import config
import images
import settings
import transformer

LOG = logging.getLogger(__name__)


class CocoPersons(object):
    """Persons of a COCO person_keypoints annotation file.

    Keeps only what samples need, not the pycocotools index: per image its file name, size and its person
    annotations pickled into one bytes object. That is about the size of the JSON file instead of several
    times more in small Python objects, cheap to send to spawned workers, and forked workers do not copy it
    page by page by touching reference counts.

    Args:
      annotation_file: path of person_keypoints_*.json.
      image_dir: folder of the images it names.
      include_empty: keep images without any person annotation (options.INCLUDE_IMAGES_WITHOUT_PEOPLE).
      options: settings.Settings; None -> config.py's.
    Raises:
      FileNotFoundError naming every missing path (both are checked before anything is read);
      ValueError naming the annotation file if it is not a COCO annotation file or has no person category.
    """

    def __init__(self, annotation_file, image_dir, include_empty=None, options=None):
        options = settings.resolve(options)
        include_empty = options.INCLUDE_IMAGES_WITHOUT_PEOPLE if include_empty is None else include_empty
        missing = []
        if not os.path.isfile(annotation_file):
            missing.append('annotation file %s' % annotation_file)
        if not os.path.isdir(image_dir):
            missing.append('image folder %s' % image_dir)
        if missing:
            raise FileNotFoundError('COCO data not found: %s is missing' % ' and '.join(missing))
        self.annotation_file = annotation_file
        self.image_dir = image_dir
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress to stdout
                coco = COCO(annotation_file)
            person_ids = coco.getCatIds(catNms=['person'])
            images = coco.imgs
        except (ValueError, KeyError, TypeError, AssertionError) as error:
            raise ValueError('%s is not a COCO annotation file: %r' % (annotation_file, error))
        if not person_ids:
            raise ValueError('%s has no "person" category' % annotation_file)
        self._images = {}
        for image_id in sorted(images):
            info = images[image_id]
            annotations = [a for a in coco.imgToAnns.get(image_id, []) if a.get('category_id') in person_ids]
            if not annotations and not include_empty:
                continue
            annotations = [{key: a.get(key) for key in ('segmentation', 'keypoints', 'iscrowd', 'id')}
                           for a in annotations]
            self._images[image_id] = (info['file_name'], int(info['height']), int(info['width']),
                                      pickle.dumps(annotations, pickle.HIGHEST_PROTOCOL))
        self.image_ids = list(self._images)

    def __len__(self):
        return len(self.image_ids)

    def file_name(self, image_id):
        """Path of the image file of `image_id`."""
        return os.path.join(self.image_dir, self._images[image_id][0])

    def load_example(self, image_id):
        """One image with its persons.

        Returns:
          dict 'image_id' int, 'file_name' str (full path), 'image' uint8 [H, W, 3] RGB,
          'keypoints' float32 [N, K, 3] (x, y, v) COCO visibility (v > 0 labelled; non-finite -> unlabelled),
          'masks' bool [N, H, W] of the N non-crowd persons, 'crowd_mask' bool [H, W] (union of iscrowd regions).
        Raises:
          images.ImageReadError naming the file if it is missing, cannot be decoded or has the wrong size.
        """
        _, record_height, record_width, annotations = self._images[image_id]
        path = self.file_name(image_id)
        image = images.read_image(path, as_stored=True)
        height, width = image.shape[:2]
        if (height, width) != (record_height, record_width):
            raise images.ImageReadError('%s is %dx%d but its annotation says %dx%d' % (
                path, width, height, record_width, record_height))
        keypoints, masks = [], []
        crowd = np.zeros((height, width), bool)
        for annotation in pickle.loads(annotations):
            mask = annotation_mask(annotation.get('segmentation'), height, width, annotation.get('id'))
            if annotation.get('iscrowd'):
                crowd |= mask
            else:
                masks.append(mask)
                keypoints.append(annotation_keypoints(annotation.get('keypoints')))
        return {
            'image_id': image_id,
            'file_name': path,
            'image': image,
            'keypoints': (np.stack(keypoints) if keypoints
                          else np.zeros((0, config.NUM_KEYPOINTS, 3), np.float32)),
            'masks': np.stack(masks) if masks else np.zeros((0, height, width), bool),
            'crowd_mask': crowd,
        }


def annotation_keypoints(values):
    """float32 [K, 3] (x, y, v) from a COCO 'keypoints' list; bad or missing values give unlabelled points."""
    keypoints = np.zeros((config.NUM_KEYPOINTS, 3), np.float32)
    try:
        values = np.asarray(values if values is not None else [], np.float64).ravel()
    except (TypeError, ValueError):
        values = np.zeros(0)
    count = min(values.size // 3, config.NUM_KEYPOINTS)
    keypoints[:count] = values[:3 * count].reshape(count, 3)
    keypoints[~transformer.labelled(keypoints)] = 0.0
    return keypoints


def annotation_mask(segmentation, height, width, annotation_id=None):
    """bool [H, W] of a COCO segmentation (polygons in image px, or RLE compressed or not) on an image of
    `height` x `width` px; `annotation_id` only names it in warnings.

    Degenerate input (no polygon, polygons with fewer than 3 points, non-finite coordinates, an RLE of
    another size) gives an empty or partial mask, with a warning, never an exception.
    """
    empty = np.zeros((height, width), bool)
    if not segmentation:
        return empty
    try:
        if isinstance(segmentation, dict):
            size = [int(v) for v in segmentation.get('size', [])]
            if size != [height, width]:
                LOG.warning('annotation %s: RLE of size %s on a %dx%d image, ignored', annotation_id, size,
                            width, height)
                return empty
            rle = segmentation
            if isinstance(rle.get('counts'), list):
                rle = mask_utils.frPyObjects(rle, height, width)
        else:
            # Polygons need >= 3 points; pycocotools would read a 4-number list as a box.
            polygons = [np.asarray(p, np.float64).ravel() for p in segmentation]
            polygons = [p.tolist() for p in polygons if p.size >= 6 and p.size % 2 == 0 and np.isfinite(p).all()]
            if not polygons:
                return empty
            rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
        return mask_utils.decode(rle).astype(bool)
    except (ValueError, TypeError, KeyError, IndexError) as error:
        LOG.warning('annotation %s: unreadable segmentation ignored (%r)', annotation_id, error)
        return empty

