"""Tests of synthetic.py: the synthetic people dataset must be real COCO to pycocotools and to our reader."""
import contextlib
import filecmp
import io
import json
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

import config
import synthetic

SIZE = 129
NUM_TRAIN = 40
NUM_VAL = 6
SEED = 3
K = config.NUM_KEYPOINTS
BODY_JOINTS = ('shoulder', 'elbow', 'wrist', 'hip', 'knee', 'ankle')


def load_coco(path):
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints its progress
        return COCO(path)


@pytest.fixture(scope='module')
def dataset(tmp_path_factory):
    return synthetic.make_dataset(str(tmp_path_factory.mktemp('synthetic')), NUM_TRAIN, NUM_VAL, SIZE, SEED,
                                  log=None)


@pytest.fixture(scope='module')
def train(dataset):
    return load_coco(dataset['train_annotations'])


@pytest.fixture(scope='module')
def scenes():
    """(scene, annotations) pairs rendered in memory, with the generator's own ground truth."""
    pairs = []
    for index in range(30):
        scene = synthetic.render_scene(synthetic.image_rng(SEED, 'train', index), SIZE)
        pairs.append((scene, synthetic.scene_annotations(scene, index + 1, 1)))
    return pairs


def keypoint_pixels(keypoints):
    """Integer (col, row) of the pixel whose centre is nearest each (x, y) (pixel centres at integers)."""
    return np.floor(np.asarray(keypoints)[:, :2] + 0.5).astype(int)


def keypoint_array(annotation):
    return np.asarray(annotation['keypoints'], np.float64).reshape(K, 3)


def rasterise(segmentation):
    """bool [SIZE, SIZE] of a COCO segmentation (polygons or uncompressed RLE), as annToMask decodes it."""
    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, SIZE, SIZE))
    else:
        rle = mask_utils.frPyObjects(segmentation, SIZE, SIZE)
    return mask_utils.decode(rle).astype(bool)


def test_coco_layout_loads_with_pycocotools(dataset):
    assert dataset == synthetic.dataset_paths(dataset['root'])
    image_ids, annotation_ids = [], []
    for split, count in (('train', NUM_TRAIN), ('val', NUM_VAL)):
        assert os.path.isdir(os.path.join(dataset['root'], split + '2017'))
        assert dataset[split + '_annotations'] == os.path.join(
            dataset['root'], 'annotations', 'person_keypoints_%s2017.json' % split)
        coco = load_coco(dataset[split + '_annotations'])
        assert len(coco.getImgIds()) == count
        assert coco.getCatIds(catNms=['person']) == [1]
        category = coco.loadCats(1)[0]
        assert category['keypoints'] == list(config.KEYPOINTS)
        assert all(1 <= a <= K and 1 <= b <= K for a, b in category['skeleton'])
        assert len(coco.getAnnIds()) > count  # several people per image
        image_ids += coco.getImgIds()
        annotation_ids += coco.getAnnIds()
        for annotation in coco.loadAnns(coco.getAnnIds()):
            assert annotation['category_id'] == 1 and annotation['image_id'] in coco.imgs
            assert len(annotation['keypoints']) == 3 * K
            assert len(annotation['bbox']) == 4
    assert len(set(image_ids)) == len(image_ids)
    assert len(set(annotation_ids)) == len(annotation_ids)


def test_category_is_cocos_person_category(coco_sample):
    real = load_coco(coco_sample['val_annotations']).loadCats(1)[0]
    ours = synthetic.person_category()
    for key in ('id', 'name', 'supercategory', 'keypoints', 'skeleton'):
        assert ours[key] == real[key], key


def test_a_run_on_the_synthetic_set_is_recognised(dataset, coco_sample, tmp_path):
    """From a run's config.json values: its TRAIN_ANNOTATIONS inside its SYNTHETIC_DIR (even where the file is
    absent: a checkpoint copied to another machine), or a file that starts like synthetic.py's."""
    elsewhere = {'SYNTHETIC_DIR': str(tmp_path / 'synthetic')}
    assert synthetic.is_synthetic_run(dict(elsewhere, TRAIN_ANNOTATIONS=dataset['train_annotations']))
    assert synthetic.is_synthetic_run({'SYNTHETIC_DIR': dataset['root'],
                                       'TRAIN_ANNOTATIONS': str(tmp_path / 'gone' / 'x.json')}) is False
    inside = os.path.join(dataset['root'], 'annotations', 'gone.json')
    assert synthetic.is_synthetic_run({'SYNTHETIC_DIR': dataset['root'], 'TRAIN_ANNOTATIONS': inside})
    assert not synthetic.is_synthetic_run(dict(elsewhere, TRAIN_ANNOTATIONS=coco_sample['val_annotations']))
    assert not synthetic.is_synthetic_run(dict(elsewhere, TRAIN_ANNOTATIONS=str(tmp_path / 'missing.json')))
    assert not synthetic.is_synthetic_run({})


