"""`make docker-check`: build the CPU and the CUDA image and use them as a user would.

In each image, as its non-root user, with /data and /weights read-only and /out writable:
  1. pycaffe imports (the CUDA image: the CUDA build), and the image carries no compiler, no -dev
     package and no CUDA toolkit (the runtime stage);
  2. the group model run in CPU mode gives the host's outputs (1e-5), and asking for GPU 0 on a
     machine without one gives the one-line error, exit status 2;
  3. `make reproduce` with a missing dataset / weights file: the one-line errors, exit status 2;
  4. `make reproduce` end to end on a miniature real input assembled here (iCoseg images from
     ../shared/datasets/icoseg-dev, the same pictures laid out as MSRC, Cosal2015 and a COCO
     download for the COCO9213 builder; a VGG16-shaped caffemodel with random weights; a few
     iterations per training stage): Table 1 and the figures in /out, owned by the image's user;
     a second run skips every finished step and changes nothing.
Then `make setup && make test` from a clean copy of the project in a Debian 13 container
(`--trixie-tests fast`: `make test-fast` there, as CI does to stay within its time).

    python scripts/docker_check.py [--variants cpu,cuda] [--skip-trixie] [--trixie-tests all|fast] [--work DIR]

The images are built for the GPU architectures of CUDA_ARCH_BIN / CUDA_ARCH_PTX when these are set
(scripts/docker_image.sh), else for the defaults of scripts/build_caffe.sh.

The cache folder (default ~/.cache/gwd-docker-check) keeps the Debian 13 container's Caffe
build between runs. Every step prints its time; the first failure stops the check (exit 1).
"""
import argparse
import json
import os
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parent.parent
IMAGE_SH = ROOT / "scripts" / "docker_image.sh"
ICOSEG_DEV = ROOT.parent / "shared" / "datasets" / "icoseg-dev"
USER_UID = 1000          # the image's user (Dockerfile ARG USER_UID)
MINI_GROUPS = 2          # iCoseg groups in the miniature input
MINI_IMAGES = 6          # images per group
ITERS = 2                # iterations per training stage


class CheckFailed(Exception):
    pass


def step(name):
    """Print the step's name and, when it ends, its time."""
    class Timer:
        def __enter__(self):
            print(f"== {name}", flush=True)
            self.t = time.time()

        def __exit__(self, *exc):
            if exc[0] is None:
                print(f"   ok ({time.time() - self.t:.0f} s)", flush=True)
    return Timer()


def sh(args, check=True, **kw):
    r = subprocess.run([str(a) for a in args], text=True, **kw)
    if check and r.returncode != 0:
        raise CheckFailed(f"{' '.join(map(str, args))}: exit status {r.returncode}")
    return r


def in_image(tag, cmd, mounts=(), env=None, user=USER_UID, capture=False):
    """Run cmd (a list) in a container of the image; mounts: (host, container, 'ro'|'rw')."""
    args = [IMAGE_SH, "run", tag, "--user", str(user)]
    for host, ctr, mode in mounts:
        args += ["-v", f"{host}:{ctr}:{mode}"]
    env_args = ["env", "GLOG_minloglevel=2"] + [f"{k}={v}" for k, v in (env or {}).items()]
    kw = {"capture_output": True} if capture else {}
    r = sh(args + ["--"] + env_args + list(cmd), check=False, **kw)
    if capture:   # buildah run adds its own lines about the exit status: not the command's output
        r.stderr = "".join(line for line in r.stderr.splitlines(keepends=True)
                           if not re.fullmatch(r"(subprocess exited with status \d+|Error: exit status \d+)\s*", line))
    return r


# ---------------------------------------------------------------- the group model, both builds
def forward(deploy, weights, inputs, out):
    """Run a net in CPU mode on the blobs of inputs (.npz); save every output blob to out (.npz)."""
    import caffe
    caffe.set_mode_cpu()
    net = caffe.Net(str(deploy), str(weights), caffe.TEST)
    data = np.load(inputs)
    for name in data.files:
        net.blobs[name].data[...] = data[name]
    res = net.forward()
    np.savez(out, **{k: np.asarray(v) for k, v in res.items()})


