"""inference.py without TensorFlow: image conversion, resize geometry, multi-scale merging, checkpoint search,
and the whole Predictor path on real COCO annotations through the ground-truth stand-in for the network."""
import os
import struct
import zlib

import cv2
import numpy as np
import pytest

import checkpoints
import config
import data_generator
import images
import inference
import oracle
import rescale
from test_data_generator import _jpeg_with_exif_orientation


# ----------------------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------------------
def test_to_rgb_uint8_converts_grey_rgba_16_bit_and_float():
    rng = np.random.RandomState(0)
    rgb = rng.randint(0, 256, (20, 30, 3)).astype(np.uint8)
    np.testing.assert_array_equal(images.to_rgb_uint8(rgb), rgb)
    grey = rgb[..., 0]
    for g in (grey, grey[..., None]):
        out = images.to_rgb_uint8(g)
        assert out.shape == (20, 30, 3) and (out == grey[..., None]).all()
    np.testing.assert_array_equal(images.to_rgb_uint8(rgb.astype(np.uint16) * 257), rgb)  # exact
    np.testing.assert_array_equal(images.to_rgb_uint8(rgb / 255.0), rgb)
    rgba = np.concatenate([rgb, np.full((20, 30, 1), 255, np.uint8)], axis=2)
    rgba[:5, :, 3] = 0  # transparent rows show the background colour
    rgba[5:10, :, 3] = 128
    out = images.to_rgb_uint8(rgba)
    np.testing.assert_array_equal(out[:5], np.broadcast_to(config.ALPHA_BACKGROUND, (5, 30, 3)))
    np.testing.assert_array_equal(out[10:], rgb[10:])
    expected = np.rint(rgb[5:10] * (128 / 255.0) + np.array(config.ALPHA_BACKGROUND) * (127 / 255.0))
    assert np.abs(out[5:10].astype(int) - expected).max() <= 1


@pytest.mark.parametrize('bad, message', [
    (np.zeros((4, 5, 2), np.uint8), 'shape'),
    (np.zeros((4, 5, 3), np.int32), 'pixel type int32'),
    (np.full((4, 5, 3), np.nan, np.float32), 'NaN'),
    (np.zeros((4,), np.uint8), 'shape'),
])
def test_to_rgb_uint8_names_what_is_wrong(bad, message):
    with pytest.raises(images.UnusableImageError, match=message):
        images.to_rgb_uint8(bad, 'frame 3')


def test_read_image_files_of_every_kind(coco_sample, tmp_path):
    source = os.path.join(coco_sample['val_images'], '000000000785.jpg')
    rgb = images.read_image(source)
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    files = {'grey.png': cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), 'deep.png': bgr.astype(np.uint16) * 257,
             'opaque.png': cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA), 'same.bmp': bgr}
    for name, array in files.items():
        assert cv2.imwrite(str(tmp_path / name), array)
    np.testing.assert_array_equal(images.read_image(str(tmp_path / 'deep.png')), rgb)
    np.testing.assert_array_equal(images.read_image(str(tmp_path / 'opaque.png')), rgb)
    np.testing.assert_array_equal(images.read_image(str(tmp_path / 'same.bmp')), rgb)
    grey = images.read_image(str(tmp_path / 'grey.png'))
    assert grey.shape == rgb.shape and (grey == grey[..., :1]).all()

    (tmp_path / 'broken.jpg').write_bytes(b'\xff\xd8 not really a jpeg')
    (tmp_path / 'empty.png').write_bytes(b'')
    for name in ('broken.jpg', 'empty.png', 'missing.jpg'):
        with pytest.raises(images.ImageReadError, match=name):
            images.read_image(str(tmp_path / name))
    assert cv2.imwrite(str(tmp_path / 'tiny.png'), bgr[:5, :40])
    with pytest.raises(images.UnusableImageError, match=r'tiny.png is only 40x5 px'):
        images.read_image(str(tmp_path / 'tiny.png'))
    (tmp_path / 'panorama.png').write_bytes(huge_png_header(60000, 50000))
    with pytest.raises(images.UnusableImageError, match=r'panorama.png is 60000x50000 px \(3000 megapixels\)'):
        images.read_image(str(tmp_path / 'panorama.png'))