def test_images_decode_at_the_stated_size(dataset):
    for split in ('train', 'val'):
        coco = load_coco(dataset[split + '_annotations'])
        files = sorted(os.listdir(dataset[split + '_images']))
        assert files == sorted(info['file_name'] for info in coco.imgs.values())
        for info in coco.imgs.values():
            image = cv2.imread(os.path.join(dataset[split + '_images'], info['file_name']), cv2.IMREAD_COLOR)
            assert image is not None and image.shape == (SIZE, SIZE, 3), info['file_name']
            assert (info['width'], info['height']) == (SIZE, SIZE)
            assert image.std() > 10  # not a blank picture


def test_person_masks_are_non_empty_and_match_area_and_box(train):
    persons = train.loadAnns(train.getAnnIds(iscrowd=False))
    assert persons
    for annotation in persons:
        assert isinstance(annotation['segmentation'], list)  # polygons, as COCO's non-crowd persons
        assert annotation['area'] > 0
        mask = train.annToMask(annotation).astype(bool)
        assert mask.sum() == annotation['area'], annotation['id']
        rows, cols = np.nonzero(mask)
        x, y, w, h = annotation['bbox']
        assert (x, y, x + w, y + h) == (cols.min(), rows.min(), cols.max() + 1, rows.max() + 1)


def test_polygons_rasterise_to_exactly_the_visible_silhouette(scenes):
    checked = 0
    for scene, annotations in scenes:
        persons = [a for a in annotations if not a['iscrowd']]
        assert len(persons) == len(scene['persons'])
        for person, annotation in zip(scene['persons'], persons):
            assert isinstance(annotation['segmentation'], list)  # polygons, not the RLE fallback
            np.testing.assert_array_equal(rasterise(annotation['segmentation']), person['mask'])
            checked += 1
    assert checked > 50


def test_mask_to_polygons_is_exact_on_holes_islands_and_diagonals():
    masks = []
    ring = np.zeros((SIZE, SIZE), bool)
    cv2.circle(ring.view(np.uint8), (40, 40), 20, 1, -1)
    cv2.circle(ring.view(np.uint8), (40, 40), 8, 0, -1)
    cv2.circle(ring.view(np.uint8), (52, 30), 3, 0, -1)  # a second hole
    masks.append(ring)
    islands = np.zeros((SIZE, SIZE), bool)
    islands[5, 5] = islands[0, 100] = islands[SIZE - 1, SIZE - 1] = True  # single pixels, on the border too
    islands[60:63, 60:90] = True
    masks.append(islands)
    diagonal = np.zeros((SIZE, SIZE), bool)
    diagonal[np.arange(10, 40), np.arange(10, 40)] = True  # 8-connected only
    diagonal[np.arange(10, 40), np.arange(70, 40, -1)] = True
    masks.append(diagonal)
    checker = np.indices((SIZE, SIZE)).sum(0) % 2 == 0
    checker[:, 20:] = False
    masks.append(checker)
    for mask in masks:
        polygons = synthetic.mask_to_polygons(mask)
        assert polygons is not None
        np.testing.assert_array_equal(rasterise(polygons), mask)
    with pytest.raises(ValueError, match='empty'):
        synthetic.mask_to_polygons(np.zeros((8, 8), bool))


def test_visible_keypoints_lie_on_their_persons_mask(train):
    count = 0
    for annotation in train.loadAnns(train.getAnnIds(iscrowd=False)):
        keypoints = keypoint_array(annotation)
        visible = keypoints[:, 2] == 2
        if not visible.any():
            continue
        mask = train.annToMask(annotation)
        # Distance (px) of every pixel to the person's mask.
        distance = cv2.distanceTransform((1 - mask).astype(np.uint8), cv2.DIST_L2, 5)
        col, row = keypoint_pixels(keypoints[visible]).T
        assert np.all(distance[row, col] <= 2.0), annotation['id']
        count += visible.sum()
    assert count > 200


