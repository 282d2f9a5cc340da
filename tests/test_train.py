"""train.py end to end on the CPU at small sizes (ResNet-v2-50, 65x65 inputs) on synthetic people.

One short training run (module fixture) is shared: it must lower the loss and leave a checkpoint with its
config; copies of its train dir are then resumed (same step, same momentum and moving averages), poisoned
(NaN guard), stopped by SIGTERM, and read back as averaged weights the way eval.py and demo.py do.

What it proves (about 2 minutes on 2 cores; ResNet-v2-50 from scratch, 65x65 inputs, batch 2, 6 synthetic images
without augmentation): 40 steps lower the data loss (last 10 steps against the first 5) and the heatmap loss, and
leave checkpoints at the interval and at the end with their `config.json`; the checkpoint holds non-zero momentum
slots and moving averages that differ from the weights; a restart restores every variable (weights, momentum,
averages, global step) bit for bit and continues at the next step; the averaged weights restore into an
inference graph; an infinite learning rate turns the next loss into NaN and stops the run naming that step, with
the last checkpoint untouched; two towers on `/cpu:0` and `/cpu:1` (variables on `/cpu:0`) give the loss and
every gradient of one tower on the same batch, one sample with people and one without (so the towers'
valid-position counts differ); SIGTERM to `python train.py` saves the current step and exits with 130 after
resuming the earlier run; `LOSS_STRIDE` 8 feeds and trains on stride-8 targets; bad paths, a missing or wrong
backbone checkpoint, depth 26 without --from-scratch, a train dir of another depth and inconsistent sizes fail
before TensorFlow or the graph; `CPU_BFLOAT16` runs the convolutions in bfloat16 on a CPU with bfloat16
instructions (weights read as float32, a step's losses and gradients those of float32 to bfloat16's precision)
and on a CPU without them leaves the training session float32 with a note.
"""
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest

import checkpoints
import config
import settings
import train
import train_graph

REPO_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 40  # steps of the shared run
SMALL = {  # a small model on the synthetic set: the quickstart's code path at test sizes
    'BACKBONE_DEPTH': 50,
    'INPUT_SIZE': 65,
    'BATCH_SIZE': 2,
    'NUM_GPUS': 1,
    'NUM_WORKERS': 1,
    'TRAIN_FROM_SCRATCH': True,
    'FREEZE_BATCH_NORM': False,
    'BATCH_NORM_DECAY': 0.9,
    'LEARNING_RATE': 0.003,
    'LEARNING_RATE_WARMUP_STEPS': 5,
    # No augmentation: the same few samples every epoch, so a few dozen steps visibly fit them.
    'SCALE_RANGE': (1.0, 1.0),
    'MAX_TRANSLATION': 0.0,
    'FLIP_PROBABILITY': 0.0,
    'NUM_STEPS': STEPS,
    'CHECKPOINT_EVERY': 25,
    'LOG_EVERY': 10,
    'SUMMARY_EVERY': 20,
}


def quiet(message, error=False):
    if error:
        print(message, file=sys.stderr)


@pytest.fixture(scope='module')
def synthetic_data(tmp_path_factory):
    """A tiny synthetic COCO-format set: 6 training images the small model can fit in a few dozen steps."""
    import synthetic
    return synthetic.make_dataset(str(tmp_path_factory.mktemp('synthetic')), num_train=6, num_val=2,
                                  image_size=97, seed=3, log=None)


@pytest.fixture(scope='module')
def small(synthetic_data):
    return dict(SMALL, TRAIN_ANNOTATIONS=synthetic_data['train_annotations'],
                TRAIN_IMAGES=synthetic_data['train_images'])


@pytest.fixture(scope='module')
def trained(small, tmp_path_factory):
    """The shared run: STEPS steps from scratch; returns its train dir, result, per-step losses and log lines."""
    train_dir = str(tmp_path_factory.mktemp('run'))
    steps, lines = [], []

    def log(message, error=False):
        lines.append(message)
        quiet(message, error)

    result = train.train(train_dir, log=log, on_step=steps.append, options=settings.make(overrides=small))
    return {'dir': train_dir, 'result': result, 'steps': steps, 'log': lines}


def train_command(train_dir, small, extra):
    """`python train.py` with the shared run's settings (flags and --set) followed by `extra`; a later --set
    of the same name wins, so `extra` may override them."""
    command = [sys.executable, os.path.join(REPO_DIR, 'train.py'), '--train-dir', train_dir,
               '--annotations', small['TRAIN_ANNOTATIONS'], '--images', small['TRAIN_IMAGES']]
    for name in ('BACKBONE_DEPTH', 'INPUT_SIZE', 'BATCH_SIZE', 'NUM_WORKERS', 'TRAIN_FROM_SCRATCH',
                 'FREEZE_BATCH_NORM', 'BATCH_NORM_DECAY', 'LEARNING_RATE', 'LEARNING_RATE_WARMUP_STEPS',
                 'SCALE_RANGE', 'MAX_TRANSLATION', 'FLIP_PROBABILITY'):
        command += ['--set', '%s=%r' % (name, small[name])]
    return command + list(extra)


def copy_run(trained, tmp_path):
    """A copy of the shared train dir, so a test can change it freely."""
    target = str(tmp_path / 'run')
    shutil.copytree(trained['dir'], target)
    return target


def checkpoint_values(prefix):
    """dict variable name -> numpy value of every variable of a checkpoint."""
    import tensorflow.compat.v1 as tf
    reader = tf.train.load_checkpoint(prefix)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


