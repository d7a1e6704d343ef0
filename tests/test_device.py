"""core.device: telling a CPU-only pycaffe from a CUDA one, the driver check, CPU/GPU mode."""
import glob
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from core import device
from core.errors import UserError

from core.layout import PROJECT_ROOT as ROOT
CUDA_LIBDIRS = [pathlib.Path(os.environ.get("CUDA_HOME", "/usr/local/cuda")) / d for d in ("lib64", "lib")]


def _readelf(path):
    """(NEEDED, RUNPATH+RPATH folders) as binutils' readelf prints them: the reference."""
    out = subprocess.run(["readelf", "-d", str(path)], capture_output=True, text=True, check=True).stdout
    needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.*)\]", out)
    paths = [d for p in re.findall(r"\((?:RUNPATH|RPATH)\)\s+Library r(?:un)?path: \[(.*)\]", out)
             for d in p.split(":") if d]
    return needed, paths


def _real_elf_files():
    import _ctypes
    import numpy
    files = [pathlib.Path(sys.executable).resolve(), pathlib.Path(_ctypes.__file__)]
    files += [pathlib.Path(p) for p in glob.glob(os.path.join(os.path.dirname(numpy.__file__), "_core", "_multiarray_umath*.so"))]
    try:
        files += [p.resolve() for p in device.find_caffe_dir().glob("_caffe*.so")]
    except UserError:
        pass
    return files


@pytest.mark.skipif(shutil.which("readelf") is None, reason="binutils' readelf not installed")
def test_elf_dynamic_matches_readelf():
    files = _real_elf_files()
    assert len(files) >= 3
    for f in files:
        assert device.elf_dynamic(f) == _readelf(f), f


def test_elf_dynamic_rejects_non_elf(tmp_path):
    p = tmp_path / "_caffe.so"
    p.write_bytes(b"<html>not found</html>")
    with pytest.raises(UserError, match="not an ELF"):
        device.elf_dynamic(p)


def _cudart_dir():
    return next((d for d in CUDA_LIBDIRS if glob.glob(str(d / "libcudart.so.[0-9]*"))), None)


def _fake_pycaffe(tmp_path, link_cuda):
    """A real pair of shared objects laid out like a CMake build of pycaffe: build/lib/libcaffe.so.1.0.0
    (linked with the CUDA runtime or not) and python/caffe/_caffe.so, which finds libcaffe through
    a $ORIGIN run path. Returns the `caffe` package folder."""
    lib, pkg = tmp_path / "build" / "lib", tmp_path / "python" / "caffe"
    lib.mkdir(parents=True)
    pkg.mkdir(parents=True)
    (tmp_path / "c.c").write_text("int caffe_answer(void) { return 42; }\n")
    cmd = ["gcc", "-shared", "-fPIC", "-o", str(lib / "libcaffe.so.1.0.0"), "-Wl,-soname,libcaffe.so.1.0.0",
           "-Wl,--no-as-needed", str(tmp_path / "c.c")]
    if link_cuda:
        cmd += ["-L" + str(_cudart_dir()), "-lcudart"]
    subprocess.run(cmd, check=True)
    (tmp_path / "e.c").write_text("int caffe_answer(void); int ext(void) { return caffe_answer(); }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(pkg / "_caffe.so"), str(tmp_path / "e.c"),
                    "-Wl,--no-as-needed", "-L" + str(lib), "-l:libcaffe.so.1.0.0",
                    "-Wl,-rpath,$ORIGIN/../../build/lib"], check=True)
    return pkg


needs_gcc = pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc not installed")


@needs_gcc
def test_cpu_only_build_is_recognised(tmp_path):
    b = device.caffe_build(_fake_pycaffe(tmp_path, link_cuda=False))
    assert not b.cuda and b.cuda_libs == () and b.cuda_major is None
    assert "CPU-only" in b.describe()
    with pytest.raises(UserError, match="CPU-only build"):
        device.check_gpu(0, b.caffe_dir)


