"""demo.py end to end on CPU: a real COCO image, a folder of every kind of file, a short video, no checkpoint.

The network is the shared small test checkpoint (conftest.inference_checkpoint: random weights, so the people it
finds are meaningless); what the JSON says about people is checked with a ground-truth stand-in for the
network (oracle.GroundTruthNetwork) on real annotations.
"""
import json
import os
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
from pycocotools import mask as mask_utils

import checkpoints
import config
import data_generator
import demo
import images
import inference
import networks
import oracle
import plot
from test_data_generator import _jpeg_with_exif_orientation
from test_inference import huge_png_header

SIDE = '129'  # longer side of the network input: small, fast


@pytest.fixture(scope='module')
def real_image_path(coco_sample):
    return os.path.join(coco_sample['val_images'], '000000000785.jpg')


def _run(argv, capsys):
    code = demo.main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _load(path):
    with open(path) as f:
        return json.load(f)


def _check_json(record, height, width):
    assert (record['height'], record['width']) == (height, width)
    assert record['keypoint_names'] == list(config.KEYPOINTS)
    scores = [p['score'] for p in record['people']]
    assert scores == sorted(scores, reverse=True)
    for person in record['people']:
        assert np.array(person['keypoints']).shape == (config.NUM_KEYPOINTS, 3)
        mask = mask_utils.decode(person['mask'])
        assert mask.shape == (height, width)
        assert isinstance(person['mask']['counts'], str)
        if mask.any():
            rows, cols = np.nonzero(mask)
            np.testing.assert_allclose(person['box'], [cols.min(), rows.min(), np.ptp(cols) + 1,
                                                       np.ptp(rows) + 1], atol=0.6)


def test_demo_on_a_real_image(real_image_path, inference_checkpoint, tmp_path, capsys):
    out = str(tmp_path / 'out')
    code, stdout, stderr = _run([real_image_path, '--checkpoint', inference_checkpoint, '--output', out,
                                 '--longer-side', SIDE, '--debug'], capsys)
    assert code == 0, stderr
    assert '[1/1] %s: 640x425' % real_image_path in stderr and 'network' in stderr and 'decoding' in stderr
    assert 'results for 1 of 1 inputs' in stdout
    assert 'trained on synthetic.py' not in stderr  # its config.json names COCO's annotations
    # --debug says what its pictures are, and each image's line names every file written.
    assert all('NAME_%s.jpg' % name in stderr for name in demo.DEBUG_PICTURES)
    assert '-> %s (and %s, 000000000785.json)' % (os.path.join(out, '000000000785_pose.jpg'), ', '.join(
        '000000000785_%s.jpg' % name for name in ['masks'] + list(demo.DEBUG_PICTURES))) in stderr
    image = images.read_image(real_image_path)
    for name in ('pose', 'masks'):
        picture = cv2.imread(os.path.join(out, '000000000785_%s.jpg' % name))
        assert picture.shape == image.shape
    for name in ('heatmaps', 'hough', 'offsets'):  # on the network's input: 129 x 89 padded
        assert cv2.imread(os.path.join(out, '000000000785_%s.jpg' % name)).shape == (89, 129, 3)
    record = _load(os.path.join(out, '000000000785.json'))
    _check_json(record, 425, 640)
    drawn = sum(p['score'] >= config.DEMO_PICTURE_MIN_SCORE for p in record['people'])
    assert '640x425, %s found, %d drawn;' % (demo.count_people(len(record['people'])), drawn) in stderr
    assert record['longer_sides'] == [129] and record['stride'] == config.EVAL_OUTPUT_STRIDE
    assert record['checkpoint'] == checkpoints.find(inference_checkpoint)
    # The JSON holds what the shared inference path finds with the same checkpoint.
    network = networks.CheckpointNetwork(inference_checkpoint)
    people = inference.Predictor(network, [129]).predict(image).people
    network.close()
    assert people  # checkpoint_maker's network finds people here: the comparison below is not vacuous
    assert len(record['people']) == len(people)
    for written, person in zip(record['people'], people):
        np.testing.assert_allclose(np.array(written['keypoints'])[:, :2], person['keypoints'][:, :2], atol=0.01)
        np.testing.assert_array_equal(mask_utils.decode(written['mask']), person['mask'])