def test_training_lowers_the_loss_and_checkpoints(trained):
    steps, result = trained['steps'], trained['result']
    assert [s['step'] for s in steps] == list(range(1, STEPS + 1))
    assert result['start_step'] == 0 and result['step'] == STEPS and result['stopped_by'] == 'done'
    for s in steps:
        assert all(np.isfinite(v) for v in s['losses'].values())
        assert set(s['losses']) >= {'total', 'heatmap', 'segmentation', 'short', 'mid', 'long', 'intermediate',
                                    'weight_decay'}
    # The data terms (total minus weight decay) of the last steps against the first ones.
    data_loss = [s['losses']['total'] - s['losses']['weight_decay'] for s in steps]
    first, last = np.mean(data_loss[:5]), np.mean(data_loss[-10:])
    assert last < 0.75 * first, (first, last)
    heatmap = [s['losses']['heatmap'] for s in steps]
    assert np.mean(heatmap[-10:]) < 0.85 * np.mean(heatmap[:5])
    # Checkpoints at CHECKPOINT_EVERY and at the end, and the config they were trained with.
    assert result['checkpoint'] == os.path.join(trained['dir'], 'model.ckpt-%d' % STEPS)
    for step in (25, STEPS):
        assert os.path.isfile(os.path.join(trained['dir'], 'model.ckpt-%d.index' % step))
    run_config = checkpoints.load_run_config(trained['dir'])
    assert run_config['BACKBONE_DEPTH'] == 50 and run_config['INPUT_SIZE'] == 65
    assert run_config['LEARNING_RATE'] == SMALL['LEARNING_RATE']
    assert any(name.startswith('events.out.tfevents') for name in os.listdir(trained['dir']))


def test_eta_leaves_the_graph_warm_up_out(trained):
    """The progress lines' ETA comes from the steps after config.ETA_WARMUP_STEPS, whose first run builds and
    optimises the graph: none on the first line, then (steps left) x the mean time of the steps since."""
    progress = {int(line.split()[1].split('/')[0]): line for line in trained['log'] if line.startswith('step ')}
    assert sorted(progress) == [1] + list(range(SMALL['LOG_EVERY'], STEPS + 1, SMALL['LOG_EVERY']))
    assert progress[1].endswith('ETA ? (warm-up)')
    seconds = [s['step_seconds'] for s in trained['steps']]
    warm = config.ETA_WARMUP_STEPS
    for step in progress:
        if step > warm:
            left = (STEPS - step) * np.mean(seconds[warm:step])
            assert progress[step].endswith('ETA %s' % train.format_duration(left)), progress[step]


def test_eta_counts_from_a_resumed_step():
    eta = train.Eta(start_step=300, num_steps=700, start_time=100.0, warmup_steps=2)
    assert eta.seconds_left(301, 160.0) is None and eta.seconds_left(302, 161.0) is None
    assert eta.seconds_left(304, 163.0) == pytest.approx(396 * 1.0)
    assert train.Eta(0, 10, start_time=5.0, warmup_steps=0).seconds_left(2, 9.0) == pytest.approx(16.0)


def test_checkpoint_holds_momentum_and_averages(trained):
    values = checkpoint_values(trained['result']['checkpoint'])
    assert int(values['global_step']) == STEPS
    kernel = 'resnet_v2_50/conv1/weights'
    momentum = values[kernel + '/Momentum']
    average = values[kernel + '/ExponentialMovingAverage']
    assert momentum.shape == average.shape == values[kernel].shape
    assert np.abs(momentum).max() > 0  # the optimiser state is really saved, not left at its zero init
    assert not np.array_equal(average, values[kernel])  # the average lags the weights
    heads = [n for n in values if n.startswith('personlab_heads/') and n.endswith('ExponentialMovingAverage')]
    assert heads


def test_resume_restores_step_and_optimiser_state(trained, small, tmp_path):
    import tensorflow.compat.v1 as tf
    train_dir = copy_run(trained, tmp_path)
    saved = checkpoint_values(os.path.join(train_dir, 'model.ckpt-%d' % STEPS))
    options = settings.make(overrides=small)
    with tf.Graph().as_default():
        graph = train_graph.build_training_graph(options=options)
        with tf.Session() as sess:
            step, how = train.restore_or_initialise(sess, graph, train_dir, options=options)
            assert step == STEPS and 'resumed' in how
            variables = tf.global_variables()
            restored = dict(zip([v.op.name for v in variables], sess.run(variables)))
    slots = [n for n in restored if n.endswith('/Momentum')]
    averages = [n for n in restored if n.endswith('/ExponentialMovingAverage')]
    assert len(slots) > 100 and len(averages) == len(slots)
    assert set(restored) == set(saved)
    for name in restored:
        np.testing.assert_array_equal(restored[name], saved[name], err_msg=name)

    # The same command continues where the run stopped; a changed learning rate is warned about (a changed
    # NUM_STEPS is not: it only steers the run), and the previous config is kept beside the new one.
    steps, errors = [], []

    def log(message, error=False):
        if error:
            errors.append(message)
    result = train.train(train_dir, log=log, on_step=steps.append,
                         options=options.replace(NUM_STEPS=STEPS + 3, LEARNING_RATE=0.002))
    assert result['start_step'] == STEPS and 'resumed' in result['how']
    assert [s['step'] for s in steps] == [STEPS + 1, STEPS + 2, STEPS + 3]
    assert int(checkpoint_values(result['checkpoint'])['global_step']) == STEPS + 3
    warnings = [message for message in errors if 'config differs' in message]
    assert len(warnings) == 1, errors
    assert warnings[0].split('\n')[1:] == ['  LEARNING_RATE: %r -> 0.002' % SMALL['LEARNING_RATE']], warnings
    backup = os.path.join(train_dir, 'config-until-step-%d.json' % STEPS)
    with open(backup) as f:
        assert json.load(f)['config']['LEARNING_RATE'] == SMALL['LEARNING_RATE']
    assert checkpoints.load_run_config(train_dir)['LEARNING_RATE'] == 0.002