def group_model_inputs(folder):
    """Random weights for the group deploy net and a random input batch, written to folder."""
    import caffe
    caffe.set_mode_cpu()
    caffe.set_random_seed(0)
    deploy = ROOT / "prototxt" / "group_deploy.prototxt"
    net = caffe.Net(str(deploy), caffe.TEST)
    rng = np.random.RandomState(0)
    for blobs in net.params.values():
        for b in blobs:
            b.data[...] = rng.randn(*b.data.shape).astype(np.float32) * np.sqrt(2.0 / max(1, b.data[0].size))
    net.save(str(folder / "group.caffemodel"))
    name = net.inputs[0]
    np.savez(folder / "inputs.npz", **{name: rng.rand(*net.blobs[name].data.shape).astype(np.float32) * 255})
    return deploy


def check_group_model(tag, work):
    d = work / "group-model"
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    deploy = group_model_inputs(d)
    forward(deploy, d / "group.caffemodel", d / "inputs.npz", d / "host.npz")
    out = work / "group-model-out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    os.chmod(out, 0o777)
    r = in_image(tag, [".venv/bin/python", "scripts/docker_check.py", "forward",
                       "prototxt/group_deploy.prototxt", "/data/group.caffemodel", "/data/inputs.npz",
                       "/out/image.npz"], mounts=[(d, "/data", "ro"), (out, "/out", "rw")])
    if r.returncode != 0:
        raise CheckFailed(f"{tag}: the group model did not run in CPU mode")
    host, image = np.load(d / "host.npz"), np.load(out / "image.npz")
    for k in host.files:
        diff = float(np.max(np.abs(host[k] - image[k])))
        print(f"   {k} {host[k].shape}: max |host - image| = {diff:.2e}")
        if not np.allclose(host[k], image[k], rtol=1e-5, atol=1e-5):
            raise CheckFailed(f"{tag}: output {k} differs from the host's CPU build by {diff}")


# Build tools that must not be in the runtime stage (scripts/apt-runtime-packages.txt).
BUILD_TOOLS = ("gcc", "cc", "c++", "g++", "ld", "cmake", "nvcc", "ptxas", "protoc")


def check_no_compiler(tag):
    probe = ("for t in " + " ".join(BUILD_TOOLS) + "; do command -v $t; done; "
             "find / -xdev \\( -name nvcc -o -name ptxas -o -name cicc \\) -print 2>/dev/null; "
             "dpkg-query -W -f '${Package}\\n' | grep -E -- '-dev$|^build-essential$|^(gcc|g\\+\\+|cpp)(-[0-9]+)?$'; true")
    r = in_image(tag, ["bash", "-c", probe], capture=True)
    found = r.stdout.split()
    print(f"   build tools found: {found or 'none'}")
    if r.returncode != 0 or found:
        raise CheckFailed(f"{tag}: the runtime image carries build tools: {' '.join(found)}")


def check_no_gpu_error(tag):
    r = in_image(tag, [".venv/bin/python", "-m", "core.device", "--gpu", "0"], capture=True)
    lines = r.stderr.strip().splitlines()
    print(f"   exit {r.returncode}: {r.stderr.strip()}")
    if r.returncode != 2 or len(lines) != 1 or not lines[0].startswith("error: ") or "Traceback" in r.stderr:
        raise CheckFailed(f"{tag}: GPU 0 without a GPU should give one 'error:' line and exit status 2")