@needs_gcc
@pytest.mark.skipif(_cudart_dir() is None, reason="no CUDA runtime library to link against")
def test_cuda_build_is_recognised_through_libcaffe(tmp_path):
    pkg = _fake_pycaffe(tmp_path, link_cuda=True)
    soname = device.elf_dynamic(pkg.parent.parent / "build" / "lib" / "libcaffe.so.1.0.0")[0]
    cudart = [n for n in soname if n.startswith("libcudart")]
    assert len(cudart) == 1
    b = device.caffe_build(pkg)
    assert b.cuda and b.cuda_libs == (cudart[0],)
    assert b.cuda_major == int(cudart[0].rsplit(".", 1)[1])
    assert b.arch_bin == () and b.arch_ptx == ()
    # the build script's record of the architectures, beside the caffe package
    (pkg.parent / device.BUILD_INFO).write_text(json.dumps(
        {"variant": "cuda-13.0", "cuda_arch_bin": "80 21(20) 90", "cuda_arch_ptx": "90", "nccl": "ON"}))
    b = device.caffe_build(pkg)
    assert b.arch_bin == (80, 21, 90) and b.arch_ptx == (90,)
    assert "sm_80 sm_21 sm_90 compute_90" in b.describe()
    if not device.has_driver():
        with pytest.raises(UserError, match=r"libcuda\.so\.1 not found"):
            device.check_gpu(0, pkg)


@needs_gcc
def test_missing_libcaffe_is_a_user_error(tmp_path, monkeypatch):
    pkg = _fake_pycaffe(tmp_path, link_cuda=False)
    (pkg.parent.parent / "build" / "lib" / "libcaffe.so.1.0.0").unlink()
    # other tests of the session have loaded the real libcaffe.so.1.0.0 into this process, where
    # the fallback would find it: this case is about a process that has not
    monkeypatch.setattr(device, "_loaded_paths", set)
    with pytest.raises(UserError, match="cannot find libcaffe.so.1.0.0"):
        device.caffe_build(pkg)


def test_arch_supported():
    bins, ptx = (80, 90), (90,)
    assert device.arch_supported((8, 0), bins, ptx)
    assert device.arch_supported((8, 6), bins, ptx)       # sm_80 code runs on 8.6 and 8.9
    assert device.arch_supported((8, 9), bins, ptx)
    assert device.arch_supported((9, 0), bins, ptx)
    assert device.arch_supported((12, 0), bins, ptx)      # Blackwell: the driver compiles PTX 90
    assert not device.arch_supported((12, 0), bins, ())
    assert not device.arch_supported((7, 5), bins, ptx)   # Turing: older than every target
    assert not device.arch_supported((7, 0), bins, ptx)
    assert not device.arch_supported((8, 0), (86,), ())   # 8.6 code does not run on 8.0
    assert device.arch_supported((7, 5), (70, 75), ())


def test_parse_gpu():
    assert device.parse_gpu(None) is None
    assert device.parse_gpu("") is None
    assert device.parse_gpu(" ") is None
    assert device.parse_gpu(-1) is None
    assert device.parse_gpu("-1") is None
    assert device.parse_gpu("1") == 1
    assert device.parse_gpu(0) == 0
    with pytest.raises(UserError, match="expected a GPU number"):
        device.parse_gpu("gpu0")
    with pytest.raises(UserError, match=r"expected a GPU number >= 0, or -1"):
        device.parse_gpu("-5")      # a mistake, not the CPU


@pytest.mark.skipif(device.has_driver(), reason="an NVIDIA driver is installed here")
def test_driver_absent_is_a_user_error():
    with pytest.raises(UserError, match=r"no NVIDIA driver.*libcuda\.so\.1 not found.*--gpus all"):
        device.driver_devices()


# ---------------------------------------------------------------- the real pycaffe
def _caffe_or_skip():
    try:
        import caffe
    except ImportError:
        pytest.skip("pycaffe not installed (make setup)")
    return caffe