def test_demo_json_and_pictures_show_the_people(coco_sample, tmp_path):
    """With the ground truth standing in for the network: the JSON gives back the annotated keypoints and
    masks in source pixels, and the pictures show them."""
    dataset = data_generator.CocoPersons(coco_sample['val_annotations'], coco_sample['val_images'])
    example = dataset.load_example(40083)
    predictor = inference.Predictor(oracle.GroundTruthNetwork(example, [401]), [401])
    lines = []
    runner = demo.Demo(predictor, None, str(tmp_path), log=lines.append)
    written = runner.image(example['file_name'], 1, 1)
    record = _load(written['json'])
    # The line counts everyone the JSON holds and those the pictures show (score >= DEMO_PICTURE_MIN_SCORE).
    drawn = sum(p['score'] >= config.DEMO_PICTURE_MIN_SCORE for p in record['people'])
    assert '%d people found, %d drawn;' % (len(record['people']), drawn) in lines[0]
    height, width = example['image'].shape[:2]
    _check_json(record, height, width)
    labelled = [(kp, mask) for kp, mask in zip(example['keypoints'], example['masks']) if (kp[:, 2] > 0).sum() >= 8]
    assert len(labelled) >= 2
    pose = cv2.cvtColor(cv2.imread(written['pose']), cv2.COLOR_BGR2RGB).astype(int)
    for keypoints, mask in labelled:
        ok = keypoints[:, 2] > 0
        distances = [np.abs(np.array(p['keypoints'])[ok, :2] - keypoints[ok, :2]).max() for p in record['people']]
        best = record['people'][int(np.argmin(distances))]
        assert min(distances) < 0.05
        decoded = mask_utils.decode(best['mask']).astype(bool)
        assert (decoded & mask).sum() / float((decoded | mask).sum()) > 0.6
        # The skeleton is drawn: pixels around the labelled keypoints changed.
        x, y = np.round(keypoints[ok, :2]).astype(int).T
        inside = (x >= 0) & (x < width) & (y >= 0) & (y < height)
        changed = np.abs(pose[y[inside], x[inside]] - example['image'][y[inside], x[inside]]).sum(axis=1) > 60
        assert changed.mean() > 0.5