# ---------------------------------------------------------------- miniature input
def icoseg_groups():
    """The first MINI_GROUPS groups of the development subset with MINI_IMAGES masked images."""
    out = []
    for g in sorted(p for p in (ICOSEG_DEV / "images").iterdir() if p.is_dir()):
        items = [(img, ICOSEG_DEV / "ground_truth" / g.name / (img.stem + ".png")) for img in sorted(g.glob("*.jpg"))]
        items = [(img, mask) for img, mask in items if mask.is_file()][:MINI_IMAGES]
        if len(items) == MINI_IMAGES:
            out.append((g.name, items))
        if len(out) == MINI_GROUPS:
            break
    return out


def write_coco(groups, coco):
    """A COCO download in miniature: train2017/ images and instances_train2017.json, one category
    per group, each image's mask as one RLE instance."""
    import cv2
    from pycocotools import mask as mask_utils
    from core.imageio import read_mask
    images, anns, cats = [], [], []
    shutil.rmtree(coco, ignore_errors=True)
    (coco / "train2017").mkdir(parents=True)
    for c, (group, items) in enumerate(groups, start=1):
        cats.append({"id": c, "name": group.split("-")[0].split(" ", 1)[-1].lower(), "supercategory": "x"})
        for img, mask in items:
            i = len(images) + 1
            name = f"{i:012d}.jpg"
            shutil.copy(img, coco / "train2017" / name)
            m = np.asfortranarray((read_mask(mask) > 0).astype(np.uint8))
            h, w = m.shape
            assert cv2.imread(str(img)).shape[:2] == (h, w)
            rle = mask_utils.encode(m)
            rle["counts"] = rle["counts"].decode("ascii")
            images.append({"id": i, "file_name": name, "height": h, "width": w})
            anns.append({"id": i, "image_id": i, "category_id": c, "iscrowd": 0, "segmentation": rle,
                         "area": float(m.sum()), "bbox": [0, 0, w, h]})
    (coco / "annotations").mkdir()
    (coco / "annotations" / "instances_train2017.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats}))


def assemble_data(work, tag):
    """The miniature DATA_ROOT and weights folder (returns them), or None without iCoseg."""
    import cv2
    from core.layout import DATASET_FOLDERS
    from core.toydata import write_vgg16_like
    if not (ICOSEG_DEV / "images").is_dir():
        return None
    data, weights = work / "data", work / "weights"
    shutil.rmtree(data, ignore_errors=True)
    shutil.rmtree(weights, ignore_errors=True)
    groups = icoseg_groups()
    layouts = {"icoseg": ("images", "ground_truth", ".jpg"), "msrc": ("images", "ground_truth", ".bmp"),
               "cosal2015": ("Image", "GroundTruth", ".jpg")}
    for key, (img_dir, gt_dir, ext) in layouts.items():
        for group, items in groups:
            g = group if key == "icoseg" else group.split("-")[0].replace(" ", "_")
            for img, mask in items:
                dst = data / DATASET_FOLDERS[key] / img_dir / g / (img.stem + ext)
                dst.parent.mkdir(parents=True, exist_ok=True)
                if ext == ".jpg":
                    shutil.copy(img, dst)
                else:
                    cv2.imwrite(str(dst), cv2.imread(str(img)))
                gt = data / DATASET_FOLDERS[key] / gt_dir / g / (img.stem + ".png")
                gt.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(mask, gt)
    write_coco(groups, work / "coco")
    # COCO9213 built by the project's builder inside the image (the way a user makes it)
    out = data / DATASET_FOLDERS["coco9213"]
    out.mkdir(parents=True)
    os.chmod(out, 0o777)
    r = in_image(tag, [".venv/bin/python", "-m", "data_prep", "coco9213", "--coco-root", "/coco/train2017",
                       "--annotations", "/coco/annotations/instances_train2017.json", "--out", "/out",
                       "--groups", str(len(groups)), "--images", str(sum(len(i) for _, i in groups))],
                 mounts=[(work / "coco", "/coco", "ro"), (out, "/out", "rw")])
    if r.returncode != 0:
        raise CheckFailed(f"{tag}: the COCO9213 builder failed")
    weights.mkdir()
    write_vgg16_like(weights / "VGG_ILSVRC_16_layers.caffemodel")
    return data, weights


def tree_state(folder):
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.stat().st_uid)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def check_missing_inputs(tag, work, data=None):
    """make reproduce without inputs (data=None: nothing at all; else the datasets but no VGG16
    weights): every problem listed, one line each, exit status 2, nothing run."""
    empty = {name: work / f"empty-{name}" for name in ("data", "weights", "out")}
    for d in empty.values():
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    os.chmod(empty["out"], 0o777)
    r = in_image(tag, ["make", "-s", "reproduce", "GPU="],
                 mounts=[(data or empty["data"], "/data", "ro"), (empty["weights"], "/weights", "ro"),
                         (empty["out"], "/out", "rw")], capture=True)
    print("   " + r.stderr.strip().replace("\n", "\n   "))
    problems = [line for line in r.stderr.splitlines() if line.startswith("  - ")]
    if r.returncode != 2 or "Traceback" in r.stderr or any(empty["out"].iterdir()):
        raise CheckFailed(f"{tag}: missing inputs should stop make reproduce with exit status 2 "
                          f"(got {r.returncode}), before anything runs")
    if not any("VGG_ILSVRC_16_layers.caffemodel" in p for p in problems):
        raise CheckFailed(f"{tag}: the missing weights file is not listed")
    if data is not None and len(problems) != 1:
        raise CheckFailed(f"{tag}: with every dataset present, only the weights should be listed")