def test_averaged_weights_restore_into_an_inference_graph(trained, small):
    import tensorflow.compat.v1 as tf
    import model
    saved = checkpoint_values(trained['result']['checkpoint'])
    run_config = checkpoints.load_run_config(trained['dir'])
    with tf.Graph().as_default():
        images = tf.placeholder(tf.uint8, [1, 65, 65, 3])
        outputs = model.build_model(images, is_training=False, depth=run_config['BACKBONE_DEPTH'],
                                    options=settings.make(overrides=small))
        with tf.Session() as sess:
            restored = checkpoints.restore_averaged_weights(sess, trained['dir'])
            assert restored == trained['result']['checkpoint']
            variables = tf.global_variables()
            values = dict(zip([v.op.name for v in variables], sess.run(variables)))
            heatmaps = sess.run(outputs['heatmaps'], {images: np.zeros([1, 65, 65, 3], np.uint8)})
    assert np.isfinite(heatmaps).all()
    for name, value in values.items():
        if name + '/ExponentialMovingAverage' in saved:
            np.testing.assert_array_equal(value, saved[name + '/ExponentialMovingAverage'], err_msg=name)
        else:  # batch-norm moving statistics are not averaged: restored as trained
            np.testing.assert_array_equal(value, saved[name], err_msg=name)


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(trained, small, tmp_path):
    train_dir = copy_run(trained, tmp_path)
    before = checkpoint_values(os.path.join(train_dir, 'model.ckpt-%d' % STEPS))
    # An infinite learning rate turns the weights into inf/NaN at the first update; the next loss is NaN.
    poisoned = dict(small, LEARNING_RATE=float('inf'), NUM_STEPS=STEPS + 10, CHECKPOINT_EVERY=1000)
    with pytest.raises(train.NonFiniteError) as error:
        train.train(train_dir, log=quiet, options=settings.make(overrides=poisoned))
    assert error.value.step == STEPS + 2
    message = str(error.value)
    assert 'step %d' % (STEPS + 2) in message and 'total=nan' in message
    import tensorflow.compat.v1 as tf
    assert tf.train.latest_checkpoint(train_dir).endswith('model.ckpt-%d' % STEPS)
    after = checkpoint_values(os.path.join(train_dir, 'model.ckpt-%d' % STEPS))
    for name, value in before.items():
        np.testing.assert_array_equal(after[name], value, err_msg=name)