def test_read_image_applies_the_exif_orientation(tmp_path):
    # The demo, eval and serving reader shows a photo as viewers do (the training reader keeps the stored
    # pixels, where COCO's annotations live): orientation 6 turns the stored image 90 degrees clockwise.
    pixels = np.zeros((48, 64, 3), np.uint8)
    pixels[:, :8] = (255, 0, 0)
    path = tmp_path / 'turned.jpg'
    path.write_bytes(_jpeg_with_exif_orientation(pixels, 6))
    assert images.read_image(str(path), as_stored=True).shape == (48, 64, 3)  # the tag is there
    image = images.read_image(str(path))
    assert image.shape == (64, 48, 3)
    assert image[:6, :, 0].mean() > 200 and image[:6, :, 2].mean() < 50  # the left band is now on top
    assert image[10:, :, 0].mean() < 50


def huge_png_header(width, height):
    """The start of a PNG claiming width x height RGB pixels: what a huge image's header says, in 100 bytes."""
    def chunk(kind, data):
        return struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data) & 0xffffffff)
    header = struct.pack('>IIBBBBB', width, height, 8, 2, 0, 0, 0)
    return b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', header) + chunk(b'IDAT', zlib.compress(b'\x00' * 64))


# ----------------------------------------------------------------------------------------------------------
# Geometry
# ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize('longer_side', [97, 401, 1401])
def test_resize_and_map_back_is_exact_on_a_sub_pixel_blob(longer_side):
    """A Gaussian blob at a sub-pixel source position: its centroid after cv2.resize, mapped back, lands on it."""
    height, width, x, y, sigma = 240, 320, 121.3, 87.6, 6.0
    rows, cols = np.mgrid[:height, :width]
    blob = np.exp(-((cols - x) ** 2 + (rows - y) ** 2) / (2 * sigma ** 2))
    image = np.repeat((blob * 255)[..., None], 3, axis=2).astype(np.float32) / 255.0
    resized, scale = rescale.resize_longer_side(image, longer_side)
    assert max(resized.shape[:2]) == longer_side
    assert scale == (resized.shape[1] / width, resized.shape[0] / height)
    weights = resized[..., 0].astype(np.float64)
    r, c = np.mgrid[:resized.shape[0], :resized.shape[1]]
    centroid = np.array([(weights * c).sum(), (weights * r).sum()]) / weights.sum()
    geometry = rescale.Geometry((height, width), resized.shape[:2], None, scale)
    back = rescale.to_source_points(centroid, geometry)
    np.testing.assert_allclose(back, [x, y], atol=0.05)


def test_prepare_pads_bottom_right_to_the_grid():
    image = np.full((100, 61, 3), 7, np.uint8)
    padded, geometry = rescale.prepare(image, 129, 8)
    assert geometry.input_shape == (129, 79) and geometry.padded_shape == (129, 81) == padded.shape[:2]
    assert (padded[:, 79:] == np.array(config.PAD_VALUE, np.uint8)).all() and (padded[:, :79] == 7).all()
    same, geometry = rescale.prepare(np.zeros((97, 33, 3), np.uint8), None, 8)
    assert same.shape[:2] == (97, 33) and geometry.scale == (1.0, 1.0)


def test_to_source_mask_resamples_inside_the_box():
    source_shape = (300, 400)
    yy, xx = np.mgrid[:source_shape[0], :source_shape[1]]
    truth = (xx - 150) ** 2 / 60.0 ** 2 + (yy - 170) ** 2 / 90.0 ** 2 <= 1
    small = cv2.resize(truth.astype(np.float32), (201, 151), interpolation=cv2.INTER_AREA)
    padded = np.zeros((161, 209), bool)
    padded[:151, :201] = small > 0.5
    geometry = rescale.Geometry(source_shape, (151, 201), (161, 209), (201 / 400.0, 151 / 300.0))
    back = rescale.to_source_mask(padded, geometry)
    assert back.shape == source_shape
    iou = (back & truth).sum() / float((back | truth).sum())
    assert iou > 0.97
    assert not rescale.to_source_mask(np.zeros((161, 209), bool), geometry).any()