def check_reproduce(tag, work, data, weights):
    out = work / "out"
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    os.chown(out, USER_UID, USER_UID)
    mounts = [(data, "/data", "ro"), (weights, "/weights", "ro"), (out, "/out", "rw")]
    t = time.time()
    r = in_image(tag, ["make", "reproduce", "GPU=", f"ITERS={ITERS}"], mounts=mounts)
    first = time.time() - t
    if r.returncode != 0:
        raise CheckFailed(f"{tag}: make reproduce failed (exit status {r.returncode})")
    files = tree_state(out)
    table = out / "table" / "table.md"
    figures = [f for f in files if f.startswith("table/") and f.endswith(".png")]
    owners = {uid for _, uid in files.values()}
    print(f"   first run {first:.0f} s: {len(files)} files, {len(figures)} figures in table/,"
          f" owners {sorted(owners)}")
    if not table.is_file() or not figures or owners != {USER_UID}:
        raise CheckFailed(f"{tag}: expected table/table.md and figures in /out, owned by uid {USER_UID}")
    text = table.read_text()
    print("   " + text.strip().replace("\n", "\n   "))
    missing = [w for w in ("Ours", "Ours-S", "CBCS", "CBCS-S", "iCoseg", "MSRC", "Cosal2015") if w not in text]
    if missing:
        raise CheckFailed(f"{tag}: Table 1 lacks {', '.join(missing)}")
    t = time.time()
    r = in_image(tag, ["make", "reproduce", "GPU=", f"ITERS={ITERS}"], mounts=mounts)
    second = time.time() - t
    print(f"   second run {second:.0f} s")
    if r.returncode != 0 or tree_state(out) != files:
        raise CheckFailed(f"{tag}: the second make reproduce did not skip every finished step")
    return first, second