def test_nan_weights_are_not_checkpointed_and_the_command_exits_3(trained, small, tmp_path):
    """The save-time guard: with a checkpoint every step, the first poisoned update (its loss, computed
    before the update, still finite) reaches save(), which must refuse the inf/NaN weights."""
    train_dir = copy_run(trained, tmp_path)
    before = sorted(os.listdir(train_dir))
    command = train_command(train_dir, small, ['--steps', str(STEPS + 10), '--checkpoint-every', '1',
                                               '--set', 'LEARNING_RATE=1e999'])  # float inf
    result = subprocess.run(command, cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    assert result.returncode == 3, result.stdout + result.stderr
    assert 'step %d: the weights hold NaN or inf' % (STEPS + 1) in result.stderr, result.stderr
    new_files = set(os.listdir(train_dir)) - set(before)
    assert not [n for n in new_files if n.startswith('model.ckpt')], new_files
    with open(os.path.join(train_dir, 'checkpoint')) as f:
        assert 'model.ckpt-%d"' % STEPS in f.readline()


def test_more_towers_than_gpus_is_an_error_and_the_command_exits_2(small, tmp_path):
    assert train_graph.tower_devices(1, gpus=0) == ['/cpu:0']
    assert train_graph.tower_devices(2, gpus=2) == ['/gpu:0', '/gpu:1']
    for towers, gpus in ((2, 0), (3, 2)):
        with pytest.raises(train_graph.DeviceError, match='NUM_GPUS is %d but %d GPU' % (towers, gpus)):
            train_graph.tower_devices(towers, gpus=gpus)
    # More towers than this machine has GPUs, with or without GPUs (the command sees the same devices); one
    # tower on a machine without GPUs is the CPU run.
    import tensorflow as tf2
    gpus = len(tf2.config.list_physical_devices('GPU'))
    towers = max(gpus + 1, 2)
    command = train_command(str(tmp_path / 'run'), small, ['--steps', '1', '--set', 'NUM_GPUS=%d' % towers,
                                                          '--set', 'BATCH_SIZE=%d' % towers])
    result = subprocess.run(command, cwd=str(tmp_path), capture_output=True, text=True, timeout=300)
    assert result.returncode == 2, result.stdout + result.stderr
    assert 'NUM_GPUS is %d but %d GPU(s) are visible' % (towers, gpus) in result.stderr, result.stderr
    assert not checkpoints.has_checkpoint(str(tmp_path / 'run'))


def test_checkpoint_discovery_is_shared_with_inference_and_needs_no_tensorflow(trained, tmp_path):
    newest = os.path.join(trained['dir'], 'model.ckpt-%d' % STEPS)
    assert checkpoints.latest(trained['dir']) == checkpoints.find(trained['dir']) == newest
    assert checkpoints.checkpoint_step(str(tmp_path)) is None
    assert checkpoints.checkpoint_step(str(tmp_path / 'no')) is None
    code = ('import sys, checkpoints\n'
            'print(checkpoints.checkpoint_step(sys.argv[1]), checkpoints.latest(sys.argv[1]))\n'
            'print("TENSORFLOW_IMPORTED=%s" % ("tensorflow" in sys.modules))\n')
    result = subprocess.run([sys.executable, '-c', code, trained['dir']], cwd=REPO_DIR, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split('\n')[:2] == ['%d %s' % (STEPS, newest), 'TENSORFLOW_IMPORTED=False']


def test_loss_check_names_the_step_and_the_loss():
    with pytest.raises(train.NonFiniteError, match='step 7: non-finite loss mid'):
        train._check_finite(7, {'total': 1.0, 'mid': float('inf'), 'heatmap': 0.5})
    train._check_finite(7, {'total': 1.0, 'mid': 0.0})


def test_two_towers_match_one_tower(synthetic_data, small, tmp_path):
    """Synchronous towers give one tower's loss and gradient on the whole batch, for any batch: here one
    sample with people and one of another image whose people are removed, so the towers' valid-position
    counts differ (all zero in the second tower)."""
    import tensorflow.compat.v1 as tf
    import data_generator
    # FREEZE_BATCH_NORM: batch statistics would differ per tower
    options = settings.make(overrides=dict(small, FREEZE_BATCH_NORM=True, BATCH_SIZE=2))
    dataset = data_generator.CocoPersons(options.TRAIN_ANNOTATIONS, options.TRAIN_IMAGES, options=options)
    rng = np.random.default_rng(0)
    sample = data_generator.augment_example(dataset.load_example(dataset.image_ids[0]), rng, 65, 16,
                                            options=options)
    assert sample['heatmaps'].any() and sample['long_valid'].any()
    empty = dict(dataset.load_example(dataset.image_ids[1]))
    num_keypoints = empty['keypoints'].shape[1]
    height, width = empty['image'].shape[:2]
    empty.update(keypoints=np.zeros([0, num_keypoints, 3], np.float32),
                 masks=np.zeros([0, height, width], bool), crowd_mask=np.zeros([height, width], bool))
    no_people = data_generator.augment_example(empty, rng, 65, 16, options=options)
    assert not no_people['heatmaps'].any() and not no_people['long_valid'].any()
    assert no_people['image'].any()
    batch = {name: np.stack([sample[name], no_people[name]]) for name in sample}
    weights = str(tmp_path / 'init')

    def run(devices, session_config=None):
        with tf.Graph().as_default():
            tf.set_random_seed(0)
            graph = train_graph.build_training_graph(devices=devices, options=options)
            saver = tf.train.Saver()
            with tf.Session(config=session_config) as sess:
                if devices == ['/cpu:0']:
                    sess.run(tf.global_variables_initializer())
                    saver.save(sess, weights)
                else:
                    saver.restore(sess, weights)
                feed = {graph['inputs'][name]: batch[name] for name in graph['inputs']}
                losses, grads = sess.run(
                    [graph['losses'], [g for g, _ in graph['grads_and_vars']]], feed)
                names = [v.op.name for _, v in graph['grads_and_vars']]
                devices_used = {op.device for op in tf.get_default_graph().get_operations()
                                if op.name.startswith('tower_1/') and op.type == 'Conv2D'}
                variable_devices = {v.device for v in tf.global_variables()}
        return losses, dict(zip(names, grads)), devices_used, variable_devices

    one_loss, one_grads, _, _ = run(['/cpu:0'])
    two_loss, two_grads, tower1_devices, variable_devices = run(
        ['/cpu:0', '/cpu:1'], tf.ConfigProto(device_count={'CPU': 2}))
    assert tower1_devices and all(d.lower().endswith('cpu:1') for d in tower1_devices), tower1_devices
    assert all(d.lower().endswith('cpu:0') for d in variable_devices), variable_devices
    assert set(one_loss) == set(two_loss)
    for name in one_loss:
        np.testing.assert_allclose(two_loss[name], one_loss[name], rtol=1e-4, err_msg=name)
    assert set(one_grads) == set(two_grads) and len(one_grads) > 100
    for name, grad in one_grads.items():
        scale = np.abs(grad).max() + 1e-12
        np.testing.assert_allclose(two_grads[name], grad, rtol=1e-3, atol=1e-4 * scale, err_msg=name)


def test_sigterm_saves_a_checkpoint_and_the_same_command_resumes(trained, small, tmp_path):
    train_dir = copy_run(trained, tmp_path)
    command = train_command(train_dir, small, ['--steps', '100000', '--checkpoint-every', '100000',
                                               '--set', 'LOG_EVERY=1'])
    process = subprocess.Popen(command, cwd=str(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               text=True)
    lines = []
    try:
        for line in process.stdout:
            lines.append(line)
            if line.startswith('step %d/' % (STEPS + 2)):
                process.send_signal(signal.SIGTERM)
                break
        output, _ = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    lines += output.splitlines(True)
    text = ''.join(lines)
    assert process.returncode == 130, text
    stopped = [l for l in lines if 'stopped by SIGTERM at step' in l]
    assert stopped, text
    step = int(stopped[0].split('at step')[1].split(';')[0])
    assert step >= STEPS + 2
    assert checkpoint_values(os.path.join(train_dir, 'model.ckpt-%d' % step))['global_step'] == step
    assert 'resumed from %s' % os.path.join(train_dir, 'model.ckpt-%d' % STEPS) in text


def run_cli(args, tmp_path, env=None):
    """train.main(args) in a fresh interpreter (environment `env`, default this one's); also reports whether
    TensorFlow got imported."""
    code = ('import sys, train\n'
            'code = train.main(sys.argv[1:])\n'
            'print("TENSORFLOW_IMPORTED=%s" % ("tensorflow" in sys.modules))\n'
            'sys.exit(code)\n')
    return subprocess.run([sys.executable, '-c', code] + args, cwd=REPO_DIR, capture_output=True, text=True,
                          timeout=120, env=env)


def test_bad_paths_fail_before_tensorflow_is_imported(tmp_path):
    blocker = tmp_path / 'a_file'
    blocker.write_text('not a folder')
    result = run_cli(['--annotations', str(tmp_path / 'missing.json'), '--images', str(tmp_path / 'no_images'),
                      '--train-dir', str(blocker / 'run')], tmp_path)
    assert result.returncode == 2, result.stderr
    assert 'TENSORFLOW_IMPORTED=False' in result.stdout
    for text in ('missing.json', 'no_images', str(blocker / 'run'), 'not writable'):
        assert text in result.stderr, result.stderr
    # A good train dir is not created when another path is bad.
    result = run_cli(['--annotations', str(tmp_path / 'missing.json'), '--images', str(tmp_path),
                      '--train-dir', str(tmp_path / 'new' / 'run')], tmp_path)
    assert result.returncode == 2 and 'missing.json' in result.stderr, result.stderr
    assert not os.path.exists(str(tmp_path / 'new'))
    assert sorted(os.listdir(str(tmp_path))) == ['a_file']  # no probe file left either


def test_missing_backbone_checkpoint_says_where_to_get_it(synthetic_data, tmp_path):
    args = ['--annotations', synthetic_data['train_annotations'], '--images', synthetic_data['train_images'],
            '--train-dir', str(tmp_path / 'run'), '--depth', '50',
            '--backbone-checkpoint', str(tmp_path / 'resnet_v2_50.ckpt')]
    result = run_cli(args, tmp_path)
    assert result.returncode == 2, result.stderr
    assert 'TENSORFLOW_IMPORTED=False' in result.stdout
    assert 'resnet_v2_50_2017_04_14' in result.stderr and '--from-scratch' in result.stderr
    assert str(tmp_path / 'resnet_v2_50.ckpt') in result.stderr
    # A train dir that already holds a checkpoint resumes from it and needs no backbone checkpoint.
    os.makedirs(str(tmp_path / 'run'), exist_ok=True)
    (tmp_path / 'run' / 'checkpoint').write_text('model_checkpoint_path: "model.ckpt-1"\n')
    train.check_settings(str(tmp_path / 'run'), options=settings.make(overrides={
        'BACKBONE_CHECKPOINT': str(tmp_path / 'nothing.ckpt'), 'TRAIN_ANNOTATIONS': synthetic_data['train_annotations'],
        'TRAIN_IMAGES': synthetic_data['train_images']}))


def test_depth_26_trains_from_scratch_only(synthetic_data, tmp_path):
    import resnet
    assert train.BACKBONE_DEPTHS == tuple(sorted(resnet.BLOCKS))
    args = ['--annotations', synthetic_data['train_annotations'], '--images', synthetic_data['train_images'],
            '--train-dir', str(tmp_path / 'run'), '--depth', '26']
    result = run_cli(args, tmp_path)
    assert result.returncode == 2, result.stderr
    assert 'ResNet-v2-26 has no ImageNet checkpoint' in result.stderr and '--from-scratch' in result.stderr
    assert 'TENSORFLOW_IMPORTED=False' in result.stdout
    train.check_settings(str(tmp_path / 'run'), options=settings.make(overrides={
        'BACKBONE_DEPTH': 26, 'TRAIN_FROM_SCRATCH': True, 'TRAIN_ANNOTATIONS': synthetic_data['train_annotations'],
        'TRAIN_IMAGES': synthetic_data['train_images']}))


def test_resuming_a_run_of_another_depth_fails_before_the_graph(synthetic_data, tmp_path):
    """A train dir whose checkpoints are of another network (the quickstart preset's depth changed) is refused by
    name before TensorFlow, not by a checkpoint mismatch after the graph is built."""
    run = tmp_path / 'run'
    run.mkdir()
    (run / 'checkpoint').write_text('model_checkpoint_path: "model.ckpt-700"\n')
    (run / 'config.json').write_text(json.dumps({'config': {'BACKBONE_DEPTH': 50, 'INTERMEDIATE_SUPERVISION': True}}))
    args = ['--annotations', synthetic_data['train_annotations'], '--images', synthetic_data['train_images'],
            '--train-dir', str(run), '--depth', '26', '--from-scratch']
    result = run_cli(args, tmp_path)
    assert result.returncode == 2, result.stderr
    assert 'TENSORFLOW_IMPORTED=False' in result.stdout
    assert 'BACKBONE_DEPTH 50 (now 26)' in result.stderr and '--train-dir' in result.stderr
    train.check_settings(str(run), options=settings.make(overrides={  # the same depth resumes
        'BACKBONE_DEPTH': 50, 'TRAIN_ANNOTATIONS': synthetic_data['train_annotations'],
        'TRAIN_IMAGES': synthetic_data['train_images']}))


def test_a_backbone_checkpoint_of_the_wrong_network_fails_before_the_graph(small, tmp_path):
    import tensorflow.compat.v1 as tf
    prefix = str(tmp_path / 'wrong' / 'resnet_v2_50.ckpt')
    with tf.Graph().as_default():
        tf.get_variable('resnet_v2_50/conv1/weights', [3, 3, 3, 8])
        with tf.Session() as sess:
            sess.run(tf.global_variables_initializer())
            tf.train.Saver().save(sess, prefix, write_meta_graph=False)
    train_dir = str(tmp_path / 'run')
    options = settings.make(overrides=dict(small, TRAIN_FROM_SCRATCH=False, BACKBONE_CHECKPOINT=prefix))
    with pytest.raises(train.BadPathError, match='resnet_v2_50/conv1/weights') as error:
        train.train(train_dir, log=quiet, options=options)
    assert 'resnet_v2_50_2017_04_14' in str(error.value)
    assert not os.path.exists(os.path.join(train_dir, checkpoints.CONFIG_SNAPSHOT))  # stopped before the session


def test_config_overrides_are_checked_and_restored():
    before = config.LEARNING_RATE
    assert settings.make(overrides={'LEARNING_RATE': 0.5}).LEARNING_RATE == 0.5
    assert config.LEARNING_RATE == before
    with pytest.raises(ValueError, match='LEARNIN_RATE'):
        train.options_from_args(train.parse_args(['--set', 'LEARNIN_RATE=0.5']))
    args = train.parse_args(['--preset', 'quickstart', '--steps', '7', '--set', 'LEARNING_RATE=2e-3',
                             '--set', 'TRAIN_DIR=/tmp/x y'])
    options = train.options_from_args(args)
    assert options.NUM_STEPS == 7 and options.LEARNING_RATE == 2e-3
    assert options.TRAIN_DIR == '/tmp/x y'
    for name, value in config.QUICKSTART.items():
        if name not in ('NUM_STEPS', 'LEARNING_RATE', 'TRAIN_DIR'):
            assert getattr(options, name) == value
    # Values config.py derives from RADIUS at import do not follow a preset's RADIUS: a preset that changes
    # RADIUS must state them.
    for preset in settings.PRESETS:
        values = settings.preset_overrides(preset)
        if 'RADIUS' in values:
            assert {'OFFSET_LOSS_NORM', 'OFFSET_OUTPUT_SCALE'} <= set(values), preset


def test_input_size_and_batch_split_are_checked_first(tmp_path):
    with pytest.raises(ValueError, match='INPUT_SIZE must be n\\*16\\+1'):
        train.check_settings(str(tmp_path), options=settings.make(overrides={'INPUT_SIZE': 400}))
    with pytest.raises(ValueError, match='multiple of NUM_GPUS'):
        train.check_settings(str(tmp_path), options=settings.make(overrides={'BATCH_SIZE': 3, 'NUM_GPUS': 2}))
    for loss_stride in (5, 32, 0):
        with pytest.raises(ValueError, match='LOSS_STRIDE must be a positive divisor of TRAIN_OUTPUT_STRIDE'):
            train.check_settings(str(tmp_path), options=settings.make(overrides={'LOSS_STRIDE': loss_stride}))


def test_losses_on_a_finer_grid_feed_targets_of_that_stride(small, tmp_path):
    """LOSS_STRIDE 8 at output stride 16: the generator makes stride-8 targets (9x9 on a 65 px crop, not 5x5),
    the graph upsamples the outputs to them, and training runs and records the setting with its checkpoint."""
    options = settings.make(overrides=dict(small, LOSS_STRIDE=8, NUM_STEPS=2, CHECKPOINT_EVERY=2))
    import tensorflow.compat.v1 as tf
    with tf.Graph().as_default():
        graph = train_graph.build_training_graph(options=options)
        assert graph['inputs']['heatmaps'].shape.as_list() == [2, 9, 9, config.NUM_KEYPOINTS]
    steps = []
    result = train.train(str(tmp_path), log=quiet, on_step=steps.append, options=options)
    assert result['step'] == 2 and all(np.isfinite(v) for s in steps for v in s['losses'].values())
    assert checkpoints.load_run_config(str(tmp_path))['LOSS_STRIDE'] == 8


def test_a_run_from_before_a_model_setting_existed_is_built_as_it_was_trained(tmp_path):
    """config.json of a run older than LONG_SELF_REFINEMENT_STEPS: the model is built without the
    self-refinement it never had; a newer run's own value wins over config.py's."""
    import json
    snapshot = {name: value for name, value in settings.defaults().to_json().items()
                if name != 'LONG_SELF_REFINEMENT_STEPS'}
    with open(str(tmp_path / checkpoints.CONFIG_SNAPSHOT), 'w') as f:
        json.dump({'config': snapshot}, f)
    assert checkpoints.model_overrides(str(tmp_path))['LONG_SELF_REFINEMENT_STEPS'] == 0
    snapshot['LONG_SELF_REFINEMENT_STEPS'] = 3
    with open(str(tmp_path / checkpoints.CONFIG_SNAPSHOT), 'w') as f:
        json.dump({'config': snapshot}, f)
    assert checkpoints.model_overrides(str(tmp_path))['LONG_SELF_REFINEMENT_STEPS'] == 3


def tiny_run(train_dir, keep, steps=(), name='weights', shape=(8,)):
    """A graph with the keys restore_or_initialise uses (one variable `name`, global_step, the Saver with
    max_to_keep=keep) in a session, as a train.py run builds them; saves at `steps` with weights = the step.
    Returns (session, graph dict); the caller closes the session."""
    import tensorflow.compat.v1 as tf
    tf.disable_eager_execution()
    graph = tf.Graph()
    with graph.as_default():
        weights = tf.get_variable(name, shape, initializer=tf.zeros_initializer())
        global_step = tf.train.get_or_create_global_step()
        value = tf.placeholder(tf.int64, [])
        set_step = tf.group(tf.assign(global_step, value), tf.assign(weights, tf.fill(shape, tf.cast(value,
                                                                                                      tf.float32))))
        run = {'saver': tf.train.Saver(max_to_keep=keep, save_relative_paths=True), 'global_step': global_step,
               'weights': weights, 'reset_averages': tf.no_op()}
        sess = tf.Session(graph=graph)
        sess.run(tf.global_variables_initializer())
        for step in steps:
            sess.run(set_step, {value: step})
            run['saver'].save(sess, os.path.join(train_dir, checkpoints.CHECKPOINT_PREFIX), global_step=step,
                              write_meta_graph=False)
    return sess, run


def _steps_on_disk(train_dir):
    import checkpoints
    return [checkpoints.step_of(p) for p in checkpoints.all_in(train_dir)]


def test_restarts_keep_at_most_checkpoints_to_keep_and_no_leftovers(tmp_path):
    """Every restart has a new Saver, which knows nothing of its predecessors' checkpoints; saves cut short
    leave TensorFlow's partial files. A run that starts prunes both, and its Saver deletes the rest."""
    train_dir = str(tmp_path)
    for steps in ((5, 10), (15, 25), (40,)):  # three earlier runs, each keeping 2 of its own
        tiny_run(train_dir, 2, steps)[0].close()
    leftovers = ['model.ckpt-45.data-00000-of-00001.tempstate1704991444316822412',  # SIGKILL during a save
                 'model.ckpt-44.data-00000-of-00001',  # renamed, but its index never written
                 'checkpoint.tmp3f2a9c']
    for name in leftovers:
        with open(os.path.join(train_dir, name), 'wb') as f:
            f.write(b'\0' * 1000)
    assert _steps_on_disk(train_dir) == [5, 10, 15, 25, 40]
    sess, run = tiny_run(train_dir, 2)
    with sess:
        step, how = train.restore_or_initialise(sess, run, train_dir, log=quiet,
                                                options=settings.make(overrides={'CHECKPOINTS_TO_KEEP': 2}))
        assert step == 40 and how.startswith('resumed') and sess.run(run['weights'])[0] == 40
        assert _steps_on_disk(train_dir) == [25, 40]
        assert not set(leftovers) & set(os.listdir(train_dir)), os.listdir(train_dir)
        for step in (41, 42):
            run['saver'].save(sess, os.path.join(train_dir, checkpoints.CHECKPOINT_PREFIX), global_step=step,
                              write_meta_graph=False)
        assert _steps_on_disk(train_dir) == [41, 42]
        assert sorted(n for n in os.listdir(train_dir) if n.startswith('model.ckpt')) == [
            'model.ckpt-%d.%s' % (s, end) for s in (41, 42) for end in ('data-00000-of-00001', 'index')]


def test_a_damaged_newest_checkpoint_resumes_from_the_previous_one(tmp_path):
    train_dir = str(tmp_path)
    tiny_run(train_dir, 5, (10, 20))[0].close()
    damaged = os.path.join(train_dir, 'model.ckpt-20')
    os.truncate(damaged + '.data-00000-of-00001', 10)
    messages = []
    sess, run = tiny_run(train_dir, 5)
    with sess:
        step, how = train.restore_or_initialise(sess, run, train_dir,
                                                log=lambda message, error=False: messages.append(message))
        assert step == 10 and sess.run(run['weights'])[0] == 10, how
    assert 'WARNING: %s cannot be read (OutOfRangeError' % damaged in messages[0], messages
    assert 'deleting the damaged %s' % damaged in messages[1] and _steps_on_disk(train_dir) == [10]
    # Another model's checkpoint (other variables) is not "damaged": it stays, and the error says so.
    sess, run = tiny_run(train_dir, 5, name='other')
    with sess, pytest.raises(train.CheckpointMismatchError, match='do not match this model'):
        train.restore_or_initialise(sess, run, train_dir, log=quiet)
    assert _steps_on_disk(train_dir) == [10]


def test_a_second_training_in_the_same_train_dir_refuses_naming_the_first(small, tmp_path):
    import checkpoints
    train_dir = str(tmp_path / 'run')
    os.makedirs(train_dir)
    holder = subprocess.Popen([sys.executable, '-c', 'import sys, time, checkpoints\n'
                               'lock = checkpoints.TrainDirLock(sys.argv[1]).acquire()\n'
                               'print("locked", flush=True)\ntime.sleep(600)\n', train_dir],
                              cwd=REPO_DIR, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'locked'
        before = sorted(os.listdir(train_dir))
        result = subprocess.run(train_command(train_dir, small, ['--steps', str(STEPS + 5)]), cwd=str(tmp_path),
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 2, result.stdout + result.stderr
        assert 'in use by another training (pid %d on ' % holder.pid in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert sorted(os.listdir(train_dir)) == before
        with pytest.raises(checkpoints.TrainDirBusyError, match='pid %d' % holder.pid):
            checkpoints.TrainDirLock(train_dir).acquire()
    finally:
        holder.kill()  # SIGKILL: the kernel drops the lock, nothing stays stuck
        holder.wait()
    with checkpoints.TrainDirLock(train_dir):
        with pytest.raises(checkpoints.TrainDirBusyError, match='this process'):
            checkpoints.TrainDirLock(train_dir).acquire()
    checkpoints.TrainDirLock(train_dir).acquire().release()


def test_cpu_bfloat16_runs_the_convolutions_in_bfloat16_with_float32_weights(synthetic_data, small):
    """CPU_BFLOAT16: the session's graph rewrite computes the convolutions in bfloat16, the variables stay
    float32, and the step's losses and gradients are those of float32 to bfloat16's precision."""
    import tensorflow.compat.v1 as tf
    import data_generator
    import machine
    options = settings.make(overrides=dict(small, BATCH_SIZE=1, BACKBONE_DEPTH=26))
    on = options.replace(CPU_BFLOAT16=True)
    base = tf.ConfigProto(allow_soft_placement=True)
    assert train.bfloat16_config(base, options, cpu_has_bfloat16=True) is base  # off by default
    assert train.bfloat16_config(base, on, cpu_has_bfloat16=False) is base  # no emulated bfloat16
    if not machine.has_bfloat16():
        pytest.skip('this CPU has no bfloat16 instructions (AVX512_BF16, AMX): training stays float32 here')
    if os.environ.get('TF_ENABLE_ONEDNN_OPTS') == '0':
        pytest.skip('oneDNN is turned off (TF_ENABLE_ONEDNN_OPTS=0): its bfloat16 rewrite does not run')
    config_on = train.bfloat16_config(base, on)
    assert base.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 == 0  # a copy, base untouched
    assert config_on.allow_soft_placement
    dataset = data_generator.CocoPersons(options.TRAIN_ANNOTATIONS, options.TRAIN_IMAGES, options=options)
    sample = data_generator.augment_example(dataset.load_example(dataset.image_ids[0]),
                                            np.random.default_rng(0), 65, 16, options=options)
    batch = {name: value[None] for name, value in sample.items()}

    def run(session_config):
        with tf.Graph().as_default():
            tf.set_random_seed(0)
            graph = train_graph.build_training_graph(devices=['/cpu:0'], options=options)
            with tf.Session(config=session_config) as sess:
                sess.run(tf.global_variables_initializer())
                feed = {graph['inputs'][name]: batch[name] for name in graph['inputs']}
                metadata = tf.RunMetadata()
                losses, grads = sess.run([graph['losses'], [g for g, _ in graph['grads_and_vars']]], feed,
                                         options=tf.RunOptions(output_partition_graphs=True),
                                         run_metadata=metadata)
        nodes = [node for g in metadata.partition_graphs for node in g.node]
        conv_types = {node.attr['T'].type for node in nodes if 'T' in node.attr and node.op in (
            'Conv2D', '_MklConv2D', '_MklNativeConv2D', '_FusedConv2D', '_MklFusedConv2D', '_MklNativeFusedConv2D')}
        # what the graph reads from the variables it runs on: their stored type
        variable_types = {node.attr['dtype'].type for node in nodes
                          if node.op in ('ReadVariableOp', 'VarHandleOp') and 'dtype' in node.attr}
        return losses, np.concatenate([g.ravel() for g in grads]), conv_types, variable_types

    loss32, grad32, types32, _ = run(base)
    loss16, grad16, types16, variables16 = run(config_on)
    assert types32 == {tf.float32.as_datatype_enum}
    assert tf.bfloat16.as_datatype_enum in types16, types16
    assert tf.float32.as_datatype_enum in variables16 and tf.bfloat16.as_datatype_enum not in variables16
    for name in ('heatmap', 'short', 'mid', 'total'):
        np.testing.assert_allclose(loss16[name], loss32[name], rtol=0.05, err_msg=name)
    cosine = grad16.dot(grad32) / np.linalg.norm(grad16) / np.linalg.norm(grad32)
    assert cosine > 0.95, cosine


def test_cpu_bfloat16_on_a_cpu_without_it_trains_in_float32_and_says_so(small, tmp_path, monkeypatch):
    """A preset asking for bfloat16 on a CPU without its instructions: a note, and the session float32."""
    import tensorflow.compat.v1 as tf
    import machine
    monkeypatch.setattr(machine, 'has_bfloat16', lambda cpuinfo=None: False)
    configs, lines = [], []
    real_session = tf.Session

    def session(*args, **kwargs):
        configs.append(kwargs.get('config'))
        return real_session(*args, **kwargs)

    monkeypatch.setattr(tf, 'Session', session)
    train.train(str(tmp_path / 'run'), log=lambda message, error=False: lines.append(message),
                options=settings.make(overrides=dict(small, CPU_BFLOAT16=True, NUM_STEPS=1, BACKBONE_DEPTH=26)))
    assert any('CPU_BFLOAT16' in line and 'float32' in line for line in lines), lines
    assert not any('in bfloat16' in line for line in lines if line.startswith('train: ResNet'))
    assert configs and all(c.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 == 0
                           for c in configs if c is not None)
    monkeypatch.setattr(machine, 'has_bfloat16', lambda cpuinfo=None: True)
    configs.clear()
    train.train(str(tmp_path / 'run2'), log=lambda message, error=False: None,
                options=settings.make(overrides=dict(small, CPU_BFLOAT16=True, NUM_STEPS=1, BACKBONE_DEPTH=26)))
    assert any(c is not None and c.graph_options.rewrite_options.auto_mixed_precision_onednn_bfloat16 == 1
               for c in configs)  # the training session itself gets the rewrite
