"""make gpu-bundle: the archive runs its check in a minimal Debian with nothing installed but what
the bundle carries (and the NVIDIA wheels' libraries, which the target node has), in CPU mode."""
import glob
import os
import pathlib
import shutil
import subprocess
import sys

import pytest

from core.layout import PROJECT_ROOT

CACHE = pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache"))
CHROOT_TAR = CACHE / "gwd-chroot" / "bookworm-minbase.tar"


def _cuda_build():
    """The cached CUDA build of scripts/build_caffe.sh (make caffe-cuda), or None."""
    root = pathlib.Path(os.environ.get("GWD_CAFFE_CACHE", CACHE / "gwd-caffe"))
    done = [pathlib.Path(p).parent for p in sorted(glob.glob(str(root / "cuda-[0-9]*" / ".complete")))]
    done = [d for d in done if (d / "build").is_dir()]           # not the cuda-wheels-* folders
    return done[-1] if done else None


def _minimal_debian(dest):
    """A minbase Debian 12 tree at dest (mmdebstrap, cached as a tarball)."""
    if not CHROOT_TAR.is_file():
        CHROOT_TAR.parent.mkdir(parents=True, exist_ok=True)
        part = CHROOT_TAR.with_suffix(".part.tar")
        subprocess.run(["mmdebstrap", "--quiet", "--variant=minbase", "bookworm", str(part)], check=True)
        part.rename(CHROOT_TAR)
    dest.mkdir()
    subprocess.run(["tar", "-xf", str(CHROOT_TAR), "-C", str(dest)], check=True)


def _link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _node_cuda_libs(tool, dest):
    """The CUDA runtime libraries the tool resolves here (NVIDIA's wheels), put where a node's
    wheels would be; returns the folder inside the chroot."""
    out = subprocess.run(["ldd", str(tool)], capture_output=True, text=True, check=True).stdout
    dest.mkdir(parents=True)
    for line in out.splitlines():
        parts = line.split()
        # ldd lists indirect needs too (libcublasLt through libcublas)
        if (len(parts) >= 3 and parts[1] == "=>" and not (dest / parts[0]).exists()
                and any(k in parts[0] for k in ("cublas", "curand", "nccl", "cudart"))):
            _link_or_copy(os.path.realpath(parts[2]), dest / parts[0])


@pytest.mark.slow
def test_bundle_runs_in_a_minimal_debian(tmp_path):
    build = _cuda_build()
    if build is None:
        pytest.skip("no CUDA build of Caffe (make caffe-cuda)")
    if os.geteuid() != 0 or shutil.which("chroot") is None:
        pytest.skip("needs root and chroot for the minimal Debian")
    if not CHROOT_TAR.is_file() and shutil.which("mmdebstrap") is None:
        pytest.skip("mmdebstrap not installed (apt-get install mmdebstrap)")
    dist = tmp_path / "dist"
    env = dict(os.environ, PYTHON=sys.executable, CAFFE_BUILD=str(build))
    r = subprocess.run(["scripts/gpu_bundle.sh", str(dist)], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    archive = next(dist.glob("gwd-gpu-bundle.tar.*"))
    assert archive.stat().st_size < 60 * 2**20
    if archive.suffix == ".xz":
        pytest.skip(f"the archive needed xz ({archive.stat().st_size / 2**20:.1f} MiB with gzip is over 60), "
                    "which a minimal Debian cannot unpack without python3")

    root = tmp_path / "root"
    _minimal_debian(root)
    assert not (root / "usr" / "bin" / "python3").exists()     # nothing but what the bundle carries
    (root / "check").mkdir()
    shutil.copy(archive, root / "check")
    shutil.copy(dist / "gpu_check.sh", root / "check")
    _node_cuda_libs(build / "build" / "tools" / "caffe", root / "opt" / "nvidia-wheels" / "lib")
    r = subprocess.run(["chroot", str(root), "/usr/bin/env", "-i", "PATH=/usr/bin:/bin:/usr/sbin:/sbin",
                        "GWD_CUDA_LIBS=/opt/nvidia-wheels/lib", "bash", "/check/gpu_check.sh", "/check/out"],
                       capture_output=True, text=True, timeout=3600)
    table = (root / "check" / "out" / "gpu_check.md").read_text()
    assert r.returncode == 2, r.stderr[-3000:]                # no GPU here
    assert r.stdout.strip() == table.strip()
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[2].strip("| ") for line in table.splitlines()[2:]}
    assert rows["bundle"] == "PASS" and rows["driver and device"] == "no GPU"
    assert rows["Ours: forward, GPU vs CPU"] == "no GPU" and rows["peak GPU memory"] == "no GPU"
    assert [k for k in rows if k.startswith("speed, stage")] and "FAIL" not in rows.values()
    short = next(k for k in rows if k.startswith("short training run"))
    assert rows[short] == "PASS"
    assert (root / "check" / "out" / "gwd-gpu-bundle" / "work" / "cpu" / "group_step_iter_1.caffemodel.h5").is_file()