def test_occluded_keypoints_are_covered_by_what_stands_in_front(scenes):
    count = 0
    for scene, annotations in scenes:
        persons = [a for a in annotations if not a['iscrowd']]
        for index, (person, annotation) in enumerate(zip(scene['persons'], persons)):
            keypoints = keypoint_array(annotation)
            occluded = keypoints[:, 2] == 1
            if not occluded.any():
                continue
            # Persons are listed back to front: what covers person `index` is later in the list, or an object.
            in_front = scene['occluder_mask'].copy()
            for other in scene['persons'][index + 1:]:
                in_front |= other['full_mask']
            own_mask = rasterise(annotation['segmentation'])
            col, row = keypoint_pixels(keypoints[occluded]).T
            assert np.all(in_front[row, col]), annotation['id']
            assert not np.any(own_mask[row, col]), annotation['id']
            assert np.all(person['full_mask'][row, col])  # hidden, but still a point of the figure
            count += occluded.sum()
    assert count > 10


def test_keypoint_records_are_consistent(dataset):
    for split in ('train', 'val'):
        coco = load_coco(dataset[split + '_annotations'])
        for annotation in coco.loadAnns(coco.getAnnIds()):
            keypoints = keypoint_array(annotation)
            labelled = keypoints[:, 2] > 0
            assert set(np.unique(keypoints[:, 2])) <= {0, 1, 2}
            assert annotation['num_keypoints'] == labelled.sum()
            assert np.all(keypoints[~labelled] == 0)
            assert np.all((keypoints[labelled, :2] >= -0.5) & (keypoints[labelled, :2] < SIZE - 0.5))


def test_crowd_regions_are_rle_masks_without_keypoints(train):
    crowds = train.loadAnns(train.getAnnIds(iscrowd=True))
    assert crowds, 'the test set should hold a crowd region'
    for crowd in crowds:
        assert crowd['iscrowd'] == 1
        segmentation = crowd['segmentation']
        assert isinstance(segmentation, dict) and isinstance(segmentation['counts'], list)
        assert segmentation['size'] == [SIZE, SIZE]
        mask = train.annToMask(crowd).astype(bool)
        assert mask.sum() == crowd['area'] > 0
        assert crowd['num_keypoints'] == 0 and not any(crowd['keypoints'])
        # The crowd stands behind everyone: no pixel of it belongs to a person of the same image.
        for person in train.loadAnns(train.getAnnIds(imgIds=crowd['image_id'], iscrowd=False)):
            assert not (mask & train.annToMask(person).astype(bool)).any()


def test_some_persons_have_no_keypoints(train):
    persons = train.loadAnns(train.getAnnIds(iscrowd=False))
    without = [a for a in persons if a['num_keypoints'] == 0]
    assert without and all(a['area'] > 0 for a in without)
    assert len(without) < len(persons) / 2


def test_keypoints_sit_on_blobs_of_their_kind(dataset, train):
    """The learnable cue: each visible body joint is drawn as a blob of its kind's colour."""
    distances = []
    for image_id in train.getImgIds():
        path = os.path.join(dataset['train_images'], train.imgs[image_id]['file_name'])
        image = cv2.cvtColor(cv2.imread(path), cv2.COLOR_BGR2RGB).astype(np.float64)
        for annotation in train.loadAnns(train.getAnnIds(imgIds=image_id, iscrowd=False)):
            keypoints = keypoint_array(annotation)
            for joint in BODY_JOINTS:
                for side in ('left_', 'right_'):
                    x, y, v = keypoints[config.KEYPOINTS.index(side + joint)]
                    if v == 2:
                        col, row = keypoint_pixels([[x, y]])[0]
                        colour = np.asarray(config.SYNTHETIC_KEYPOINT_COLOURS[joint], np.float64)
                        distances.append(np.linalg.norm(image[row, col] - colour))
    distances = np.asarray(distances)
    assert distances.size > 200
    assert np.median(distances) < 40
    assert np.mean(distances < 80) > 0.85


def test_left_and_right_follow_the_facing_direction(train):
    """Seen from the front (a face: nose labelled) the person's left shoulder is on the image's right."""
    left, right, nose = (config.KEYPOINTS.index(n) for n in ('left_shoulder', 'right_shoulder', 'nose'))
    front = back = 0
    for annotation in train.loadAnns(train.getAnnIds(iscrowd=False)):
        keypoints = keypoint_array(annotation)
        if keypoints[left, 2] == 0 or keypoints[right, 2] == 0:
            continue
        if keypoints[nose, 2] > 0:
            assert keypoints[left, 0] > keypoints[right, 0], annotation['id']
            front += 1
        elif keypoints[left, 0] < keypoints[right, 0]:
            back += 1
    assert front > 20 and back > 0