def test_demo_on_a_folder_of_every_kind_of_file(real_image_path, inference_checkpoint, tmp_path, capsys):
    folder = tmp_path / 'inputs'
    folder.mkdir()
    shutil.copy(real_image_path, str(folder / 'photo.jpg'))
    bgr = cv2.imread(real_image_path)
    assert cv2.imwrite(str(folder / 'grey.png'), cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    rgba = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    rgba[:, :100, 3] = 0
    assert cv2.imwrite(str(folder / 'transparent.png'), rgba)
    assert cv2.imwrite(str(folder / 'deep.png'), bgr.astype(np.uint16) * 257)
    assert cv2.imwrite(str(folder / 'huge.jpg'), cv2.resize(bgr, (4800, 3188)))
    assert cv2.imwrite(str(folder / 'tiny.png'), bgr[:10, :10])
    # Stored 300 wide and 200 high, shown turned (EXIF orientation 6): the results are on the shown picture.
    stored = cv2.cvtColor(bgr[:200, :300], cv2.COLOR_BGR2RGB)
    (folder / 'turned.jpg').write_bytes(_jpeg_with_exif_orientation(stored, 6))
    (folder / 'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 truncated')
    (folder / 'panorama.png').write_bytes(huge_png_header(60000, 50000))  # refused before decoding
    (folder / 'notes.txt').write_text('not an image')
    out = str(tmp_path / 'out')
    code, stdout, stderr = _run([str(folder), '--checkpoint', inference_checkpoint, '--output', out,
                                 '--longer-side', SIDE], capsys)
    assert code == 0, stderr
    assert 'ignoring 1 files' in stderr
    assert 'SKIPPED %s cannot be decoded' % (folder / 'broken.jpg') in stderr
    assert 'SKIPPED %s is only 10x10 px' % (folder / 'tiny.png') in stderr
    assert 'SKIPPED %s is 60000x50000 px (3000 megapixels)' % (folder / 'panorama.png') in stderr
    assert 'skipped 3 of 9 inputs' in stderr and 'results for 6 of 9 inputs' in stdout
    for stem in ('photo', 'grey', 'transparent', 'deep', 'huge', 'turned'):
        for suffix in ('_pose.jpg', '_masks.jpg', '.json'):
            assert os.path.isfile(os.path.join(out, stem + suffix)), stem + suffix
    assert not any(name.startswith(('tiny', 'broken', 'notes', 'panorama')) for name in os.listdir(out))
    photo, deep = _load(os.path.join(out, 'photo.json')), _load(os.path.join(out, 'deep.json'))
    assert photo['people'] == deep['people']  # 16 bits / 257 gives back the 8-bit pixels exactly
    huge = _load(os.path.join(out, 'huge.json'))
    _check_json(huge, 3188, 4800)
    assert cv2.imread(os.path.join(out, 'huge_pose.jpg')).shape == (3188, 4800, 3)
    _check_json(_load(os.path.join(out, 'turned.json')), 300, 200)
    assert cv2.imread(os.path.join(out, 'turned_pose.jpg')).shape == (300, 200, 3)


def test_demo_on_a_video(real_image_path, inference_checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(config, 'DEMO_PICTURE_MIN_SCORE', 0.0)  # the test network's people score low: show all
    frames, size = 6, (160, 106)
    video = str(tmp_path / 'clip.mp4')
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*'mp4v'), 5.0, size)
    assert writer.isOpened()
    bgr = cv2.resize(cv2.imread(real_image_path), size)
    for n in range(frames):
        writer.write(np.roll(bgr, 8 * n, axis=1))
    writer.release()
    (tmp_path / 'bad.mp4').write_bytes(b'not a video')
    out = str(tmp_path / 'out')
    code, stdout, stderr = _run([video, str(tmp_path / 'bad.mp4'), '--checkpoint', inference_checkpoint,
                                 '--output', out, '--longer-side', SIDE, '--max-frames', '5'], capsys)
    assert code == 0, stderr
    assert 'SKIPPED' in stderr and 'bad.mp4' in stderr
    assert '5 frames -> %s' % os.path.join(out, 'clip_pose.mp4') in stderr
    capture = cv2.VideoCapture(os.path.join(out, 'clip_pose.mp4'))
    read = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        assert frame.shape == (size[1], size[0], 3)
        read += 1
    capture.release()
    assert read == 5
    names = sorted(os.listdir(os.path.join(out, 'clip_frames')))
    assert names == ['%06d.json' % n for n in range(5)]
    for n, name in enumerate(names):
        record = _load(os.path.join(out, 'clip_frames', name))
        assert record['frame'] == n and record['time'] == pytest.approx(n / 5.0)
        _check_json(record, size[1], size[0])
    # Frame 0's JSON holds what the shared inference path finds on that frame (as OpenCV decodes it).
    capture = cv2.VideoCapture(video)
    ok, first = capture.read()
    capture.release()
    assert ok
    first = cv2.cvtColor(first, cv2.COLOR_BGR2RGB)
    network = networks.CheckpointNetwork(inference_checkpoint)
    people = inference.Predictor(network, [int(SIDE)]).predict(first).people
    network.close()
    record = _load(os.path.join(out, 'clip_frames', names[0]))
    assert people and len(record['people']) == len(people)
    for written, person in zip(record['people'], people):
        np.testing.assert_allclose(np.array(written['keypoints'])[:, :2], person['keypoints'][:, :2], atol=0.01)
    # Skeletons were drawn: the output frame is nearer the frame with demo's drawing than the bare frame
    # (both went through the lossy codec, so no exact comparison).
    drawn = plot.draw_people(first, demo.shown(people)).astype(int)
    assert not np.array_equal(drawn, first)
    capture = cv2.VideoCapture(os.path.join(out, 'clip_pose.mp4'))
    ok, written_frame = capture.read()
    capture.release()
    written_frame = cv2.cvtColor(written_frame, cv2.COLOR_BGR2RGB).astype(int)
    changed = np.abs(drawn - first).sum(axis=2) > 0
    assert np.abs(written_frame - drawn)[changed].mean() < np.abs(written_frame - first.astype(int))[changed].mean()


