"""machine.py: the matmul speed the docs give beside every time, TensorFlow's log level and load-time noise, and
whether the CPU has bfloat16 instructions (read from x86 and ARM cpuinfo flags)."""
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
    monkeypatch.setattr(sys, 'meta_path', list(sys.meta_path))  # the import filter it may add stays in this test
    monkeypatch.delenv('TF_CPP_MIN_LOG_LEVEL', raising=False)
    machine.quiet_tensorflow()
    assert os.environ['TF_CPP_MIN_LOG_LEVEL'] == '1'  # INFO hidden, warnings and errors shown
    monkeypatch.setenv('TF_CPP_MIN_LOG_LEVEL', '0')
    machine.quiet_tensorflow()
    assert os.environ['TF_CPP_MIN_LOG_LEVEL'] == '0'


def test_library_load_noise_is_dropped_and_anything_else_kept(tmp_path, capfd):
    """What a library writes to file descriptor 2 while it loads: TensorFlow's pre-absl INFO lines are dropped
    (they ignore TF_CPP_MIN_LOG_LEVEL), a warning and an unknown line are written back."""
    import importlib.util
    source = tmp_path / 'noisy.py'
    source.write_text(
        "import os\n"
        "os.write(2, b'WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\\n')\n"
        "os.write(2, b'I0000 00:00:1796661447.979517    7088 port.cc:153] oneDNN custom operations are on.\\n')\n"
        "os.write(2, b'W0000 00:00:1796661447.979517    7088 x.cc:1] a real warning\\n')\n"
        "os.write(2, b'something else\\n')\n")
    spec = importlib.util.spec_from_file_location('noisy', str(source))
    loader = machine._QuietLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    err = capfd.readouterr().err
    assert err == 'W0000 00:00:1796661447.979517    7088 x.cc:1] a real warning\nsomething else\n', err


def test_bfloat16_instructions_are_read_from_the_cpu_flags(tmp_path):
    with_bf16, without, broken = tmp_path / 'bf16', tmp_path / 'plain', tmp_path / 'broken'
    with_bf16.write_text('processor\t: 0\nflags\t\t: fpu sse2 avx512f avx512_bf16 amx_tile\n\n'
                         'processor\t: 1\nflags\t\t: fpu sse2 avx512f avx512_bf16 amx_tile\n')
    without.write_text('processor\t: 0\nflags\t\t: fpu sse2 avx2 avx512f avx512_vnni\n')
    broken.write_bytes(b'\xff\xfe')
    assert machine.has_bfloat16(str(with_bf16)) is True
    assert machine.has_bfloat16(str(without)) is False
    assert machine.has_bfloat16(str(tmp_path / 'missing')) is None
    assert machine.has_bfloat16(str(broken)) is None
    amx, arm, bare = tmp_path / 'amx', tmp_path / 'arm', tmp_path / 'bare'
    amx.write_text('flags\t\t: fpu avx512f amx_bf16 amx_tile\n')
    arm.write_text('processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n')
    bare.write_text('processor\t: 0\nmodel name\t: something\n')
    assert machine.has_bfloat16(str(amx)) is True
    assert machine.has_bfloat16(str(arm)) is True
    assert machine.has_bfloat16(str(bare)) is None  # no flags listed: unknown, not "no"