def test_merge_scales_brings_offset_fields_to_one_grid():
    """An offset field pointing at one source point, seen at two scales, merges into the field of the larger."""
    stride, target = 8, np.array([50.3, 40.7])  # source px
    source = np.zeros((120, 160, 3), np.uint8)
    maps, geometries = [], []
    for side in (161, 321):
        _, geometry = rescale.prepare(source, side, stride)
        rows, cols = (np.array(geometry.padded_shape) - 1) // stride + 1
        fx, fy = geometry.scale
        tx, ty = (target[0] + 0.5) * fx - 0.5, (target[1] + 0.5) * fy - 0.5  # in this scale's input px
        j, i = np.meshgrid(np.arange(cols) * stride, np.arange(rows) * stride)
        field = np.stack([tx - j, ty - i], axis=-1).astype(np.float32)
        maps.append({'short_offsets': field, 'heatmaps': np.full((rows, cols, 1), 0.2 + 0.4 * len(maps), np.float32)})
        geometries.append(geometry)
    merged, reference = rescale.merge_scales(maps, geometries, stride)
    assert reference == geometries[1]
    # The outermost cells of the larger grid lie up to half a source pixel beyond the smaller input, whose
    # border values they take (clamped): the linear field is exact inside.
    np.testing.assert_allclose(merged['short_offsets'][1:-1, 1:-1], maps[1]['short_offsets'][1:-1, 1:-1],
                               atol=1e-3)
    assert np.abs(merged['short_offsets'] - maps[1]['short_offsets']).max() < 0.5
    np.testing.assert_allclose(merged['heatmaps'], 0.4)


def test_merge_scales_weights_each_offset_field_by_its_own_heatmap():
    """As a network's outputs (no validity maps): fields that differ between scales merge into the average
    weighted by p_k of the field's keypoint (short), of the edge's source keypoint (mid), by p_S (long)."""
    rng = np.random.RandomState(5)
    stride, source = 8, np.zeros((120, 160, 3), np.uint8)
    edges = np.array(config.DIRECTED_EDGES)
    geometries = [rescale.prepare(source, side, stride)[1] for side in (161, 321)]
    target = geometries[1]
    maps, fields, heat, seg = [], [], [], []
    for geometry in geometries:
        rows, cols = (np.array(geometry.padded_shape) - 1) // stride + 1
        heat.append(rng.uniform(0.05, 0.95, config.NUM_KEYPOINTS))
        seg.append(rng.uniform(0.05, 0.95))
        scale_maps = {'heatmaps': np.tile(heat[-1], (rows, cols, 1)).astype(np.float32),
                      'segmentation': np.full((rows, cols, 1), seg[-1], np.float32)}
        # Constant fields, given in reference-scale pixels and stored in this scale's pixels.
        to_this_scale = np.array(geometry.scale) / np.array(target.scale)
        fields.append({})
        for name, count in (('short_offsets', config.NUM_KEYPOINTS), ('mid_offsets', config.NUM_EDGES),
                            ('long_offsets', config.NUM_KEYPOINTS)):
            field = fields[-1][name] = rng.uniform(-20, 20, (count, 2))
            scale_maps[name] = np.tile((field * to_this_scale).ravel(), (rows, cols, 1)).astype(np.float32)
        maps.append(scale_maps)
    merged, reference = rescale.merge_scales(maps, geometries, stride)
    assert reference == target
    weights = {
        'short_offsets': [heat[0], heat[1]],
        'mid_offsets': [heat[0][edges[:, 0]], heat[1][edges[:, 0]]],
        'long_offsets': [np.full(config.NUM_KEYPOINTS, seg[0]), np.full(config.NUM_KEYPOINTS, seg[1])],
    }
    for name, (w0, w1) in weights.items():
        (a, b), w0, w1 = (scale[name] for scale in fields), w0[:, None], w1[:, None]
        average = ((w0 * a + w1 * b) / (w0 + w1)).ravel()
        assert np.abs(average - (a + b).ravel() / 2).max() > 1, name  # the weighting matters here
        np.testing.assert_allclose(merged[name], np.broadcast_to(average, merged[name].shape), atol=1e-3,
                                   err_msg=name)
    np.testing.assert_allclose(merged['heatmaps'][3, 4], (heat[0] + heat[1]) / 2, atol=1e-6)