def test_same_seed_same_bytes_other_seed_other_data(tmp_path):
    first = synthetic.make_dataset(str(tmp_path / 'a'), 4, 2, 97, 11, log=None)
    second = synthetic.make_dataset(str(tmp_path / 'b'), 4, 2, 97, 11, log=None)
    other = synthetic.make_dataset(str(tmp_path / 'c'), 4, 2, 97, 12, log=None)
    shorter = synthetic.make_dataset(str(tmp_path / 'd'), 2, 1, 97, 11, log=None)
    for split in ('train', 'val'):
        names = sorted(os.listdir(first[split + '_images']))
        assert len(names) == (4 if split == 'train' else 2)
        match, mismatch, errors = filecmp.cmpfiles(first[split + '_images'], second[split + '_images'], names,
                                                   shallow=False)
        assert (mismatch, errors) == ([], [])
        assert filecmp.cmp(first[split + '_annotations'], second[split + '_annotations'], shallow=False)
        assert not filecmp.cmp(first[split + '_annotations'], other[split + '_annotations'], shallow=False)
        match, mismatch, errors = filecmp.cmpfiles(first[split + '_images'], other[split + '_images'], names,
                                                   shallow=False)
        assert not match
        # Image i depends on (seed, split, i) only, not on how many images are made.
        kept = sorted(os.listdir(shorter[split + '_images']))
        match, mismatch, errors = filecmp.cmpfiles(first[split + '_images'], shorter[split + '_images'], kept,
                                                   shallow=False)
        assert match == kept


def test_bad_arguments_fail_before_writing(tmp_path):
    target = tmp_path / 'never'
    with pytest.raises(ValueError) as error:
        synthetic.make_dataset(str(target), -1, 2, 20, 0, log=None)
    assert 'num_train' in str(error.value) and 'image_size' in str(error.value)
    assert not target.exists()


def test_command_line_writes_the_dataset_with_progress(tmp_path):
    output = tmp_path / 'cli'
    script = os.path.join(os.path.dirname(os.path.abspath(synthetic.__file__)), 'synthetic.py')
    result = subprocess.run([sys.executable, script, '--output', str(output), '--train', '3', '--val', '1',
                             '--size', '97', '--seed', '5'], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert 'train2017: 3/3 images' in result.stdout and 'val2017: 1/1 images' in result.stdout
    same = synthetic.make_dataset(str(tmp_path / 'api'), 3, 1, 97, 5, log=None)
    paths = synthetic.dataset_paths(str(output))
    for split in ('train', 'val'):
        with open(paths[split + '_annotations']) as f, open(same[split + '_annotations']) as g:
            assert json.load(f) == json.load(g)
    bad = subprocess.run([sys.executable, script, '--output', str(tmp_path / 'bad'), '--size', '8'],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and 'image_size' in bad.stderr


def test_data_generator_reads_and_encodes_the_synthetic_set(dataset, train):
    import data_generator  # here, so a broken data_generator fails this test only
    persons = data_generator.CocoPersons(dataset['train_annotations'], dataset['train_images'])
    assert len(persons.image_ids) == NUM_TRAIN
    crowd_image = train.loadAnns(train.getAnnIds(iscrowd=True))[0]['image_id']
    for image_id in (persons.image_ids[0], crowd_image):
        example = persons.load_example(image_id)
        annotations = train.loadAnns(train.getAnnIds(imgIds=image_id, iscrowd=False))
        assert example['image'].shape == (SIZE, SIZE, 3)
        assert example['keypoints'].shape == (len(annotations), K, 3)
        np.testing.assert_allclose(example['keypoints'],
                                   [keypoint_array(a) for a in annotations], atol=1e-4)
        for mask, annotation in zip(example['masks'], annotations):
            np.testing.assert_array_equal(mask, train.annToMask(annotation).astype(bool))
        stride = 8
        targets = data_generator.encode_example(example, stride)
        side = (SIZE - 1) // stride + 1
        assert targets['heatmaps'].shape == (side, side, K)
        labelled = example['keypoints'][..., 2] > 0
        assert targets['heatmaps'].sum() > 0 and set(np.unique(targets['heatmaps'])) <= {0.0, 1.0}
        for k in range(K):
            assert targets['heatmaps'][..., k].any() == labelled[:, k].any()
        assert targets['segmentation'].any() and targets['long_valid'].any()
        if image_id == crowd_image:
            assert example['crowd_mask'].any()
            assert (targets['seg_weights'] == 0).any()
        sample = data_generator.augment_example(example, np.random.default_rng(0), 129, 16)
        assert sample['image'].shape == (129, 129, 3)