# ---------------------------------------------------------------- Debian 13
def clean_copy(dest):
    """The project as a fresh clone would have it: the files git knows (committed or not)."""
    shutil.rmtree(dest, ignore_errors=True)
    listed = sh(["git", "-C", ROOT, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                capture_output=True).stdout.split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def check_trixie(work, target="test"):
    sh([IMAGE_SH, "base", "debian:trixie-slim"])
    src = work / "trixie" / "gwd"
    cache = work / "trixie" / "cache"
    clean_copy(src)
    cache.mkdir(parents=True, exist_ok=True)
    mounts = ["-v", f"{src}:/gwd:rw", "-v", f"{cache}:/root/.cache:rw"]
    cert = sh([IMAGE_SH, "pip-cert"], capture_output=True).stdout.strip()
    env = ["DEBIAN_FRONTEND=noninteractive"]
    if cert:
        mounts += ["-v", f"{cert}:/etc/gwd-host-ca.pem:ro"]
        env += ["PIP_CERT=/etc/gwd-host-ca.pem"]
    script = ("set -e; apt-get update -q >/dev/null; apt-get install -y -q --no-install-recommends make >/dev/null;"
              f" cd /gwd; make setup; make {target}")
    r = sh([IMAGE_SH, "run", "debian:trixie-slim", "--network", "host", *mounts, "--",
            "env", *env, "bash", "-c", script], check=False)
    if r.returncode != 0:
        raise CheckFailed(f"Debian 13: make setup && make {target} failed (exit status {r.returncode})")


# ---------------------------------------------------------------- main
def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variants", default="cpu,cuda")
    ap.add_argument("--skip-trixie", action="store_true")
    ap.add_argument("--trixie-tests", choices=("all", "fast"), default="all",
                    help="Debian 13: make test (all) or make test-fast (fast)")
    ap.add_argument("--skip-build", action="store_true", help="use the images already built")
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "gwd-docker-check"),
                    help="the miniature inputs and outputs")
    ap.add_argument("--cache", default=os.path.expanduser("~/.cache/gwd-docker-check"),
                    help="kept between runs: the Debian 13 container's Caffe build and pip cache")
    args = ap.parse_args(argv)
    work = pathlib.Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    timings = {}
    try:
        with step("container tool and the Debian 12 base"):
            sh([IMAGE_SH, "base"])
        for variant in args.variants.split(","):
            tag = f"gwd:{variant}"
            if not args.skip_build:
                with step(f"build {tag}"):
                    t = time.time()
                    sh([IMAGE_SH, "build", variant, tag])
                    timings[f"build {tag}"] = time.time() - t
            with step(f"{tag}: pycaffe imports"):
                r = in_image(tag, [".venv/bin/python", "-m", "core.device"], capture=True)
                print("   " + r.stdout.strip().replace("\n", "\n   "))
                want = "CUDA build" if variant == "cuda" else "CPU-only build"
                if r.returncode != 0 or want not in r.stdout:
                    raise CheckFailed(f"{tag}: pycaffe did not import as a {want} ({r.stderr.strip()})")
            with step(f"{tag}: the runtime stage carries no compiler"):
                check_no_compiler(tag)
            with step(f"{tag}: the group model in CPU mode, as on the host"):
                check_group_model(tag, work)
            with step(f"{tag}: GPU 0 on a machine without one"):
                check_no_gpu_error(tag)
            with step(f"{tag}: make reproduce with no inputs"):
                check_missing_inputs(tag, work)
            with step(f"{tag}: miniature input"):
                mini = assemble_data(work, tag)
            if mini is None:
                print(f"   skipped: {ICOSEG_DEV} not found (the miniature input is made from it)")
                continue
            with step(f"{tag}: make reproduce with the datasets but no weights"):
                check_missing_inputs(tag, work, mini[0])
            with step(f"{tag}: make reproduce on the miniature input, twice"):
                timings[f"reproduce {tag}"] = check_reproduce(tag, work, *mini)
        if not args.skip_trixie:
            target = "test" if args.trixie_tests == "all" else "test-fast"
            with step(f"Debian 13: make setup && make {target} from a clean copy"):
                t = time.time()
                check_trixie(pathlib.Path(args.cache), target)
                timings["debian 13 setup+test"] = time.time() - t
    except CheckFailed as e:
        print(f"docker-check FAILED: {e}", file=sys.stderr)
        return 1
    print("docker-check passed; times (s):", json.dumps({k: v if isinstance(v, float) else list(v)
                                                          for k, v in timings.items()}))
    return 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "forward":
        forward(*sys.argv[2:6])
    else:
        sys.exit(main())