# ----------------------------------------------------------------------------------------------------------
# Checkpoints
# ----------------------------------------------------------------------------------------------------------
def _fake_checkpoint(folder, step):
    os.makedirs(folder, exist_ok=True)
    prefix = os.path.join(folder, 'model.ckpt-%d' % step)
    for suffix in ('.index', '.data-00000-of-00001'):
        open(prefix + suffix, 'w').close()
    return prefix


def test_find_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(config, 'MODEL_DIR', str(tmp_path / 'model'))
    monkeypatch.setattr(config, 'TRAIN_DIR', str(tmp_path / 'model' / 'personlab'))
    with pytest.raises(checkpoints.NoCheckpointError) as error:
        checkpoints.find()
    message = str(error.value)
    assert config.TRAIN_DIR in message and 'python train.py --preset quickstart' in message

    quick = str(tmp_path / 'model' / 'quickstart')
    for step in (100, 600, 50):
        _fake_checkpoint(quick, step)
    assert checkpoints.find() == os.path.join(quick, 'model.ckpt-600')  # highest step
    with open(os.path.join(quick, 'checkpoint'), 'w') as f:
        f.write('model_checkpoint_path: "model.ckpt-100"\nall_model_checkpoint_paths: "model.ckpt-100"\n')
    assert checkpoints.find(quick) == os.path.join(quick, 'model.ckpt-100')  # the state file rules
    own = _fake_checkpoint(config.TRAIN_DIR, 5)
    assert checkpoints.find() == own  # config.TRAIN_DIR first
    assert checkpoints.find(own + '.index') == own
    with pytest.raises(checkpoints.NoCheckpointError, match='checkpoint not found: .*nothing'):
        checkpoints.find(str(tmp_path / 'nothing'))


# ----------------------------------------------------------------------------------------------------------
# The whole path on real annotations
# ----------------------------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def crowded_example(coco_sample):
    dataset = data_generator.CocoPersons(coco_sample['val_annotations'], coco_sample['val_images'])
    return dataset.load_example(196141)  # 5 persons


def _match_errors(people, example, min_labelled=8):
    """Mean source-px distance of each well-labelled ground-truth person's labelled keypoints to the decoded
    person closest to them."""
    errors = []
    for truth in example['keypoints']:
        labelled = truth[:, 2] > 0
        if labelled.sum() < min_labelled:
            continue
        distances = [np.linalg.norm(p['keypoints'][labelled, :2] - truth[labelled, :2], axis=1).mean()
                     for p in people]
        errors.append(min(distances))
    return np.array(errors)


@pytest.mark.parametrize('scales, tolerance', [
    ([401], 0.05), ([801], 0.05),  # one scale: the oracle's keypoints come back exactly
    ([257, 401, 545], 1.5),  # disks of R input px differ in size between scales: blurred borders
])
def test_predictor_maps_people_back_to_source_pixels(crowded_example, scales, tolerance):
    network = oracle.GroundTruthNetwork(crowded_example, scales)
    prediction = inference.Predictor(network, scales).predict(crowded_example['image'])
    assert len(network.calls) == len(scales)
    assert prediction.geometry.input_shape[1] == max(scales)  # decoded on the largest scale's grid
    height, width = crowded_example['image'].shape[:2]
    errors = _match_errors(prediction.people, crowded_example)
    assert len(errors) >= 3
    assert errors.max() < tolerance, errors  # source px; the inputs are 0.4x to 1.25x the source
    for person in prediction.people:
        assert person['mask'].shape == (height, width)
    ious = []
    for truth in crowded_example['masks'][crowded_example['masks'].sum(axis=(1, 2)) > 5000]:
        ious.append(max((p['mask'] & truth).sum() / float((p['mask'] | truth).sum()) for p in prediction.people))
    assert len(ious) >= 2 and min(ious) > 0.6, ious