def test_demo_skips_a_video_it_cannot_write_and_goes_on(real_image_path, inference_checkpoint, tmp_path,
                                                        monkeypatch, capsys):
    video = str(tmp_path / 'clip.mp4')
    writer = cv2.VideoWriter(video, cv2.VideoWriter_fourcc(*'mp4v'), 5.0, (160, 106))
    writer.write(cv2.resize(cv2.imread(real_image_path), (160, 106)))
    writer.release()

    def unwritable(stem, fps, shape):
        raise OSError('OpenCV cannot write a video to %s' % stem)

    monkeypatch.setattr(demo, 'open_video_writer', unwritable)
    out = str(tmp_path / 'out')
    code, stdout, stderr = _run([video, real_image_path, '--checkpoint', inference_checkpoint, '--output', out,
                                 '--longer-side', '65'], capsys)
    assert code == 0, stderr
    assert 'SKIPPED %s: OpenCV cannot write a video' % video in stderr and 'results for 1 of 2 inputs' in stdout
    assert os.path.isfile(os.path.join(out, '000000000785.json'))


def test_demo_with_several_scales(real_image_path, inference_checkpoint, tmp_path, monkeypatch, capsys):
    out = str(tmp_path / 'out')
    code, _, stderr = _run([real_image_path, '--checkpoint', inference_checkpoint, '--output', out,
                            '--scales', '97', '161'], capsys)
    assert code == 0, stderr
    assert 'longer side 97/161 px' in stderr
    record = _load(os.path.join(out, '000000000785.json'))
    assert record['longer_sides'] == [97, 161]
    _check_json(record, 425, 640)
    # --multi-scale runs config.EVAL_SCALES (made small here: the paper's sizes take minutes on a CPU).
    monkeypatch.setattr(config, 'EVAL_SCALES', (65, 97))
    code, _, stderr = _run([real_image_path, '--checkpoint', inference_checkpoint, '--output', out,
                            '--multi-scale'], capsys)
    assert code == 0, stderr
    assert _load(os.path.join(out, '000000000785.json'))['longer_sides'] == [65, 97]


def test_demo_quickstart_preset(real_image_path, inference_checkpoint, tmp_path, monkeypatch, capsys):
    """--preset quickstart: the preset's checkpoint folder, config.DEMO_PRESET_IMAGES synthetic validation
    images, at the preset's DEMO_LONGER_SIDE unless --longer-side says otherwise."""
    synthetic = tmp_path / 'synthetic'
    (synthetic / 'val2017').mkdir(parents=True)
    bgr = cv2.resize(cv2.imread(real_image_path), (97, 65))
    for n in range(config.DEMO_PRESET_IMAGES + 1):
        assert cv2.imwrite(str(synthetic / 'val2017' / ('%03d.jpg' % n)), bgr)
    monkeypatch.setattr(config, 'SYNTHETIC_DIR', str(synthetic))
    monkeypatch.setattr(config, 'QUICKSTART', dict(config.QUICKSTART, TRAIN_DIR=inference_checkpoint,
                                                   DEMO_LONGER_SIDE=81))
    out = str(tmp_path / 'out')
    code, stdout, stderr = _run(['--preset', 'quickstart', '--output', out], capsys)
    assert code == 0, stderr
    assert 'results for %d of %d inputs' % ((config.DEMO_PRESET_IMAGES,) * 2) in stdout
    record = _load(os.path.join(out, '000.json'))
    assert record['longer_sides'] == [81]
    assert record['checkpoint'] == checkpoints.find(inference_checkpoint)
    code, _, stderr = _run(['--preset', 'quickstart', '--output', out, '--longer-side', '65', '--limit', '1'],
                           capsys)
    assert code == 0, stderr
    assert _load(os.path.join(out, '000.json'))['longer_sides'] == [65]