TINY_NET = """
name: "tiny"
input: "data" input_shape { dim: 1 dim: 1 dim: 3 dim: 3 }
layer { name: "c" type: "Convolution" bottom: "data" top: "c"
  convolution_param { num_output: 1 kernel_size: 2 weight_filler { type: "constant" value: 0.5 }
                      bias_filler { type: "constant" value: 1 } } }
"""


def _run_tiny_net(caffe, tmp_path):
    import numpy as np
    p = tmp_path / "tiny.prototxt"
    p.write_text(TINY_NET)
    net = caffe.Net(str(p), caffe.TEST)
    net.blobs["data"].data[...] = np.arange(9, dtype=np.float32).reshape(1, 1, 3, 3)
    return net.forward()["c"][0, 0]


def test_select_mode_cpu_runs_a_net(tmp_path):
    caffe = _caffe_or_skip()
    assert device.select_mode(None) == "CPU"
    assert device.select_mode("") == "CPU"
    out = _run_tiny_net(caffe, tmp_path)
    # 2x2 windows of 0..8 summed, times 0.5, plus 1: (0+1+3+4)/2+1 = 5, 7, 11, 13
    assert out.tolist() == [[5.0, 7.0], [11.0, 13.0]]


@pytest.mark.skipif(device.has_driver(), reason="an NVIDIA driver is installed here")
def test_select_mode_gpu_without_gpu_raises(tmp_path):
    _caffe_or_skip()
    with pytest.raises(UserError) as e:
        device.select_mode(0)
    assert "CPU-only build" in str(e.value) or "libcuda.so.1 not found" in str(e.value)


def test_cli_exit_status(tmp_path):
    _caffe_or_skip()
    env = dict(os.environ)
    r = subprocess.run([sys.executable, "-m", "core.device"], capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert re.search(r"pycaffe at .*: (CPU-only|CUDA) build", r.stdout)
    if not device.has_driver():
        assert "no usable GPU: no NVIDIA driver" in r.stdout
        r = subprocess.run([sys.executable, "-m", "core.device", "--gpu", "0"], capture_output=True,
                           text=True, env=env, cwd=ROOT)
        assert r.returncode == 2
        assert r.stderr.startswith("error: ") and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def _cuda_builds():
    cache = os.environ.get("GWD_CAFFE_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "gwd-caffe")
    return [pathlib.Path(p).parent for p in glob.glob(os.path.join(cache, "cuda-[0-9]*", ".complete"))]


@pytest.mark.skipif(not _cuda_builds(), reason="no CUDA build of Caffe (make caffe-cuda)")
def test_real_cuda_build(tmp_path):
    """The CUDA pycaffe that `make caffe-cuda` built: recognised as such, and it runs in CPU mode."""
    build = _cuda_builds()[0]
    b = device.caffe_build(build / "src" / "python" / "caffe")
    assert b.cuda and any(n.startswith("libcublas") for n in b.cuda_libs)
    assert b.arch_bin and b.arch_ptx
    if not device.has_driver():
        with pytest.raises(UserError, match=r"libcuda\.so\.1 not found"):
            device.check_gpu(0, b.caffe_dir)
    # a second Caffe cannot be loaded into this process: run the tiny net in a child
    code = ("import sys, pathlib; sys.path.insert(0, sys.argv[1]); import caffe; from core import device; "
            "import tests.test_device as t; print(device.select_mode(None)); "
            "print(t._run_tiny_net(caffe, pathlib.Path(sys.argv[2])).tolist()); print(caffe.__file__)")
    env = dict(os.environ, GLOG_minloglevel="2")
    r = subprocess.run([sys.executable, "-c", code, str(build / "src" / "python"), str(tmp_path)],
                       capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "CPU" and lines[1] == "[[5.0, 7.0], [11.0, 13.0]]"
    assert lines[2].startswith(str(build))


def test_gpu_memory_used_needs_a_current_context():
    # Nothing in this process has made a CUDA context current (no driver here, or pycaffe in CPU
    # mode): the reading is None rather than a number from some other context or a crash.
    assert device.gpu_memory_used() is None
