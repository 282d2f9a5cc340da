"""machine.py: the matmul speed the docs give beside every time, and TensorFlow's log level."""
import os
import subprocess
import sys

import config
import machine


def test_matmul_speed_is_measured_in_about_the_given_time():
    gflops = machine.matmul_gflops(seconds=0.2, size=256)
    assert 0.01 < gflops < 1e5  # a 2-core CPU of this project gives tens to hundreds


def test_machine_py_prints_one_line():
    result = subprocess.run([sys.executable, 'machine.py'], cwd=config.ROOT_DIR, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('machine: %d cores, ' % os.cpu_count())
    assert result.stdout.rstrip().endswith('GFLOP/s float32 matmul (numpy)')


def test_quiet_tensorflow_keeps_a_level_the_user_set(monkeypatch):
    monkeypatch.delenv('TF_CPP_MIN_LOG_LEVEL', raising=False)
    machine.quiet_tensorflow()
    assert os.environ['TF_CPP_MIN_LOG_LEVEL'] == '1'  # INFO hidden, warnings and errors shown
    monkeypatch.setenv('TF_CPP_MIN_LOG_LEVEL', '0')
    machine.quiet_tensorflow()
    assert os.environ['TF_CPP_MIN_LOG_LEVEL'] == '0'