def test_demo_without_a_checkpoint_says_how_to_get_one(real_image_path, tmp_path, monkeypatch, capsys):
    empty = tmp_path / 'empty'
    empty.mkdir()
    # As a user runs it: a separate process that fails at once, before building anything.
    result = subprocess.run([sys.executable, 'demo.py', real_image_path, '--checkpoint', str(empty),
                             '--output', str(tmp_path / 'out')], cwd=config.ROOT_DIR, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2
    assert 'no checkpoint in %s' % empty in result.stderr
    assert 'python train.py --preset quickstart' in result.stderr and '--checkpoint' in result.stderr
    assert not os.path.exists(str(tmp_path / 'out'))
    # Default search: config.TRAIN_DIR, then the folders of config.MODEL_DIR.
    monkeypatch.setattr(config, 'MODEL_DIR', str(tmp_path / 'model'))
    monkeypatch.setattr(config, 'TRAIN_DIR', str(tmp_path / 'model' / 'personlab'))
    code, _, stderr = _run([real_image_path, '--output', str(tmp_path / 'out')], capsys)
    assert code == 2 and config.TRAIN_DIR in stderr and 'python train.py' in stderr


def test_people_are_counted_in_words():
    assert [demo.count_people(n) for n in (0, 1, 2)] == ['0 people', '1 person', '2 people']
    people = [{'score': s} for s in (0.9, config.DEMO_PICTURE_MIN_SCORE, config.DEMO_PICTURE_MIN_SCORE / 2)]
    assert demo.people_counts(people) == '3 people found, 2 drawn'
    assert demo.people_counts(people[:1]) == '1 person found, 1 drawn'


def test_demo_refuses_what_is_not_an_image_before_loading_the_model(real_image_path, inference_checkpoint,
                                                                   tmp_path, monkeypatch, capsys):
    readme = os.path.join(config.ROOT_DIR, 'README.md')
    (tmp_path / 'clip.mp4').write_bytes(b'not a video')

    def no_model(*args, **kwargs):
        raise AssertionError('the model was loaded before the inputs were checked')

    monkeypatch.setattr(networks, 'CheckpointNetwork', no_model)
    out = tmp_path / 'out'
    code, _, stderr = _run([readme, str(tmp_path / 'clip.mp4'), '--checkpoint', inference_checkpoint,
                            '--output', str(out)], capsys)
    assert code == 2
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('demo.py: error: nothing to process: ')
    assert '%s is not an image' % readme in lines[0] and 'extensions .mp4' in lines[0]  # a video's would do
    assert '%s cannot be opened as a video' % (tmp_path / 'clip.mp4') in lines[0]
    assert not out.exists()


def test_demo_notes_a_model_trained_on_synthetic_figures(real_image_path, inference_checkpoint, tmp_path,
                                                          capsys):
    """A checkpoint whose config.json names a synthetic.py set (written outside SYNTHETIC_DIR: recognised from
    the file's first bytes) gets one note line, after the unusable inputs were skipped without the model."""
    import synthetic
    data = synthetic.make_dataset(str(tmp_path / 'figures'), num_train=1, num_val=1, image_size=65, seed=1,
                                  log=None)
    run = str(tmp_path / 'run')
    shutil.copytree(inference_checkpoint, run)
    with open(os.path.join(run, 'config.json')) as f:
        record = json.load(f)
    record['config']['TRAIN_ANNOTATIONS'] = data['train_annotations']
    with open(os.path.join(run, 'config.json'), 'w') as f:
        json.dump(record, f)
    readme = os.path.join(config.ROOT_DIR, 'README.md')
    code, stdout, stderr = _run([readme, real_image_path, '--checkpoint', run, '--output', str(tmp_path / 'out'),
                                 '--longer-side', '65'], capsys)
    assert code == 0, stderr
    notes = [line for line in stderr.splitlines() if 'trained on synthetic.py' in line]
    assert len(notes) == 1 and data['train_annotations'] in notes[0] and 'COCO' in notes[0]
    assert stderr.index('SKIPPED %s is not an image' % readme) < stderr.index('model ready')
    assert 'skipped 1 of 2 inputs' in stderr and 'results for 1 of 2 inputs' in stdout


@pytest.mark.parametrize('argv, message', [
    ([], 'give an image, a folder or a video'),
    (['/nonexistent/photo.jpg'], 'input not found: /nonexistent/photo.jpg'),
])
def test_demo_bad_arguments(argv, message, capsys):
    code, _, stderr = _run(argv, capsys)
    assert code == 2 and message in stderr


@pytest.mark.parametrize('flag, value, message', [
    ('--longer-side', '0', '--longer-side must be at least 2 px, got 0'),
    ('--longer-side', '1', '--longer-side must be at least 2 px, got 1'),
    ('--limit', '-1', '--limit must be positive'),
    ('--max-frames', '0', '--max-frames must be positive'),
    ('--scales', '0', '--scales must be longer sides in px (integers >= 2), got 0'),
])
def test_demo_rejects_a_non_positive_size(flag, value, message, capsys):
    with pytest.raises(SystemExit) as raised:
        demo.main(['photo.jpg', flag, value])  # refused while parsing, before the file is looked for
    assert raised.value.code == 2
    assert message in capsys.readouterr().err
