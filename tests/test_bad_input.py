"""Every command against every class of damage (issue: reliability), in a subprocess, as a user
would meet it: the exit status, one `error:` line that names the file (the last line on stderr),
no Python traceback, no Caffe "Check failed" abort, and the previous outputs byte-identical.

Classes: 1 outputs that must change together, 2 files Caffe would abort on, 3 run folders that
move, 4 unwritable or full disks (simulated by tests/fault_run.py), 5 broken dataset files,
6 interrupts, 7 settings that make no sense. The fast tests at the end check the helpers the
commands share (core.outputs, core.netcheck) in-process."""
import errno
import json
import os
import pathlib
import shutil
import signal
import stat
import subprocess
import sys
import time

import pytest

from core.errors import UserError
from core.layout import PROJECT_ROOT as ROOT
from core.layout import model_files

ENV = dict(os.environ, GLOG_minloglevel="2", GWD_PROGRESS_SECONDS="1000")
FAULT_RUN = str(ROOT / "tests" / "fault_run.py")
TINY_SINGLE = model_files("single", tiny=True)
TINY_GROUP = model_files("group", tiny=True)


def run(*argv, fault=None, timeout=300):
    """python -m argv[0] argv[1:], or under tests/fault_run.py with fault = (kind, folder)."""
    cmd = [sys.executable, "-m", *map(str, argv)]
    if fault:
        cmd = [sys.executable, FAULT_RUN, fault[0], str(fault[1]), *cmd[1:]]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=timeout)


def assert_fails_cleanly(r, *names, rc=2):
    """Exit status rc, the last stderr line the one error line naming `names`, nothing else
    that looks like a crash."""
    assert "Traceback" not in r.stderr and "Check failed" not in r.stderr, r.stderr
    lines = r.stderr.strip().splitlines()
    assert r.returncode == rc, (r.returncode, r.stderr)
    ours = [x for x in lines if x.startswith("error:") or ": error: " in x]   # argparse: "prog: error: ..."
    assert len(ours) == 1 and ours[0] == lines[-1], r.stderr
    for n in names:
        assert str(n) in lines[-1], (n, lines[-1])


def files_of(folder):
    """{relative path: bytes} of everything under folder (the outputs to keep intact)."""
    folder = pathlib.Path(folder)
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# ---------------------------------------------------------------- shared fixtures
@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """A toy dataset (two groups of five JPEGs with PNG masks), tiny weights of both models and
    a finished tiny Ours-S run of 2 iterations."""
    from core.netio import load_net
    from core.surgery import he_init
    from core.toydata import write_toy_groups
    d = tmp_path_factory.mktemp("bad_input")
    root = d / "toy"
    groups = write_toy_groups(str(root), n_groups=2, k=5)
    weights = {}
    for model, files in (("single", TINY_SINGLE), ("group", TINY_GROUP)):
        net = load_net(files.deploy)
        he_init(net, seed=1)
        net.params["conv1_1"][0].data[...] *= 0.01
        weights[model] = str(d / f"{model}.caffemodel")
        net.save(weights[model])
    runs = d / "runs"
    r = run("apps.train", *train_args(groups, root, runs / "single"), "--iters", 2, "--snapshot-every", 1)
    assert r.returncode == 0, r.stderr
    r = run("apps.predict", "--weights", weights["single"], "--model", "single", "--prototxt",
            TINY_SINGLE.deploy, "--dataset", "icoseg", "--root", root, "--out", d / "maps", "--quiet")
    assert r.returncode == 0, r.stderr
    return {"dir": d, "root": root, "groups": groups, "weights": weights, "run": runs / "single",
            "maps": d / "maps"}


def train_args(groups, root, out, model="single"):
    return ["--model", model, "--tiny", "--train-list", groups, "--data-root", root, "--out", out,
            "--base-lr", "1e-6"]


def copy_dataset(data, tmp_path):
    dst = tmp_path / "toy"
    shutil.copytree(data["root"], dst)
    return dst


def truncate(path, keep=0.5):
    b = pathlib.Path(path).read_bytes()
    pathlib.Path(path).write_bytes(b[:int(len(b) * keep)])


def eval_args(root, maps, out):
    return ["eval", "--dataset", "icoseg", "--root", root, "--method", f"Ours-S={maps}", "--out", out,
            "--workers", 1, "--no-progress"]


# ---------------------------------------------------------------- 1. outputs change together
@pytest.mark.slow
@pytest.mark.parametrize("fault", ["enospc", "erofs"])
def test_eval_on_a_failing_disk_keeps_the_previous_results_whole(data, tmp_path, fault):
    out = tmp_path / "eval"
    assert run(*eval_args(data["root"], data["maps"], out)).returncode == 0
    before = files_of(out)
    assert {"results.json", "table.md", "table.csv", "visual.png"} <= set(before)
    # with another method name every file would change: none may
    args = eval_args(data["root"], data["maps"], out)
    args[args.index(f"Ours-S={data['maps']}")] = f"Other={data['maps']}"
    r = run(*args, fault=(fault, out))
    assert_fails_cleanly(r, out)
    assert files_of(out) == before


@pytest.mark.slow
def test_eval_outputs_are_replaced_as_a_set(data, tmp_path):
    out = tmp_path / "eval"
    assert run(*eval_args(data["root"], data["maps"], out)).returncode == 0
    assert (out / "visual.png").is_file()
    r = run(*eval_args(data["root"], data["maps"], out), "--vis-groups", 0)
    assert r.returncode == 0, r.stderr
    assert not (out / "visual.png").exists()     # a figure of the earlier run would disagree
    assert not [p for p in os.listdir(out) if p.startswith(".tmp-")]


@pytest.mark.slow
@pytest.mark.parametrize("change", ["model", "variant", "solver type"])
def test_failed_resume_leaves_the_run_records_alone(data, tmp_path, change):
    run_dir = tmp_path / "run"
    shutil.copytree(data["run"], run_dir)
    before = files_of(run_dir)
    args = train_args(data["groups"], data["root"], run_dir)
    if change == "model":
        args[args.index("single")] = "group"
    elif change == "variant":
        args.remove("--tiny")
    else:
        solver = tmp_path / "sgd.prototxt"
        text = TINY_SINGLE.solver.read_text()
        solver.write_text("\n".join(x for x in text.splitlines() if not x.startswith("type")) + '\ntype: "SGD"\n')
        args += ["--solver", solver]
    r = run("apps.train", *args, "--iters", 4, "--resume")
    assert_fails_cleanly(r, run_dir)
    assert files_of(run_dir) == before


@pytest.mark.slow
def test_predict_that_fails_midway_keeps_the_previous_maps(data, tmp_path):
    import cv2
    import numpy as np
    images = tmp_path / "images"
    shutil.copytree(data["root"] / "img", images)
    out = tmp_path / "maps"
    args = ["apps.predict", "--weights", data["weights"]["single"], "--model", "single", "--prototxt",
            TINY_SINGLE.deploy, "--images", images, "--out", out, "--quiet", "--force"]
    assert run(*args).returncode == 0
    before = files_of(out)
    # a PNG whose header and end are whole but whose pixel data is damaged: found only when
    # decoded, in the middle of the run (the last group)
    png = bytearray(cv2.imencode(".png", np.random.RandomState(0).randint(0, 255, (60, 80, 3), np.uint8))[1])
    png[100:400] = bytes(300)
    (images / "g 1" / "9.png").write_bytes(bytes(png))
    r = run(*args)
    assert_fails_cleanly(r, "9.png")
    assert files_of(out) == before


def results_file(**changes):
    """A valid results.json of one run and one method, with `changes` applied to the method."""
    from eval.results import FORMAT
    method = {"name": "CBCS", "metrics": {"mF": 0.5, "AUC": 0.8, "MAE": 0.2, "AP": 0.6},
              "curves": {"precision": [0.5] * 256, "recall": [0.4] * 256}, "paper": None, "later": None}
    run_ = {"dataset": "icoseg", "paper_dataset": "iCoseg", "normalization": "minmax", "groups": 1,
            "images": 2, "skipped_no_gt": 0, "methods": [method]}
    for key, value in changes.items():
        (run_ if key in ("dataset", "images", "paper_dataset", "normalization") else method)[key] = value
    return {"format": FORMAT, "runs": [run_] if changes.get("runs", True) else []}


RESULTS_DAMAGE = {   # id: (text of the file, words of the message)
    "NaN metric": (json.dumps(results_file(metrics={"mF": float("nan")})), ["'mF'", "NaN"]),
    "text metric": (json.dumps(results_file(metrics={"mF": "high"})), ["'mF'", "finite number"]),
    "short curve": (json.dumps(results_file(curves={"precision": [0.5] * 3})), ["'precision'", "256"]),
    "curves null": (json.dumps(results_file(curves=None)), ["'curves'"]),
    "no runs": (json.dumps(results_file(runs=False)), ["no evaluated runs"]),
    "dataset a number": (json.dumps(results_file(dataset=7)), ["'dataset'"]),
    "images a word": (json.dumps(results_file(images="ten")), ["'images'", ">= 0"]),
    "paper values a word": (json.dumps(results_file(paper="x")), ["'paper'"]),
    "method name a number": (json.dumps(results_file(name=5)), ["'name'"]),
    "empty": ("", ["not valid JSON"]),
    "cut short": (json.dumps(results_file())[:120], ["not valid JSON"]),
    "normalization a list": (json.dumps(results_file(normalization=["minmax"])), ["normalization", "minmax, raw"]),
}


def _three_datasets(metrics):
    """results.json of Table 1's three datasets, the second with `metrics` (Section 3.4's averages)."""
    res = results_file()
    res["runs"] = [dict(res["runs"][0], dataset=d, paper_dataset=p, methods=[dict(res["runs"][0]["methods"][0])])
                   for d, p in (("icoseg", "iCoseg"), ("msrc", "MSRC"), ("cosal2015", "Cosal2015"))]
    res["runs"][1]["methods"][0]["metrics"] = metrics
    return res


# Files the checks accept (null metrics, fields of older files absent): their table is made.
RESULTS_ACCEPTED = {
    "paper values without paper_method": results_file(paper={"mF": 0.5, "AUC": 0.9, "MAE": 0.1}),
    "a metric null on one of three datasets": _three_datasets({"mF": None, "AUC": 0.8, "MAE": 0.2}),
    "a metric absent on one of three datasets": _three_datasets({"AUC": 0.8, "MAE": 0.2}),
}


@pytest.mark.parametrize("case", sorted(RESULTS_ACCEPTED))
def test_eval_table_of_an_accepted_results_file(tmp_path, case):
    path = tmp_path / "results.json"
    path.write_text(json.dumps(RESULTS_ACCEPTED[case]))
    r = run("eval", "table", "--results", path, "--out", tmp_path / "table")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert (tmp_path / "table" / "table.md").is_file()


@pytest.mark.parametrize("name", ["Ours|v2", "Ours\nv2"])
def test_a_method_name_keeps_every_markdown_table_whole(name):
    """A '|' in a method's name added a column to table.md, a line break cut a row in two."""
    import re
    from eval import report
    md = report.table_markdown(results_file(name=name))
    tables = [t.splitlines() for t in re.findall(r"(?m)(?:^\|.*\n?)+", md)]
    assert tables
    for rows in tables:
        assert len({len(re.findall(r"(?<!\\)\|", row)) for row in rows}) == 1, rows


@pytest.mark.slow
@pytest.mark.parametrize("damage", sorted(RESULTS_DAMAGE))
def test_eval_table_of_a_damaged_results_file(tmp_path, damage):
    text, words = RESULTS_DAMAGE[damage]
    good, bad = tmp_path / "good.json", tmp_path / "bad.json"
    good.write_text(json.dumps(results_file(dataset="msrc")))
    bad.write_text(text)
    out = tmp_path / "table"
    assert run("eval", "table", "--results", good, "--out", out).returncode == 0     # the file is the cause
    before = files_of(out)
    r = run("eval", "table", "--results", good, bad, "--out", out)
    assert_fails_cleanly(r, bad, *words)
    assert files_of(out) == before


@pytest.mark.slow
def test_eval_leaves_a_folder_whose_results_json_is_not_its_own(data, tmp_path):
    out = tmp_path / "eval"
    out.mkdir()
    (out / "results.json").write_text('{"format": "someone else\'s"}')
    r = run(*eval_args(data["root"], data["maps"], out))
    assert_fails_cleanly(r, out, "--force")
    assert files_of(out) == {"results.json": b'{"format": "someone else\'s"}'}


@pytest.mark.slow
def test_an_interrupted_gpu_bundle_write_keeps_the_previous_bundle(icoseg_dev, tmp_path):
    """gpu_check --write-bundle DIR wrote its files in place: Ctrl-C between opening one and
    filling it left an empty solver or data list in a bundle that looked whole."""
    out = tmp_path / "bundle"
    argv = ["--write-bundle", str(out), "--data", str(icoseg_dev)]
    assert run("apps.gpu_check", *argv).returncode == 0
    before = files_of(out)
    code = ("import os, signal, sys\n"
            "import apps.gpu_check as g\n"
            "real, calls = g.write_text, []\n"
            "def write_text(path, msg):\n"
            "    calls.append(path)\n"
            "    if len(calls) == 3:\n"
            "        open(path, 'w').close()     # opened, emptied, when the interrupt comes\n"
            "        os.kill(os.getpid(), signal.SIGINT)\n"
            "    return real(path, msg)\n"
            "g.write_text = write_text\n"
            "g.main(sys.argv[1:])\n")
    r = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, cwd=ROOT, env=ENV,
                       timeout=300)
    assert (r.returncode, r.stderr.strip().splitlines()[-1]) == (130, "interrupted"), r.stderr
    assert files_of(out) == before
    assert_fails_cleanly(run("apps.gpu_check", "--write-bundle", out / "nets" / "group.prototxt"), "not a folder")


def _another_baseline(out, data):
    r = run("baselines.cshs", "--dataset", "icoseg", "--root", data["root"], "--out", out, "--workers", 1)
    assert r.returncode == 0, r.stderr


def _run_file_a_folder(out, data):
    _cbcs(out, data)
    (out / "cbcs_run.json").unlink()
    (out / "cbcs_run.json").mkdir()


def _cbcs(out, data, *extra):
    r = run("baselines.cbcs", "--dataset", "icoseg", "--root", data["root"], "--out", out, "--workers", 1, *extra)
    assert r.returncode == 0, r.stderr
    return r


BASELINE_RESUME_DAMAGE = {   # id: (make the folder, what the message names, words)
    "the maps of another baseline": (_another_baseline, "", ["cbcs_run.json", "--force"]),
    "run file a folder": (_run_file_a_folder, "cbcs_run.json", ["cannot read"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("damage", sorted(BASELINE_RESUME_DAMAGE))
def test_cbcs_resume_refuses_a_folder_it_did_not_write(data, tmp_path, damage):
    make, name, words = BASELINE_RESUME_DAMAGE[damage]
    out = tmp_path / "maps"
    make(out, data)
    before = files_of(out)
    r = run("baselines.cbcs", "--dataset", "icoseg", "--root", data["root"], "--out", out, "--workers", 1,
            "--resume")
    assert_fails_cleanly(r, out / name, *words)
    assert files_of(out) == before


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["not a PNG", "cut short"])
def test_cbcs_resume_makes_a_damaged_map_again(data, tmp_path, damage):
    out = tmp_path / "maps"
    _cbcs(out, data)
    whole = files_of(out)
    bad = out / "g 1" / "2.png"
    if damage == "not a PNG":
        bad.write_text("hello")
    else:
        truncate(bad)
    r = _cbcs(out, data, "--resume")
    assert "5 maps written" in r.stdout + r.stderr
    assert files_of(out) == whole


@pytest.mark.slow
def test_pipeline_refuses_a_step_record_that_is_a_folder_before_the_step(data, tmp_path):
    runs = tmp_path / "runs"
    (runs / "eval" / "icoseg").mkdir(parents=True)
    (runs / "eval" / "icoseg" / "results.json").write_text(json.dumps(results_file()))
    (runs / ".steps" / "table.json").mkdir(parents=True)
    r = run("apps.pipeline", "table", "--runs", runs)
    assert_fails_cleanly(r, runs / ".steps" / "table.json", "not a step record")
    assert not (runs / "table").exists()
    (runs / "file").write_text("x")
    assert_fails_cleanly(run("apps.pipeline", "table", "--runs", runs / "file"), runs / "file", "not a runs folder")


def test_a_damaged_step_record_is_not_finished_maps(tmp_path):
    from apps.pipeline import Steps
    stamps = tmp_path / ".steps" / "maps" / "icoseg"
    stamps.mkdir(parents=True)
    (stamps / "CBCS.json").write_text('{"argv": ["baselines.cbcs"]}')
    (stamps / "CSHS.json").write_text('{"argv": [')
    (stamps / "Ours.json").write_text("[]")
    (stamps / "Deep.json").write_text("[" * 100000 + "]" * 100000)     # a RecursionError to json
    for name in ("CBCS", "CSHS", "Ours", "Deep"):
        (tmp_path / "maps" / "icoseg" / name).mkdir(parents=True)
    assert list(Steps(tmp_path).finished_maps("icoseg")) == ["CBCS"]


@pytest.mark.slow
@pytest.mark.parametrize("deleted", ["maps/icoseg/CSHS", "eval/icoseg/results.json"])
def test_a_pipeline_step_whose_output_was_deleted_runs_again(data, tmp_path, deleted):
    """A rerun makes again what a finished step made and the user deleted, instead of calling
    the step done and failing every later step (or every later rerun) for want of it."""
    runs = tmp_path / "runs"
    argv = ["apps.pipeline", "baselines", "--dataset", "icoseg", "--root", data["root"], "--runs", runs]
    assert run(*argv).returncode == 0
    path = runs / deleted
    shutil.rmtree(path) if path.is_dir() else path.unlink()
    r = run(*argv)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert path.exists()
    assert run("apps.pipeline", "table", "--runs", runs).returncode == 0


@pytest.mark.slow
@pytest.mark.parametrize("command", ["descriptors", "train-groups"])
def test_a_cache_path_holding_another_file_is_not_overwritten(data, tmp_path, command):
    other = tmp_path / "notes.jsonl"
    shutil.copy(data["groups"], other)
    argv = ["data_prep", command, "--dataset", "icoseg", "--root", data["root"], "--workers", 1]
    argv += ["--out", other] if command == "descriptors" else ["--out", tmp_path / "g.jsonl", "--cache", other]
    r = run(*argv)
    assert_fails_cleanly(r, other, "not a descriptor cache")
    assert other.read_bytes() == pathlib.Path(data["groups"]).read_bytes()
    assert not (tmp_path / "g.jsonl").exists()
    r = run("data_prep", "train-groups", "--dataset", "icoseg", "--root", data["root"], "--workers", 1,
            "--out", tmp_path / "g.jsonl", "--cache", tmp_path / "g.jsonl")
    assert_fails_cleanly(r, tmp_path / "g.jsonl", "same file")


@pytest.mark.slow
def test_msrc_convert_with_nothing_to_convert_leaves_no_marker(tmp_path):
    import cv2
    import numpy as np
    release = tmp_path / "release"
    (release / "Images").mkdir(parents=True)
    (release / "GroundTruth").mkdir()
    cv2.imwrite(str(release / "Images" / "1_1_s.bmp"), np.zeros((20, 30, 3), np.uint8))
    (release / "GroundTruth" / "1_1_s_GT.bmp").write_bytes(b"BM not a bitmap")
    r = run("data_prep", "msrc-convert", "--root", release, "--out", tmp_path / "out")
    assert_fails_cleanly(r, release, "no image", "unreadable files: 1")
    assert not (tmp_path / "out").exists()


def _msrc_release(folder):
    """A raw MSRC-v2 release of two groups (a cow, a car on a road)."""
    import cv2
    import numpy as np
    colour = {"grass": (0, 128, 0), "cow": (0, 0, 128), "road": (128, 64, 128), "car": (64, 0, 128)}
    (folder / "Images").mkdir(parents=True)
    (folder / "GroundTruth").mkdir()
    for stem, regions in {"1_1_s": [("cow", 2, 10)], "1_2_s": [("cow", 5, 8)],
                          "10_1_s": [("road", 0, 5), ("car", 8, 12)]}.items():
        cv2.imwrite(str(folder / "Images" / f"{stem}.bmp"), np.full((20, 30, 3), 90, np.uint8))
        gt = np.zeros((20, 30, 3), np.uint8)
        gt[:] = colour["grass"][::-1]
        for name, y0, y1 in regions:
            gt[y0:y1, 3:9] = colour[name][::-1]
        cv2.imwrite(str(folder / "GroundTruth" / f"{stem}_GT.bmp"), gt)


@pytest.mark.parametrize("out", [".", "Images", "GroundTruth/x", "..", "a folder of other files"])
def test_msrc_convert_refuses_an_output_folder_of_the_release(tmp_path, out):
    """The converted images/ beside or inside the release's Images/ would damage the release
    (its folders are found case-insensitively): refused before anything is written."""
    release = tmp_path / "release"
    _msrc_release(release)
    if out == "a folder of other files":
        out = tmp_path / "other"
        out.mkdir()
        (out / "notes.txt").write_text("x")
    else:
        out = release / out
    before = files_of(tmp_path)
    r = run("data_prep", "msrc-convert", "--root", release, "--out", out)
    assert_fails_cleanly(r, "--out")
    assert files_of(tmp_path) == before and sorted(os.listdir(release)) == ["GroundTruth", "Images"]


def test_a_failed_msrc_reconversion_leaves_the_earlier_one_whole(tmp_path):
    """The new set is swapped in, or none of it: here the disk is full when group 10, whose
    object the corrected release says is a cow, gets its new folder."""
    import cv2
    release = tmp_path / "release"
    _msrc_release(release)
    assert run("data_prep", "msrc-convert", "--root", release).returncode == 0
    before = files_of(release / "cosal")
    gt = release / "GroundTruth" / "10_1_s_GT.bmp"
    car_to_cow = cv2.imread(str(gt))
    car_to_cow[8:12, 3:9] = (128, 0, 0)     # BGR of MSRC's cow
    cv2.imwrite(str(gt), car_to_cow)
    r = run("data_prep", "msrc-convert", "--root", release, fault=("enospc", release / "cosal" / "images" / "10_cow"))
    assert_fails_cleanly(r, release / "cosal", "No space left")
    assert files_of(release / "cosal") == before
    assert run("data_prep", "summary", "--dataset", "msrc-raw", "--root", release).returncode == 0
    assert run("data_prep", "msrc-convert", "--root", release).returncode == 0
    assert sorted(os.listdir(release / "cosal" / "images")) == ["01_cow", "10_cow"]


def test_an_msrc_reconversion_holds_exactly_its_own_groups(tmp_path):
    """Groups of an earlier conversion that the new one lacks (a release corrected since) go."""
    release = tmp_path / "release"
    _msrc_release(release)
    assert run("data_prep", "msrc-convert", "--root", release).returncode == 0
    (release / "Images" / "10_1_s.bmp").unlink()
    (release / "GroundTruth" / "10_1_s_GT.bmp").unlink()
    r = run("data_prep", "msrc-convert", "--root", release)
    assert r.returncode == 0, r.stderr
    assert sorted(files_of(release / "cosal")) == ["ground_truth/01_cow/1_1_s.png", "ground_truth/01_cow/1_2_s.png",
                                                   "images/01_cow/1_1_s.bmp", "images/01_cow/1_2_s.bmp",
                                                   "msrc_conversion.json"]
    assert sorted(os.listdir(release / "cosal" / "images")) == ["01_cow"]
    assert sorted(os.listdir(release / "cosal" / "ground_truth")) == ["01_cow"]


@pytest.mark.parametrize("at", [8, 14], ids=["during the swap", "at the marker"])
def test_an_interrupted_msrc_conversion_is_refused_until_it_is_run_again(tmp_path, at):
    """Ctrl-C held back through the swap lands right after it, before the marker is rewritten:
    the folder read as `msrc` was taken for a whole conversion. (Renames: 6 staged files, the
    readers' mark, 6 swapped in, the marker.)"""
    release = tmp_path / "release"
    _msrc_release(release)
    r = run_interrupted_at_rename(at, "data_prep", "msrc-convert", "--root", release)
    assert (r.returncode, r.stderr.strip().splitlines()[-1]) == (130, "interrupted"), r.stderr
    for dataset, root in (("msrc", release / "cosal"), ("msrc-raw", release)):
        assert_fails_cleanly(run("data_prep", "summary", "--dataset", dataset, "--root", root), release / "cosal",
                             "msrc-convert` stopped", "run it again")
    assert run("data_prep", "msrc-convert", "--root", release).returncode == 0
    for dataset, root in (("msrc", release / "cosal"), ("msrc-raw", release)):
        r = run("data_prep", "summary", "--dataset", dataset, "--root", root)
        assert r.returncode == 0 and "3 images" in r.stdout, r.stderr


# ---------------------------------------------------------------- 2. files Caffe would abort on
def edited(tmp_path, src, old, new, count=1):
    text = pathlib.Path(src).read_text()
    assert old in text, old
    p = tmp_path / pathlib.Path(src).name
    p.write_text(text.replace(old, new, count))
    return p


DEPLOY_EDITS = {   # id: (old, new, words of the message)
    "batch 4 vs 5 slice tops": ("dim: 5 dim: 3", "dim: 4 dim: 3", ["slice", "group size"]),
    "batch 10 vs 5 slice tops": ("dim: 5 dim: 3", "dim: 10 dim: 3", ["slice", "group size"]),
    "stride 0": ("kernel_size: 3 pad: 1", "kernel_size: 3 pad: 1 stride: 0", ["conv1_1", "stride 0"]),
    "kernel larger than input": ("kernel_size: 3 pad: 1", "kernel_size: 999 pad: 1", ["conv1_1", "larger than its input"]),
    "Python layer of a missing module": (
        'layer { name: "relu1_1" type: "ReLU" bottom: "conv1_1" top: "conv1_1" }',
        'layer { name: "relu1_1" type: "Python" bottom: "conv1_1" top: "conv1_1" '
        'python_param { module: "no_such_module" layer: "X" } }', ["relu1_1", "no_such_module"]),
    "data layer param_str not JSON": (
        "dim: 128 } }\n}",
        'dim: 128 } }\n}\nlayer { name: "gd" type: "Python" top: "x1" top: "x2" python_param { module: '
        '"python_layers.group_data_layer" layer: "GroupDataLayer" param_str: "{not json" } }',
        ["'gd'", "param_str: not valid JSON"]),
    "two layers of one name": ('name: "conv1_2" type: "Convolution"', 'name: "conv1_1" type: "Convolution"',
                               ["conv1_1", "unique"]),
    # third pass
    "two Input shapes for one top": ("dim: 128 } }", "dim: 128 } shape { dim: 1 } }", ["'data'", "2 shapes for 1 top"]),
    "a blob over Caffe's size limit": ("dim: 64 dim: 128", "dim: 60000 dim: 60000", ["'data'", "2147483647"]),
    "LRN of an even size": ('layer {\n  name: "conv2_1"', 'layer { name: "lrn" type: "LRN" bottom: "pool1" '
                            'top: "lrn" lrn_param { local_size: 4 } }\nlayer {\n  name: "conv2_1"',
                            ["'lrn'", "local_size 4 must be odd"]),
    # sixth pass: Caffe's LayerSetUp and net-building rules, and settings that give NaN maps
    "kernel_size and kernel_h/w": ("kernel_size: 3 pad: 1", "kernel_size: 3 kernel_h: 3 kernel_w: 3 pad: 1",
                                   ["conv1_1", "both kernel_size and kernel_h/kernel_w"]),
    "pad and pad_h/w": ("kernel_size: 3 pad: 1", "kernel_size: 3 pad: 1 pad_h: 1 pad_w: 1", ["conv1_1", "both pad and"]),
    "stride_h on a 1-value convolution": ("kernel_size: 3 pad: 1", "kernel_size: 3 pad: 1 stride: 1 stride_h: 1",
                                          ["conv1_1", "both stride and"]),
    "pooling with pad_h only": ("pool: MAX kernel_size: 2 stride: 2", "pool: MAX kernel_size: 2 stride: 2 pad_h: 1",
                                ["pool1", "only one of pad_h and pad_w"]),
    "global pooling with a kernel": ("pool: MAX kernel_size: 2 stride: 2", "pool: MAX kernel_size: 2 global_pooling: true",
                                     ["pool1", "global_pooling takes no kernel_size"]),
    "padded stochastic pooling": ("pool: MAX kernel_size: 2 stride: 2", "pool: STOCHASTIC kernel_size: 2 stride: 2 pad: 1",
                                  ["pool1", "pad works with pool MAX or AVE"]),
    "cuDNN engine": ("kernel_size: 3 pad: 1", "kernel_size: 3 pad: 1 engine: CUDNN", ["conv1_1", "without cuDNN"]),
    "a layer of the TRAIN phase only": ('bottom: "conv1_1" top: "conv1_2"',
                                        'bottom: "conv1_1" top: "conv1_2" include { phase: TRAIN }',
                                        ["relu1_2", "'conv1_2'", "no earlier layer produces"]),
    "include and exclude rules": ('bottom: "conv1_1" top: "conv1_2"',
                                  'bottom: "conv1_1" top: "conv1_2" include { phase: TEST } exclude { phase: TRAIN }',
                                  ["conv1_2", "both include and exclude"]),
    "a top produced twice": ('name: "relu1_1" type: "ReLU" bottom: "conv1_1" top: "conv1_1"',
                             'name: "relu1_1" type: "ReLU" bottom: "conv1_1" top: "conv1_2"',
                             ["'conv1_2'", "an earlier layer produces"]),
    "in place on a shared blob": ('layer { name: "relu1_1"', 'layer { name: "bn" type: "BatchNorm" bottom: "conv1_1" '
                                  'top: "bn" }\nlayer { name: "relu1_1"', ["relu1_1", "other layers take too"]),
    "Split in place": ('layer { name: "relu1_1"', 'layer { name: "sp" type: "Split" bottom: "conv1_1" top: "conv1_1" }\n'
                       'layer { name: "relu1_1"', ["'sp'", "Split", "in place"]),
    "Softmax axis out of range": ('layer {\n  name: "conv2_1"', 'layer { name: "sm" type: "Softmax" bottom: "pool1" '
                                  'top: "sm" softmax_param { axis: 7 } }\nlayer {\n  name: "conv2_1"',
                                  ["'sm'", "axis 7"]),
    "ReLU slope NaN": ('name: "relu1_1" type: "ReLU" bottom: "conv1_1" top: "conv1_1"',
                       'name: "relu1_1" type: "ReLU" bottom: "conv1_1" top: "conv1_1" relu_param { negative_slope: nan }',
                       ["relu1_1", "negative_slope is nan", "finite"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("engine", ["caffe", "opencv"])
@pytest.mark.parametrize("edit", sorted(DEPLOY_EDITS))
def test_predict_with_an_edited_deploy_prototxt(data, tmp_path, edit, engine):
    old, new, words = DEPLOY_EDITS[edit]
    proto = edited(tmp_path, TINY_GROUP.deploy, old, new)
    r = run("apps.predict", "--weights", data["weights"]["group"], "--prototxt", proto, "--dataset", "icoseg",
            "--root", data["root"], "--out", tmp_path / "o", "--engine", engine, "--quiet")
    assert_fails_cleanly(r, proto, *words)
    assert not (tmp_path / "o").exists()


SOLVER_EDITS = {
    "unknown type": ('type: "Adam"', 'type: "Adamm"', ["unknown solver type", "SGD"]),
    "unknown lr_policy": ('lr_policy: "fixed"', 'lr_policy: "fixd"', ["lr_policy", "step"]),
    "step without stepsize": ('lr_policy: "fixed"', 'lr_policy: "step" gamma: 0.1', ["stepsize", "> 0"]),
    "negative base_lr": ("base_lr:", "base_lr: -1 #", ["base_lr", "> 0"]),
    "momentum 1.5": ("momentum:", "momentum: 1.5 #", ["momentum", "[0, 1)"]),
    # third pass: fields Caffe aborts on, and snapshots apps.train cannot point to
    "a net of its own": ('lr_policy: "fixed"', 'lr_policy: "fixed" net_param { name: "x" }',
                         ["net_param", "remove them"]),
    "type and the old solver_type": ('lr_policy: "fixed"', 'lr_policy: "fixed" solver_type: ADAM',
                                     ["solver_type", "keep type only"]),
    "test_iter without test_interval": ('lr_policy: "fixed"', 'lr_policy: "fixed" test_iter: 1',
                                        ["test_interval", "> 0"]),
    "test_state without a test net": ('lr_policy: "fixed"', 'lr_policy: "fixed" test_state { stage: "x" }',
                                      ["test_state", "once per test net"]),
    "a test net file": ('lr_policy: "fixed"', 'lr_policy: "fixed" test_net: "nothere.prototxt" test_iter: 1 '
                        'test_interval: 1', ["test_net", "--val-list"]),
    "HDF5 snapshots": ('lr_policy: "fixed"', 'lr_policy: "fixed" snapshot_format: HDF5', ["snapshot_format"]),
    # sixth pass: the checks of Caffe's solver constructors and of its first step
    "AdaGrad with momentum": ('type: "Adam"', 'type: "AdaGrad"', ["momentum", "0 for AdaGrad"]),
    "RMSProp with momentum": ('type: "Adam"', 'type: "RMSProp" rms_decay: 0.98', ["momentum", "0 for RMSProp"]),
    "RMSProp rms_decay 1": ('type: "Adam"\nbase_lr: 0.001\nmomentum: 0.9',
                            'type: "RMSProp"\nbase_lr: 0.001\nrms_decay: 1', ["rms_decay", "[0, 1)"]),
    "sigmoid with a negative gamma": ('lr_policy: "fixed"', 'lr_policy: "sigmoid" stepsize: 10 gamma: -1',
                                      ["gamma", '>= 0 for lr_policy "sigmoid"']),
}


@pytest.mark.slow
@pytest.mark.parametrize("edit", sorted(SOLVER_EDITS))
def test_train_with_a_nonsense_solver(data, tmp_path, edit):
    old, new, words = SOLVER_EDITS[edit]
    solver = edited(tmp_path, TINY_SINGLE.solver, old, new)
    r = run("apps.train", *train_args(data["groups"], data["root"], tmp_path / "run"), "--solver", solver,
            "--iters", 2)
    assert_fails_cleanly(r, solver, *words)
    assert not (tmp_path / "run" / "latest.json").exists()


@pytest.mark.slow
def test_a_diverging_loss_is_one_error_line_every_time(data, tmp_path):
    """base_lr 1e30 makes the weights infinite at the first step and a max pooling's whole
    window NaN at the second, where Caffe's CPU backward wrote before its gradient buffer
    (patches/0003): the process aborted with "double free or corruption" after the error line,
    10 times out of 10. Run several times, as heap damage need not show every time."""
    for i in range(4):
        r = run("apps.train", *train_args(data["groups"], data["root"], tmp_path / f"run{i}"),
                "--iters", 3, "--workers", 1, "--base-lr", "1e30")
        assert_fails_cleanly(r, "loss became nan", "--base-lr")


@pytest.mark.slow
def test_a_new_run_whose_solver_has_max_iter_0_is_refused_before_its_folder(data, tmp_path):
    """Without --iters the solver's max_iter is the run's length, under --iters' rule."""
    solver = edited(tmp_path, TINY_SINGLE.solver, "max_iter: 8000", "max_iter: 0")
    r = run("apps.train", *train_args(data["groups"], data["root"], tmp_path / "run"), "--solver", solver)
    assert_fails_cleanly(r, solver, "max_iter 0", "1 or more")
    assert not (tmp_path / "run").exists()


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["truncated", "garbage", "another model's", "a history blob cut short"])
def test_resume_from_a_damaged_solverstate(data, tmp_path, damage):
    run_dir = tmp_path / "run"
    shutil.copytree(data["run"], run_dir)
    state = run_dir / json.loads((run_dir / "latest.json").read_text())["solverstate"]
    if damage == "truncated":
        truncate(state, 0.3)
    elif damage == "garbage":
        state.write_bytes(b"\x08\x96\x01" + os.urandom(200))
    elif damage == "a history blob cut short":      # whole protobuf, a blob's values not
        from core.netio import read_solverstate
        parsed = read_solverstate(state)
        del parsed.history[3].data[5:]
        state.write_bytes(parsed.SerializeToString())
    else:   # a snapshot of the group model put in place of this run's
        other = tmp_path / "group"
        r = run("apps.train", *train_args(data["groups"], data["root"], other, model="group"), "--iters", 1)
        assert r.returncode == 0, r.stderr
        shutil.copy(other / json.loads((other / "latest.json").read_text())["solverstate"], state)
    before = files_of(run_dir)
    r = run("apps.train", *train_args(data["groups"], data["root"], run_dir), "--iters", 4, "--resume")
    assert_fails_cleanly(r, state)
    assert files_of(run_dir) == before


LATEST_DAMAGE = {   # id: (latest.json's new content given the good one, words of the message)
    "names a file outside the folder": (lambda d: dict(d, caffemodel="../other/" + d["caffemodel"]),
                                        ["not a file inside"]),
    "names an absolute path": (lambda d: dict(d, solverstate="/" + d["solverstate"]), ["not a file inside"]),
    "names a folder": (lambda d: dict(d, caffemodel="snapshots"), ["not a file"]),
    "iteration not a number": (lambda d: dict(d, iter="two"), ["'iter'", "not an iteration number"]),
    "iteration of another snapshot": (lambda d: dict(d, iter=d["iter"] + 5), ["was taken at iteration"]),
    "not an object": (lambda d: [d], ["not a JSON object"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("damage", sorted(LATEST_DAMAGE))
def test_resume_from_a_damaged_latest_json(data, tmp_path, damage):
    change, words = LATEST_DAMAGE[damage]
    run_dir = tmp_path / "run"
    shutil.copytree(data["run"], run_dir)
    latest = run_dir / "latest.json"
    latest.write_text(json.dumps(change(json.loads(latest.read_text()))))
    before = files_of(run_dir)
    r = run("apps.train", *train_args(data["groups"], data["root"], run_dir), "--iters", 4, "--resume")
    assert_fails_cleanly(r, latest, *words)
    assert files_of(run_dir) == before


def _another_list(data, tmp_path):
    """The fixture's list with its first group only: another data order."""
    p = tmp_path / "one.jsonl"
    p.write_text(pathlib.Path(data["groups"]).read_text().splitlines()[0] + "\n")
    return p


RESUME_CONTRADICTIONS = {   # id: (options added to the resume, given data and tmp_path; words of the message)
    "--init": (lambda d, t: ["--init", d["weights"]["single"]], ["--init with --resume", "leave --init out"]),
    "--vgg16": (lambda d, t: ["--vgg16", d["weights"]["single"]], ["--vgg16 with --resume"]),
    "--force": (lambda d, t: ["--force"], ["--force with --resume"]),
    "another seed": (lambda d, t: ["--seed", 7], ["run.json", "--seed 0", "not 7"]),
    "another base_lr": (lambda d, t: ["--base-lr", "1e-3"], ["run.json", "--base-lr 1e-06", "not 0.001"]),
    "another list": (lambda d, t: ["--train-list", _another_list(d, t)], ["--train-list", "another list"]),
    "fewer iterations": (lambda d, t: ["--iters", 1], ["--iters 1", "below iteration 2", "--iters 3"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(RESUME_CONTRADICTIONS))
def test_a_resume_that_contradicts_the_run_is_refused(data, tmp_path, case):
    """A resume continues the run as it was started: an option that would change it is one
    line naming the option, the run's value and the given one, and the folder stays as it was."""
    extra, words = RESUME_CONTRADICTIONS[case]
    run_dir = tmp_path / "run"
    shutil.copytree(data["run"], run_dir)
    before = files_of(run_dir)
    r = run("apps.train", *train_args(data["groups"], data["root"], run_dir), "--iters", 4, "--resume",
            *extra(data, tmp_path))
    assert_fails_cleanly(r, *words)
    assert files_of(run_dir) == before


@pytest.mark.slow
def test_a_resume_keeps_the_runs_own_settings(data, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(data["run"], run_dir)
    assert json.loads((run_dir / "run.json").read_text())["base_lr"] == 1e-6
    args = train_args(data["groups"], data["root"], run_dir)
    without_lr = args[:args.index("--base-lr")]
    r = run("apps.train", *without_lr, "--iters", 2, "--resume")     # where it is already
    assert r.returncode == 0 and "nothing to do" in r.stderr, r.stderr
    r = run("apps.train", *without_lr, "--iters", 3, "--resume")     # the run's lr, not the solver file's
    assert r.returncode == 0, r.stderr
    assert "base_lr: 1e-06" in (run_dir / "solver.prototxt").read_text()
    # a run made before runs kept a record takes what is given
    (run_dir / "run.json").unlink()
    r = run("apps.train", *args, "--iters", 4, "--resume", "--seed", 7)
    assert r.returncode == 0, r.stderr
    assert json.loads((run_dir / "latest.json").read_text())["iter"] == 4


def _groups_twice(path, _data_root=None):
    path.write_text(path.read_text() * 2)


def _latin1_byte(path, _data_root=None):
    path.write_bytes(path.read_bytes() + b"# caf\xe9\n")


def _absolute_path_outside(path, _data_root=None):
    """The first image of the list named by an absolute path to an image outside the data root."""
    import cv2
    import numpy as np
    outside = path.parent / "outside.jpg"
    cv2.imwrite(str(outside), np.zeros((60, 80, 3), np.uint8))
    lines = path.read_text().splitlines()
    group = json.loads(lines[0])
    group["images"][0] = str(outside)
    path.write_text("\n".join([json.dumps(group)] + lines[1:]) + "\n")


def _relative_path_outside(path, data_root):
    """The first image of the list named by a path that climbs out of the data root ('..') to
    an image outside it."""
    import cv2
    import numpy as np
    outside = path.parent / "outside.jpg"
    cv2.imwrite(str(outside), np.zeros((60, 80, 3), np.uint8))
    lines = path.read_text().splitlines()
    group = json.loads(lines[0])
    group["images"][0] = os.path.relpath(outside, data_root)
    path.write_text("\n".join([json.dumps(group)] + lines[1:]) + "\n")


INPUT_FILE_DAMAGE = {   # id: (which input, damage(path, data root), words of the message)
    "group list repeating its groups": ("train-list", _groups_twice, ["repeats line 1"]),
    "group list with an absolute path outside the data root": (
        "train-list", _absolute_path_outside, ["outside.jpg", "absolute and outside the data root"]),
    "group list with a path climbing out of the data root": (
        "train-list", _relative_path_outside, ["../", "outside.jpg", "leads outside the data root"]),
    "group list not UTF-8": ("train-list", _latin1_byte, ["not UTF-8"]),
    "solver not UTF-8": ("solver", _latin1_byte, ["not UTF-8"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("damage", sorted(INPUT_FILE_DAMAGE))
def test_train_with_a_damaged_input_file(data, tmp_path, damage):
    which, spoil, words = INPUT_FILE_DAMAGE[damage]
    files = {"train-list": tmp_path / "groups.jsonl", "solver": tmp_path / "solver.prototxt"}
    shutil.copy(data["groups"], files["train-list"])
    shutil.copy(TINY_SINGLE.solver, files["solver"])
    spoil(files[which], data["root"])
    r = run("apps.train", *train_args(files["train-list"], data["root"], tmp_path / "run"), "--solver",
            files["solver"], "--iters", 1)
    assert_fails_cleanly(r, files[which], *words)
    assert not (tmp_path / "run").exists()      # a failed start leaves nothing new


# JSON that the json module refuses other than with a JSONDecodeError: nesting deeper than the
# recursion limit (RecursionError) and an integer over Python's digit limit (a plain ValueError)
JSON_UNPARSABLE = {"nested too deeply": ("[" * 100000 + "]" * 100000, "nested too deeply"),
                   "a 5000-digit number": ('{"format": ' + "1" * 5000 + "}", "more than 4300 digits")}


def _json_train_list(data, tmp_path, text):
    path = tmp_path / "groups.jsonl"
    path.write_text(pathlib.Path(data["groups"]).read_text() + text + "\n")
    return ["apps.train", *train_args(path, data["root"], tmp_path / "run"), "--iters", 1], f"{path}:3", True


def _json_latest(data, tmp_path, text):
    run_dir = tmp_path / "run"
    shutil.copytree(data["run"], run_dir)
    (run_dir / "latest.json").write_text(text)
    return ["apps.train", *train_args(data["groups"], data["root"], run_dir), "--iters", 4, "--resume"], \
        run_dir / "latest.json", True


def _json_run_record(data, tmp_path, text):
    run_dir = tmp_path / "run"
    shutil.copytree(data["run"], run_dir)
    (run_dir / "run.json").write_text(text)
    return ["apps.train", *train_args(data["groups"], data["root"], run_dir), "--iters", 4, "--resume"], \
        run_dir / "run.json", True


def _json_results(data, tmp_path, text):
    (tmp_path / "results.json").write_text(text)
    return ["eval", "table", "--results", tmp_path / "results.json", "--out", tmp_path / "t"], \
        tmp_path / "results.json", True


def _json_cbcs_run(data, tmp_path, text):
    out = tmp_path / "maps"
    _cbcs(out, data)
    (out / "cbcs_run.json").write_text(text)
    return ["baselines.cbcs", "--dataset", "icoseg", "--root", data["root"], "--out", out, "--workers", 1,
            "--resume"], out / "cbcs_run.json", True


def _json_incomplete_mark(data, tmp_path, text):
    root = copy_dataset(data, tmp_path)
    (root / ".incomplete.json").write_text(text)       # damaged: still the mark of a stopped run
    return ["data_prep", "summary", "--dataset", "icoseg", "--root", root], root, False


def _json_manifest(data, tmp_path, text):
    out = tmp_path / "syn"
    out.mkdir()
    (out / "manifest.json").write_text(text)
    return ["data_prep", "synthetic", "--out", out, "--train-groups", 1, "--test-groups", 1, "--workers", 1], \
        out / "manifest.json", False


def _json_coco_annotations(data, tmp_path, text):
    (tmp_path / "coco").mkdir()
    (tmp_path / "ann.json").write_text(text)
    return ["data_prep", "coco9213", "--coco-root", tmp_path / "coco", "--annotations", tmp_path / "ann.json",
            "--out", tmp_path / "o"], tmp_path / "ann.json", True


def _json_param_str(data, tmp_path, text):
    layer = ('layer { name: "gd" type: "Python" top: "x1" top: "x2" python_param { module: '
             f'"python_layers.group_data_layer" layer: "GroupDataLayer" param_str: {json.dumps(text)} }} }}')
    proto = edited(tmp_path, TINY_GROUP.deploy, "dim: 128 } }\n}", "dim: 128 } }\n}\n" + layer)
    return ["apps.predict", "--weights", data["weights"]["group"], "--prototxt", proto, "--dataset", "icoseg",
            "--root", data["root"], "--out", tmp_path / "o", "--quiet"], proto, True


JSON_READERS = {   # id: setup(data, tmp_path, text) -> (argv, what the message names, whether it says why)
    "group list line": _json_train_list, "latest.json": _json_latest, "run.json": _json_run_record,
    "results.json": _json_results,
    "cbcs_run.json": _json_cbcs_run, ".incomplete.json": _json_incomplete_mark,
    "synthetic manifest.json": _json_manifest, "COCO annotations": _json_coco_annotations,
    "data layer param_str": _json_param_str,
}


@pytest.mark.slow
@pytest.mark.parametrize("damage", sorted(JSON_UNPARSABLE))
@pytest.mark.parametrize("reader", sorted(JSON_READERS))
def test_json_that_python_cannot_parse_is_one_error_line(data, tmp_path, reader, damage):
    text, why = JSON_UNPARSABLE[damage]
    argv, named, says_why = JSON_READERS[reader](data, tmp_path, text)
    r = run(*argv)
    assert_fails_cleanly(r, named, *([why] if says_why else []))


@pytest.mark.slow
@pytest.mark.parametrize("what", ["a saliency map", "--annotations"])
def test_a_file_given_as_a_folder_is_said_to_be_one(data, tmp_path, what):
    """Not 'missing' or 'not found': the path is there, as a folder."""
    if what == "a saliency map":
        maps = tmp_path / "maps"
        shutil.copytree(data["maps"], maps)
        bad = maps / "g 1" / "2.png"
        bad.unlink()
        bad.mkdir()
        r = run(*eval_args(data["root"], maps, tmp_path / "out"))
        words = ["is a folder", "saliency map"]
    else:
        bad = tmp_path / "instances_train2017.json"
        bad.mkdir()
        (tmp_path / "coco").mkdir()
        r = run("data_prep", "coco9213", "--coco-root", tmp_path / "coco", "--annotations", bad,
                "--out", tmp_path / "out")
        words = ["is a folder", "COCO annotation file"]
    assert_fails_cleanly(r, bad, *words)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.parametrize("command", ["predict", "train"])
def test_weights_given_as_a_folder(data, tmp_path, command):
    argv = commands(data, tmp_path / "out")[command]
    argv = (argv[:2] + [tmp_path] + argv[3:]) if command == "predict" else argv + ["--init", tmp_path]
    r = run(*argv)
    assert_fails_cleanly(r, tmp_path, "is a folder")
    assert not (tmp_path / "out").exists()


def with_option(argv, flag, value):
    """argv with `flag` set to `value` (replaced where it is there, added where not)."""
    argv = list(argv)
    if flag in argv:
        argv[argv.index(flag) + 1] = value
        return argv
    return argv + [flag, value]


@pytest.mark.slow
@pytest.mark.parametrize("option", ["predict --weights", "predict --prototxt", "train --train-list", "train --solver",
                                    "train --init", "train --val-list", "eval table --results"])
@pytest.mark.parametrize("kind", ["FIFO", "character device"])
def test_an_input_file_that_is_a_fifo_or_a_device(data, tmp_path, option, kind):
    """A FIFO held the command for ever (open() waits for a writer), /dev/zero was read until
    the memory ran out, and isfile() called both 'not found'."""
    if kind == "FIFO":
        path = tmp_path / "input"
        os.mkfifo(path)
    else:
        path = "/dev/zero"
    command, flag = option.rsplit(" ", 1)
    out = tmp_path / "out"
    argv = ["eval", "table", "--results", path, "--out", out] if command == "eval table" else \
        with_option(commands(data, out)[command], flag, path)
    r = run(*argv, timeout=60)
    assert_fails_cleanly(r, path, kind, "not a regular file")
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("what", ["a saliency map", "--annotations", "an image of a training list"])
def test_a_fifo_named_as_a_file_is_said_to_be_one(data, tmp_path, what):
    """Not 'missing' or 'not found' (isfile() is False for a FIFO): the path is there, as a FIFO."""
    out = tmp_path / "out"
    if what == "a saliency map":
        maps = tmp_path / "maps"
        shutil.copytree(data["maps"], maps)
        fifo = maps / "g 1" / "2.png"
        fifo.unlink()
        argv = eval_args(data["root"], maps, out)
    elif what == "--annotations":
        fifo = tmp_path / "instances_train2017.json"
        (tmp_path / "coco").mkdir()
        argv = ["data_prep", "coco9213", "--coco-root", tmp_path / "coco", "--annotations", fifo, "--out", out]
    else:
        root = copy_dataset(data, tmp_path)
        fifo = root / "img" / "g 0" / "1.jpg"
        fifo.unlink()
        argv = ["apps.train", *train_args(data["groups"], root, out), "--iters", 1]
    os.mkfifo(fifo)
    r = run(*argv, timeout=120)
    assert_fails_cleanly(r, fifo, "FIFO", "not a regular file")
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize("option", ["summary --root", "predict --images", "train --data-root", "train --val-root",
                                    "gpu_check --data", "coco9213 --coco-root"])
def test_a_file_given_for_a_folder_is_said_to_be_one(data, tmp_path, option):
    """An image or list given where a folder belongs was called 'not found', though it is there."""
    command, flag = option.split()
    given = data["root"] / "img" / "g 0" / "0.jpg"
    out = tmp_path / "out"
    argv = {"summary": ["data_prep", "summary", "--dataset", "icoseg", "--root", given],
            "predict": ["apps.predict", "--weights", data["weights"]["single"], "--model", "single", "--prototxt",
                        TINY_SINGLE.deploy, "--out", out, "--quiet"],
            "train": commands(data, out)["train"] + ["--val-list", data["groups"]],
            "gpu_check": ["apps.gpu_check", "--cpu"],
            "coco9213": ["data_prep", "coco9213", "--annotations", data["groups"], "--out", out]}[command]
    r = run(*with_option(argv, flag, given), timeout=120)
    assert_fails_cleanly(r, given, "is a file, not a folder")
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize("option", ["summary --root", "eval --method", "eval table --results", "predict --weights",
                                    "train --train-list"])
def test_an_input_in_a_folder_that_may_not_be_entered_is_not_said_to_be_missing(data, tmp_path, option):
    """A path under a folder without permissions (chmod 000, simulated: root passes through
    them) was called 'not found' or 'missing', though it is there: one line naming it and the
    system's reason instead."""
    locked = tmp_path / "locked"
    locked.mkdir()
    results = locked / "results.json"
    results.write_text(json.dumps(results_file()))
    given = {"summary --root": locked / "toy", "eval --method": locked / "maps", "eval table --results": results,
             "predict --weights": locked / "w.caffemodel", "train --train-list": locked / "groups.jsonl"}[option]
    shutil.copytree(data["root"], locked / "toy")
    shutil.copytree(data["maps"], locked / "maps")
    shutil.copy(data["weights"]["single"], locked / "w.caffemodel")
    shutil.copy(data["groups"], locked / "groups.jsonl")
    command, flag = option.rsplit(" ", 1)
    out = tmp_path / "out"
    argv = {"summary": ["data_prep", "summary", "--dataset", "icoseg", "--root", given],
            "eval": eval_args(data["root"], data["maps"], out),
            "eval table": ["eval", "table", "--results", given, "--out", out],
            "predict": commands(data, out)["predict"], "train": commands(data, out)["train"]}[command]
    if command == "eval":
        argv[argv.index(f"Ours-S={data['maps']}")] = f"Ours-S={given}"
    else:
        argv = with_option(argv, flag, given)
    r = run(*argv, fault=("eacces", locked), timeout=120)
    assert_fails_cleanly(r, given, "Permission denied")
    assert "not found" not in r.stderr and "missing" not in r.stderr
    assert not out.exists()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["latest.json", "loss.csv"])
def test_resume_with_a_run_file_that_is_a_fifo(data, tmp_path, name):
    run_dir = tmp_path / "run"
    shutil.copytree(data["run"], run_dir)
    (run_dir / name).unlink()
    os.mkfifo(run_dir / name)
    r = run("apps.train", *train_args(data["groups"], data["root"], run_dir), "--iters", 3, "--resume", timeout=60)
    assert_fails_cleanly(r, run_dir / name, "FIFO")


def _with_bom(path):
    path = pathlib.Path(path)
    path.write_bytes(b"\xef\xbb\xbf" + path.read_bytes())
    return path


@pytest.mark.slow
@pytest.mark.parametrize("which", ["train list", "results file", "COCO annotations"])
def test_a_text_input_with_a_byte_order_mark_is_read(data, tmp_path, which):
    """Windows editors start UTF-8 text with a byte-order mark: the JSON readers stumbled on
    it ('decode using utf-8-sig')."""
    if which == "train list":
        groups = _with_bom(shutil.copy(data["groups"], tmp_path / "groups.jsonl"))
        r = run("apps.train", *train_args(groups, data["root"], tmp_path / "run"), "--iters", 1)
    elif which == "results file":
        results = tmp_path / "results.json"
        results.write_text(json.dumps(results_file()))
        r = run("eval", "table", "--results", _with_bom(results), "--out", tmp_path / "table")
    else:
        import cv2
        import numpy as np
        (tmp_path / "coco").mkdir()
        cv2.imwrite(str(tmp_path / "coco" / "x.jpg"), np.zeros((60, 80, 3), np.uint8))
        ann = tmp_path / "ann.json"
        ann.write_text(json.dumps({
            "images": [{"id": 1, "file_name": "x.jpg", "width": 80, "height": 60}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "area": 3000, "bbox": [0, 0, 60, 50],
                             "segmentation": [[0, 0, 60, 0, 60, 50, 0, 50]], "iscrowd": 0}],
            "categories": [{"id": 1, "name": "a"}]}))
        r = run("data_prep", "coco9213", "--coco-root", tmp_path / "coco", "--annotations", _with_bom(ann),
                "--out", tmp_path / "out", "--groups", 1, "--images", 1)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("which", ["deploy prototxt", "solver"])
def test_a_prototxt_with_a_byte_order_mark_is_one_error_line(data, tmp_path, which):
    """Caffe's parser aborts on the mark (it reads the deploy prototxt itself): said so,
    instead of 'Expected identifier or number, got \\ufeff'."""
    if which == "solver":
        solver = _with_bom(shutil.copy(TINY_SINGLE.solver, tmp_path / "solver.prototxt"))
        r = run(*commands(data, tmp_path / "out")["train"], "--solver", solver)
    else:
        solver = _with_bom(shutil.copy(TINY_SINGLE.deploy, tmp_path / "deploy.prototxt"))
        r = run(*with_option(commands(data, tmp_path / "out")["predict"], "--prototxt", solver))
    assert_fails_cleanly(r, solver, "byte-order mark", "without BOM")



def _conv1_2_blob(blob):
    return next(x for x in blob.layer if x.name == "conv1_2").blobs[0]


# A caffemodel whose conv1_2 weights disagree with themselves or with the net in ways Caffe's
# copy aborts on (Blob::ShapeEquals, Blob::FromProto): id -> (edit of the blob, words).
WEIGHT_BLOB_DAMAGE = {
    "values cut short": (lambda b: b.data.__delitem__(slice(10, None)), ["conv1_2", "holds 10 values"]),
    "no values": (lambda b: b.data.__delitem__(slice(None)), ["conv1_2", "holds 0 values"]),
    "double values of another count": (lambda b: b.double_data.extend([0.0] * 5), ["conv1_2", "holds 5 values"]),
    "shape flattened": (lambda b: b.shape.dim.__setitem__(slice(None), [576]), ["conv1_2", "(576,)"]),
    # fifth pass: values Caffe copies without a word, and that give NaN maps or a NaN loss
    "a NaN value": (lambda b: b.data.__setitem__(7, float("nan")), ["conv1_2", "1 NaN or infinite"]),
    "an infinite value": (lambda b: b.data.__setitem__(0, float("-inf")), ["conv1_2", "1 NaN or infinite"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("command", ["predict caffe", "predict opencv", "train"])
@pytest.mark.parametrize("damage", sorted(WEIGHT_BLOB_DAMAGE))
def test_weights_whose_blob_values_do_not_fit(data, tmp_path, command, damage):
    from core.netio import read_weights
    edit, words = WEIGHT_BLOB_DAMAGE[damage]
    weights = read_weights(data["weights"]["single"])
    edit(_conv1_2_blob(weights))
    path = tmp_path / "damaged.caffemodel"
    path.write_bytes(weights.SerializeToString())
    argv = commands(data, tmp_path / "out")["predict" if command.startswith("predict") else "train"]
    if command == "train":
        argv = argv + ["--init", path]
    else:
        argv = argv[:2] + [path] + argv[3:] + ["--engine", command.split()[1]]
    r = run(*argv)
    assert_fails_cleanly(r, path, *words)
    assert not (tmp_path / "out").exists()      # a run folder neither: a failed start leaves nothing new


@pytest.mark.slow
def test_vgg16_weights_holding_nan_are_refused_before_the_run(data, tmp_path):
    from core.netio import read_weights
    from core.toydata import write_vgg16_like
    path = tmp_path / "vgg16.caffemodel"
    write_vgg16_like(str(path))
    weights = read_weights(path)
    next(x for x in weights.layers if x.name == "conv3_2").blobs[1].data[4] = float("nan")
    path.write_bytes(weights.SerializeToString())
    r = run("apps.train", *train_args(data["groups"], data["root"], tmp_path / "out"), "--iters", 1, "--vgg16", path)
    assert_fails_cleanly(r, path, "conv3_2", "NaN")
    assert not (tmp_path / "out").exists()


PROTOTXT_MISFITS = {   # id: (the model of the weights, the deploy prototxt given, words of the message)
    "group weights, Ours-S prototxt": ("group", TINY_SINGLE.deploy, ["'score'"]),
    "Ours-S weights, group prototxt": ("single", TINY_GROUP.deploy, ["'conv_g1'"]),
    "tiny weights, full-size prototxt": ("single", model_files("single").deploy, ["'conv1_1'", "(64, 3, 3, 3)"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(PROTOTXT_MISFITS))
def test_predict_with_weights_that_do_not_fit_the_prototxt(data, tmp_path, case):
    """Refused before the dataset is read and before Caffe reads either file, naming both."""
    model, prototxt, words = PROTOTXT_MISFITS[case]
    r = run("apps.predict", "--weights", data["weights"][model], "--prototxt", prototxt, "--dataset", "icoseg",
            "--root", data["root"], "--out", tmp_path / "o", "--quiet")
    assert_fails_cleanly(r, data["weights"][model], prototxt, *words)
    assert not (tmp_path / "o").exists()


# ---------------------------------------------------------------- 3. run folders move
@pytest.mark.slow
@pytest.mark.parametrize("how", ["moved", "copied"])
def test_a_moved_or_copied_run_resumes_from_its_own_files(data, tmp_path, how):
    first = tmp_path / "first"
    shutil.copytree(data["run"], first)
    second = tmp_path / "elsewhere" / "second"
    if how == "moved":
        shutil.move(first, second)
    else:
        shutil.copytree(first, second)
        # the old folder's weights are spoiled: resuming the copy must not read them
        for p in (first / "snapshots").glob("*.caffemodel"):
            p.write_bytes(b"spoiled")
    r = run("apps.train", *train_args(data["groups"], data["root"], second), "--iters", 3, "--resume")
    assert r.returncode == 0, r.stderr
    assert "resumed from iteration 2" in r.stderr
    assert json.loads((second / "latest.json").read_text())["iter"] == 3
    assert str(second) in (second / "solver.prototxt").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("what", ["a new run folder", "a run folder moved there", "weights (caffe)",
                                  "weights (opencv)", "a deploy prototxt"])
def test_a_path_caffe_takes_that_is_not_utf8_is_one_error_line(data, tmp_path, what):
    """pycaffe passes paths on as UTF-8 text: a Latin-1 folder name was a UnicodeEncodeError
    traceback (training, pycaffe's predict), and OpenCV's DNN module crashed on it (SIGSEGV)."""
    folder = tmp_path / os.fsdecode(b"caf\xe9")
    if "run folder" in what:
        run_dir = folder / "run"
        if what == "a run folder moved there":
            shutil.copytree(data["run"], run_dir)
        r = run("apps.train", *train_args(data["groups"], data["root"], run_dir), "--iters", 3,
                *(["--resume"] if "moved" in what else []))
        assert_fails_cleanly(r, "run folder's path is not UTF-8")
        assert "moved" in what or not run_dir.exists()
        return
    folder.mkdir()
    argv = commands(data, tmp_path / "out")["predict"]
    if what.startswith("weights"):
        argv = with_option(argv, "--weights", shutil.copy(data["weights"]["single"], folder))
        argv += ["--engine", what[9:-1]]
    else:
        argv = with_option(argv, "--prototxt", shutil.copy(TINY_SINGLE.deploy, folder))
    r = run(*argv)
    assert_fails_cleanly(r, "path is not UTF-8")
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------- 4. unwritable and full disks
def commands(data, out):
    """Every command that writes an output folder, with `out` as that folder."""
    return {
        "predict": ["apps.predict", "--weights", data["weights"]["single"], "--model", "single", "--prototxt",
                    TINY_SINGLE.deploy, "--dataset", "icoseg", "--root", data["root"], "--out", out, "--quiet"],
        "eval": eval_args(data["root"], data["maps"], out),
        "cbcs": ["baselines.cbcs", "--dataset", "icoseg", "--root", data["root"], "--out", out, "--workers", 1],
        "train": ["apps.train", *train_args(data["groups"], data["root"], out), "--iters", 1],
        "train-groups": ["data_prep", "train-groups", "--dataset", "icoseg", "--root", data["root"],
                         "--out", out / "groups.jsonl", "--workers", 1],
    }


@pytest.mark.slow
@pytest.mark.parametrize("command", ["predict", "eval", "cbcs", "train", "train-groups"])
@pytest.mark.parametrize("where", ["under a regular file", "read-only", "full disk"])
def test_unwritable_output(data, tmp_path, command, where):
    if where == "under a regular file":
        (tmp_path / "file").write_text("x")
        out = tmp_path / "file" / "out"
        r = run(*commands(data, out)[command])
        assert_fails_cleanly(r, tmp_path / "file")
        return
    out = tmp_path / "out"
    r = run(*commands(data, out)[command], fault=("erofs" if where == "read-only" else "enospc", tmp_path))
    assert_fails_cleanly(r, out)
    assert not out.exists() or not [p for p in out.rglob("*") if p.is_file()]


@pytest.mark.slow
@pytest.mark.parametrize("option", ["groups --out", "train-groups --out", "train-groups --cache",
                                    "descriptors --out"])
def test_an_output_file_that_is_a_fifo_is_left_alone(data, tmp_path, option):
    """The rename of an atomic write put a regular file in place of a FIFO (and, as root, of
    /dev/null itself): one line instead, before the work."""
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    command, flag = option.split()
    argv = ["data_prep", command, "--dataset", "icoseg", "--root", data["root"], "--out", tmp_path / "g.jsonl"]
    if command != "groups":
        argv += ["--workers", 1]
    r = run(*with_option(argv, flag, fifo), timeout=60)
    assert_fails_cleanly(r, fifo, "FIFO", "not a regular file")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


@pytest.mark.slow
@pytest.mark.parametrize("name", [".", "/", "new/", "new/.."])
@pytest.mark.parametrize("option", ["groups --out", "train-groups --out", "train-groups --cache",
                                    "descriptors --out"])
def test_an_output_file_named_as_a_folder_is_refused(data, tmp_path, option, name):
    """train-groups made its cache's name from such an --out before checking it (a traceback);
    a name ending in '/' or '..' names a folder, made or not."""
    command, flag = option.split()
    argv = ["data_prep", command, "--dataset", "icoseg", "--root", data["root"], "--out", tmp_path / "g.jsonl"]
    if command != "groups":
        argv += ["--workers", 1]
    given = name if name in (".", "/") else f"{tmp_path}/{name}"
    r = subprocess.run([sys.executable, "-m", *map(str, with_option(argv, flag, given))], capture_output=True,
                       text=True, cwd=tmp_path, env=ENV, timeout=60)
    assert_fails_cleanly(r, given, "is a folder")
    assert sorted(os.listdir(tmp_path)) == []


@pytest.mark.slow
def test_training_on_a_full_disk_never_points_at_a_partial_snapshot(data, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(data["run"], run_dir)
    before = files_of(run_dir)
    r = run("apps.train", *train_args(data["groups"], data["root"], run_dir), "--iters", 4, "--resume",
            fault=("nospace", tmp_path))
    assert_fails_cleanly(r, run_dir, "free space")
    assert files_of(run_dir) == before


GPU_BUNDLE_MISTAKES = {   # id: (OUT_DIR argument(s), environment, words of the message), paths under tmp_path
    "no OUT_DIR": ([], {}, ["usage", "OUT_DIR"]),
    "OUT_DIR under a regular file": (["file/dist"], {}, ["file", "is a file"]),
    "OUT_DIR a regular file": (["file"], {}, ["file", "not a folder"]),
    "PYTHON not there": (["dist"], {"PYTHON": "nothere/python"}, ["nothere/python", "not found"]),
    "DATA without images": (["dist"], {"DATA": "empty"}, ["empty", "no images/ folder"]),
    "CAFFE_BUILD not a build": (["dist"], {"CAFFE_BUILD": "empty"}, ["empty", "not a Caffe build folder"]),
}


@pytest.mark.parametrize("case", sorted(GPU_BUNDLE_MISTAKES))
def test_gpu_bundle_refuses_its_inputs_before_the_work(tmp_path, case):
    """scripts/gpu_bundle.sh: one error line and 2, before the minutes of building and packing
    (CAFFE_BUILD is a non-build in every case but its own: a check that came after it would
    name it)."""
    args, env, words = GPU_BUNDLE_MISTAKES[case]
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").mkdir()
    env = {**ENV, "PYTHON": sys.executable, "CAFFE_BUILD": str(tmp_path / "no build"),
           **{k: str(tmp_path / v) for k, v in env.items()}}
    r = subprocess.run(["scripts/gpu_bundle.sh", *[str(tmp_path / a) for a in args]], capture_output=True, text=True,
                       cwd=ROOT, env=env, timeout=120)
    assert_fails_cleanly(r, *words)
    assert sorted(os.listdir(tmp_path)) == ["empty", "file"]


@pytest.mark.parametrize("script", ["scripts/cuda_build.sh", "scripts/gpu_bundle/gpu_check.sh"])
def test_a_folder_a_gpu_script_cannot_create_is_one_error_line(tmp_path, script):
    """mkdir's own message came first, then "error: cannot create X" without the file first;
    cuda_build.sh went on to pip (here PYTHON=false: 'pip could not install', status 1)."""
    (tmp_path / "file").write_text("x")
    folder = tmp_path / "file" / "sub"
    env = dict(ENV, CUDA_HOME=str(tmp_path), CUDA_LINE="13", PYTHON="false", GWD_CAFFE_CACHE=str(folder))
    r = subprocess.run(["bash", script, *([str(folder)] if script.endswith("gpu_check.sh") else [])],
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert_fails_cleanly(r, folder, "cannot create", "Not a directory")
    assert r.stderr.startswith("error:") and len(r.stderr.strip().splitlines()) == 1, r.stderr


def _stdout_commands(data, tmp_path):
    """Commands that print their summary or table on stdout."""
    results = tmp_path / "results.json"
    results.write_text(json.dumps(results_file()))
    return {"summary": ["data_prep", "summary", "--dataset", "icoseg", "--root", data["root"]],
            "eval table": ["eval", "table", "--results", results, "--out", tmp_path / "table"],
            "predict": commands(data, tmp_path / "maps")["predict"]}


STDOUT_CASES = [("summary", "1"), ("summary", ""), ("eval table", ""), ("predict", "")]   # (command, PYTHONUNBUFFERED)


@pytest.mark.slow
@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
@pytest.mark.parametrize("command,unbuffered", STDOUT_CASES, ids=[f"{c} unbuffered={u or 0}" for c, u in STDOUT_CASES])
def test_a_full_stdout_is_named(data, tmp_path, command, unbuffered):
    argv = _stdout_commands(data, tmp_path)[command]
    with open("/dev/full", "w") as full:
        r = subprocess.run([sys.executable, "-m", *map(str, argv)], stdout=full, stderr=subprocess.PIPE, text=True,
                           cwd=ROOT, env=dict(ENV, PYTHONUNBUFFERED=unbuffered), timeout=300)
    assert_fails_cleanly(r, "<stdout>", "No space left on device")


@pytest.mark.slow
@pytest.mark.parametrize("command", ["summary", "eval table", "predict"])
def test_a_stdout_whose_reader_went_away_ends_quietly(data, tmp_path, command):
    """`cmd | head -1`: no traceback, no 'Exception ignored', no error line; 141 as Unix tools end."""
    argv = _stdout_commands(data, tmp_path)[command]
    p = subprocess.Popen([sys.executable, "-m", *map(str, argv)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd=ROOT, env=ENV)
    p.stdout.close()
    err = p.stderr.read()
    p.wait(timeout=300)
    assert p.returncode == 128 + signal.SIGPIPE, (p.returncode, err)
    assert "Traceback" not in err and "Exception ignored" not in err and "error" not in err, err


BINARY_STDOUT_SCRIPT = ("import sys\n"
                        "from core.errors import cli\n"
                        "cli(lambda: sys.stdout.buffer.write(b'x' * 100000))()\n")


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
@pytest.mark.parametrize("stdout", ["full", "reader gone"])
def test_binary_writes_to_stdout_are_handled_as_text_ones(stdout):
    """sys.stdout.buffer bypassed the naming of stdout: "error: No space left on device" without
    a file, and "error: Broken pipe", status 2, where a reader that went away ends quietly."""
    argv = [sys.executable, "-c", BINARY_STDOUT_SCRIPT]
    if stdout == "full":
        with open("/dev/full", "w") as full:
            r = subprocess.run(argv, stdout=full, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=ENV, timeout=60)
        assert_fails_cleanly(r, "<stdout>", "No space left on device")
        return
    p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=ENV)
    p.stdout.close()
    err = p.stderr.read()
    p.wait(timeout=60)
    assert (p.returncode, err) == (128 + signal.SIGPIPE, "")


@pytest.mark.parametrize("closed", ["stdout", "stderr", "all three"])
def test_a_command_started_with_a_standard_stream_closed_writes_into_no_file(tmp_path, closed):
    """`cmd >&-`: the first file the command opened got descriptor 1 (or 2), and what C code
    printed went into it; with stderr closed, Python printed the error line on stdout."""
    script = tmp_path / "closed.py"
    script.write_text("import os, sys\n"
                      "from core.errors import UserError, cli\n"
                      "def main():\n"
                      "    with open(sys.argv[1], 'w') as f:\n"
                      "        for fd in (1, 2):     # as C code prints (Caffe, libpng): errors ignored\n"
                      "            try:\n"
                      "                os.write(fd, b'printed by C code\\n')\n"
                      "            except OSError:\n"
                      "                pass\n"
                      "        f.write('content\\n')\n"
                      "    raise UserError(sys.argv[1] + ': refused')\n"
                      "cli(main)()\n")
    redirect = {"stdout": ">&-", "stderr": "2>&-", "all three": "<&- >&- 2>&-"}[closed]
    r = subprocess.run(["bash", "-c", f'"$@" {redirect}', "bash", sys.executable, script, tmp_path / "file"],
                       capture_output=True, text=True, cwd=ROOT, env=dict(ENV, PYTHONPATH=str(ROOT)), timeout=60)
    assert r.returncode == 2, r.stderr
    assert (tmp_path / "file").read_text() == "content\n"
    if closed == "stdout":
        assert r.stderr.strip().splitlines()[-1] == f"error: {tmp_path / 'file'}: refused"
    if closed == "stderr":
        assert r.stdout == "printed by C code\n", r.stdout


# ---------------------------------------------------------------- 5. broken dataset files
@pytest.mark.slow
@pytest.mark.parametrize("command", ["cbcs", "train-groups", "eval", "predict", "summary"])
@pytest.mark.parametrize("broken", ["truncated JPEG image", "truncated PNG mask"])
def test_every_command_skips_broken_files_and_counts_them(data, tmp_path, command, broken):
    root = copy_dataset(data, tmp_path)
    truncate(root / ("img/g 0/1.jpg" if "JPEG" in broken else "gt/g 0/1.png"))
    out = tmp_path / "out"
    argv = commands(dict(data, root=root), out).get(command) or \
        ["data_prep", "summary", "--dataset", "icoseg", "--root", root]
    r = run(*argv)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert "truncated files: 1" in r.stdout + r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("command", ["cbcs", "train-groups", "eval", "predict", "summary"])
def test_every_command_skips_a_fifo_among_the_images_and_counts_it(data, tmp_path, command):
    """A FIFO named like an image (a half-set-up pipeline, a leftover of `mkfifo`): the header
    probe's open() waited for a writer for ever."""
    root = copy_dataset(data, tmp_path)
    os.mkfifo(root / "img" / "g 0" / "9.jpg")
    argv = commands(dict(data, root=root), tmp_path / "out").get(command) or \
        ["data_prep", "summary", "--dataset", "icoseg", "--root", root]
    r = run(*argv, timeout=120)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "unreadable files: 1" in r.stdout + r.stderr


def png_declaring(path, width, height):
    """A whole PNG file (signature, IHDR, a few bytes of IDAT, IEND) whose header declares
    width x height: what a damaged header, or a decompression bomb, looks like to a reader."""
    import struct
    import zlib

    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    pathlib.Path(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) +
                                   chunk(b"IDAT", zlib.compress(bytes(10))) + chunk(b"IEND", b""))


@pytest.mark.slow
@pytest.mark.parametrize("command", ["cbcs", "train-groups", "eval", "predict", "summary --verify"])
@pytest.mark.parametrize("which", ["image", "mask"])
def test_every_command_skips_an_image_declaring_too_many_pixels(data, tmp_path, command, which):
    """OpenCV raises (cv2.error, a traceback) on a header declaring more than 2^30 pixels: the
    readers skip such a file and count it, as any other broken one."""
    root = copy_dataset(data, tmp_path)
    old = root / ("img/g 0/1.jpg" if which == "image" else "gt/g 0/1.png")
    old.unlink()
    png_declaring(old.with_suffix(".png"), 100000, 100000)
    argv = commands(dict(data, root=root), tmp_path / "out").get(command) or \
        ["data_prep", "summary", "--dataset", "icoseg", "--root", root, "--verify"]
    r = run(*argv)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "images larger than OpenCV decodes: 1" in r.stdout + r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("where", ["a map to evaluate", "an image of a training list"])
def test_an_image_declaring_too_many_pixels_that_is_named_is_one_error_line(data, tmp_path, where):
    if where == "a map to evaluate":
        maps = tmp_path / "maps"
        shutil.copytree(data["maps"], maps)
        bad = maps / "g 0" / "1.png"
        png_declaring(bad, 60000, 60000)
        argv = eval_args(data["root"], maps, tmp_path / "out")
    else:
        root = copy_dataset(data, tmp_path)
        for group in ("g 0", "g 1"):     # whichever group comes first
            png_declaring(root / "img" / group / "1.jpg", 60000, 60000)
        bad = root / "img"
        argv = ["apps.train", *train_args(data["groups"], root, tmp_path / "out"), "--iters", 1]
    r = run(*argv)
    assert_fails_cleanly(r, bad, "more pixels than OpenCV decodes")


@pytest.mark.slow
@pytest.mark.parametrize("where", ["a map to evaluate", "an image of a training list"])
def test_a_damaged_png_that_is_named_is_one_line_without_libpng_lines(data, tmp_path, where):
    """libpng printed its own "libpng error: IDAT: CRC error" on stderr before our line."""
    import cv2
    import numpy as np
    png = bytearray(cv2.imencode(".png", np.random.RandomState(0).randint(0, 255, (60, 80, 3), np.uint8))[1])
    png[100:400] = bytes(300)      # header and end whole: found only when decoded
    if where == "a map to evaluate":
        maps = tmp_path / "maps"
        shutil.copytree(data["maps"], maps)
        bad = maps / "g 0" / "1.png"
        bad.write_bytes(bytes(png))
        argv = eval_args(data["root"], maps, tmp_path / "out")
    else:
        root = copy_dataset(data, tmp_path)
        for group in ("g 0", "g 1"):     # whichever group comes first
            (root / "img" / group / "1.jpg").write_bytes(bytes(png))
        bad = root / "img"
        argv = ["apps.train", *train_args(data["groups"], root, tmp_path / "out"), "--iters", 1]
    r = run(*argv)
    assert_fails_cleanly(r, bad, "not a readable image")
    assert "libpng" not in r.stderr, r.stderr


# ---------------------------------------------------------------- 6. interrupts
def wait_cpu_seconds(p, seconds, timeout=120):
    """Wait until process p has run for `seconds` of CPU time (user + system), or has ended: a
    moment of the command's own progress, the same on a loaded machine as on an idle one (a
    wall-clock delay there can still fall in the interpreter's start-up, README "When things go
    wrong")."""
    tick = os.sysconf("SC_CLK_TCK")
    deadline = time.time() + timeout
    while p.poll() is None and time.time() < deadline:
        try:
            fields = pathlib.Path(f"/proc/{p.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except FileNotFoundError:
            return
        if (int(fields[11]) + int(fields[12])) / tick >= seconds:
            return
        time.sleep(0.01)


@pytest.mark.slow
@pytest.mark.parametrize("command", ["eval", "train"])
@pytest.mark.parametrize("after", [0.3, 1.0, 2.5])
def test_ctrl_c_at_any_moment_is_one_line_and_130(data, tmp_path, command, after):
    out = tmp_path / "out"
    argv = commands(data, out)[command]
    if command == "train":
        argv = argv[:-1] + [100000]
    else:   # a previous evaluation in the folder must come out of it intact
        assert run(*argv).returncode == 0
    before = files_of(out) if out.exists() else {}
    p = subprocess.Popen([sys.executable, "-m", *map(str, argv)], cwd=ROOT, env=ENV, text=True,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_cpu_seconds(p, after)
    p.send_signal(signal.SIGINT)
    _, err = p.communicate(timeout=120)
    assert "Traceback" not in err and "Check failed" not in err, err
    if p.returncode == 0:      # finished before the signal came: nothing to check
        return
    if p.returncode == -signal.SIGINT and command == "eval" and "wrote " in err:
        return                 # came during interpreter shutdown, after every output was written
    assert p.returncode == 130, (p.returncode, err)
    last = err.strip().splitlines()[-1]
    assert last == "interrupted" or "continue with --resume" in last, err
    if command == "eval":
        assert files_of(out) == before


SIGINT_IGNORED_SCRIPTS = {   # what runs with SIGINT ignored, and what it prints when it kept ignoring it
    "a command": ("import os, signal, sys, time\n"
                  "from core.errors import cli\n"
                  "@cli\n"
                  "def main():\n"
                  "    os.kill(os.getpid(), signal.SIGINT)\n"
                  "    time.sleep(0.5)\n"
                  "    print('finished')\n"
                  "main()\n", "finished"),
    "the training loop": ("import os, signal, time\n"
                          "from apps.train import StopSignals\n"
                          "with StopSignals() as stop:\n"
                          "    os.kill(os.getpid(), signal.SIGINT)\n"
                          "    time.sleep(0.5)\n"
                          "print('stopped by', stop.signal)\n", "stopped by None"),
    # the pipeline's steps take the SIGINT it forwards (for a SIGTERM), in their own process group
    "a pipeline step": ("import sys\n"
                        "from apps.pipeline import run_step_command\n"
                        "code = 'import signal, sys; sys.exit(signal.getsignal(signal.SIGINT) is signal.SIG_IGN)'\n"
                        "print('step ignores SIGINT:', run_step_command([sys.executable, '-c', code]))\n",
                        "step ignores SIGINT: 0"),
}


@pytest.mark.parametrize("case", sorted(SIGINT_IGNORED_SCRIPTS))
def test_ctrl_c_ignored_at_the_start_stays_ignored(tmp_path, case):
    """A background job of a non-interactive shell (`cmd &` in a script) inherits SIGINT ignored:
    it ignored Ctrl-C while it imported and must not start honouring it later."""
    code, printed = SIGINT_IGNORED_SCRIPTS[case]
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=120,
                       preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    assert (r.returncode, r.stdout.strip()) == (0, printed), r.stderr


@pytest.mark.parametrize("at", [1, 2, 3, 4])
def test_ctrl_c_while_the_outputs_are_swapped_in_keeps_one_whole_set(tmp_path, at):
    """Ctrl-C at the at-th rename of the swap that replaces an evaluation's (or predict's) files
    together: the folder holds the old set or the new one, never a mix or nothing (the old
    files, moved aside, went with the staging folder)."""
    script = tmp_path / "swap_ctrl_c.py"
    script.write_text(
        "import os, signal, sys\n"
        "from core import outputs\n"
        "from core.errors import cli\n"
        "out = sys.argv[1]\n"
        "outputs.write_together(out, {'a.txt': 'old a', 'b.txt': 'old b'})\n"
        "real, calls = os.replace, []\n"
        "def replace(src, dst):\n"
        "    calls.append(dst)\n"
        f"    if len(calls) == {at}:\n"
        "        os.kill(os.getpid(), signal.SIGINT)\n"
        "    return real(src, dst)\n"
        "outputs.os.replace = replace\n"
        "cli(lambda: outputs.write_together(out, {'a.txt': 'new a', 'b.txt': 'new b'}))()\n")
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, str(script), str(out)], capture_output=True, text=True, cwd=ROOT,
                       env=ENV, timeout=60)
    assert (r.returncode, r.stderr.strip()) == (130, "interrupted"), r.stderr
    assert files_of(out) in ({"a.txt": b"old a", "b.txt": b"old b"}, {"a.txt": b"new a", "b.txt": b"new b"})
    assert not [p for p in os.listdir(out) if p.startswith(".tmp-")]


def run_interrupted_at_rename(at, *argv, sig=signal.SIGINT):
    """python -m argv, Ctrl-C (or `sig`) coming at its at-th file rename (every file is written by one)."""
    code = ("import os, runpy, signal, sys\n"
            "real, calls = os.replace, []\n"
            "def replace(src, dst, **k):\n"
            "    calls.append(dst)\n"
            f"    if len(calls) == {at}:\n"
            f"        os.kill(os.getpid(), {int(sig)})\n"
            "    return real(src, dst, **k)\n"
            "os.replace = replace\n"
            "sys.argv = sys.argv[1:]\n"
            "runpy.run_module(sys.argv[0], run_name='__main__', alter_sys=True)\n")
    return subprocess.run([sys.executable, "-c", code, *map(str, argv)], capture_output=True, text=True, cwd=ROOT,
                          env=ENV, timeout=300)


def _synthetic(tmp_path):
    out = tmp_path / "synthetic"
    argv = ["data_prep", "synthetic", "--out", out, "--train-groups", 3, "--test-groups", 1, "--size", "32x64",
            "--workers", 1]
    return argv, out / "train", "synthetic"


def _coco9213(tmp_path):
    import cv2
    import numpy as np
    (tmp_path / "coco").mkdir()
    images, annotations = [], []
    for i in range(1, 7):
        cv2.imwrite(str(tmp_path / "coco" / f"{i}.jpg"), np.full((60, 80, 3), 40 * i, np.uint8))
        images.append({"id": i, "file_name": f"{i}.jpg", "width": 80, "height": 60})
        annotations.append({"id": i, "image_id": i, "category_id": 1 + i % 2, "area": 3000, "iscrowd": 0,
                            "bbox": [0, 0, 60, 50], "segmentation": [[0, 0, 60, 0, 60, 50, 0, 50]]})
    (tmp_path / "ann.json").write_text(json.dumps({"images": images, "annotations": annotations,
                                                   "categories": [{"id": 1, "name": "a"}, {"id": 2, "name": "b"}]}))
    out = tmp_path / "coco9213"
    argv = ["data_prep", "coco9213", "--coco-root", tmp_path / "coco", "--annotations", tmp_path / "ann.json",
            "--out", out, "--groups", 2, "--images", 6]
    return argv, out, "coco9213"


@pytest.mark.slow
@pytest.mark.parametrize("command", ["synthetic", "coco9213"])
def test_a_dataset_whose_preparation_was_interrupted_is_refused_until_it_is_run_again(tmp_path, command):
    """Ctrl-C while a dataset is being written left part of it, which the readers took for the
    whole (coco9213: training on 1 image of 6, without a word) or which the same command then
    refused as not its own (synthetic)."""
    argv, root, dataset = {"synthetic": _synthetic, "coco9213": _coco9213}[command](tmp_path)
    r = run_interrupted_at_rename(4, *argv)
    assert (r.returncode, r.stderr.strip().splitlines()[-1]) == (130, "interrupted"), r.stderr
    assert_fails_cleanly(run("data_prep", "summary", "--dataset", dataset, "--root", root), root,
                         f"python -m data_prep {command}` stopped", "run it again")
    r = run(*argv)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    r = run("data_prep", "summary", "--dataset", dataset, "--root", root)
    assert r.returncode == 0 and ("6 images" if command == "coco9213" else "15 images") in r.stdout, r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("command", ["predict", "eval", "cbcs", "cshs", "synthetic", "coco9213"])
def test_sigterm_to_a_command_writing_outputs_is_one_line_and_143_and_leaves_no_staging(data, tmp_path, command):
    """SIGTERM (kill, timeout, docker stop) killed predict silently, its staging folder with
    the maps written so far left in --out for good: it ends the command as Ctrl-C does."""
    out = tmp_path / "out"
    argv = {**commands(data, out),
            "cshs": ["baselines.cshs", "--dataset", "icoseg", "--root", data["root"], "--out", out, "--workers", 1],
            "synthetic": _synthetic(tmp_path)[0], "coco9213": _coco9213(tmp_path)[0]}[command]
    out = pathlib.Path(argv[argv.index("--out") + 1])
    r = run_interrupted_at_rename(2, *argv, sig=signal.SIGTERM)
    assert "Traceback" not in r.stderr, r.stderr
    assert (r.returncode, r.stderr.strip().splitlines()[-1]) == (128 + signal.SIGTERM, "terminated"), r.stderr
    assert not [p for p in out.rglob(".tmp-*")] if out.exists() else True


def holding(folder):
    """A process holding `folder` as a command writing there does (core.outputs.lock_out_dir)."""
    code = ("import sys, time\nfrom core.outputs import lock_out_dir\n"
            "lock_out_dir(sys.argv[1])\nprint('held', flush=True)\ntime.sleep(600)\n")
    p = subprocess.Popen([sys.executable, "-c", code, str(folder)], cwd=ROOT, env=ENV, text=True,
                         stdout=subprocess.PIPE)
    assert p.stdout.readline().strip() == "held"
    return p


@pytest.mark.slow
@pytest.mark.parametrize("command", ["predict", "eval", "cbcs", "train --resume", "train", "synthetic"])
def test_a_folder_another_command_is_writing_is_refused_before_any_work(data, tmp_path, command):
    """Two trainings into one run folder (`make train RESUME=1` twice), or two predicts into
    one new --out, both ran and reported success, their files mixed. The second stops, naming
    the first; once that one is gone (even killed, its lock file left), the folder is usable and
    holds no lock file after."""
    out = tmp_path / "out"
    argv = {**commands(data, out), "synthetic": _synthetic(tmp_path)[0]}[command.split()[0]]
    if command == "train --resume":
        shutil.copytree(data["run"], out)
        argv = argv[:-1] + [3, "--resume"]
    out = pathlib.Path(argv[argv.index("--out") + 1])
    before = files_of(out) if out.exists() else {}
    holder = holding(out)
    try:
        r = run(*argv)
    finally:
        holder.kill()
        holder.wait()
    assert_fails_cleanly(r, out, f"in use by another running command (pid {holder.pid})")
    assert {n: b for n, b in files_of(out).items() if n != ".gwd-lock"} == before
    r = run(*argv)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert not list(out.rglob(".gwd-lock"))


@pytest.mark.slow
def test_staging_left_by_a_killed_predict_is_removed_by_the_next_run(data, tmp_path):
    """SIGKILL (or a power cut) leaves predict's staging folder, partial maps inside, in --out:
    the next command writing there removes it; the folder counts as empty meanwhile."""
    out = tmp_path / "out"
    (out / ".tmp-k1ll3d_0" / "new" / "g 0").mkdir(parents=True)
    (out / ".tmp-k1ll3d_0" / "new" / "g 0" / "1.png").write_bytes(b"partial")
    (out / ".tmp-abcd1234.png").write_bytes(b"partial")
    r = run(*commands(data, out)["predict"])
    assert r.returncode == 0, r.stderr
    assert not list(out.glob(".tmp-*")) and not list(out.glob(".gwd-lock"))


# ---------------------------------------------------------------- 7. settings that make no sense
SETTINGS = [
    (["apps.train", "--iters", -1], "--iters", "[0, 2147483647]"),
    (["apps.train", "--iters", 0], "--iters 0", "1 or more"),      # a new run: nothing to snapshot
    (["apps.train", "--base-lr", -0.1], "--base-lr", "[1.1754944e-38, 3.4e+38]"),
    (["apps.train", "--snapshot-every", 0], "--snapshot-every", ">= 1"),
    (["apps.train", "--workers", 0], "--workers", ">= 1"),
    (["apps.train", "--seed", -1], "--seed", "[0, 4294967295]"),                 # third pass: Caffe's
    (["apps.train", "--seed", 2 ** 64], "--seed", "[0, 4294967295]"),            # unsigned int
    (["eval", "--workers", 0], "--workers", ">= 1"),
    (["eval", "--vis-groups", -2], "--vis-groups", ">= 0"),
    (["baselines.cbcs", "--workers", 0], "--workers", ">= 1"),
    (["apps.predict", "--group-size", 0], "--group-size", ">= 1"),
    (["data_prep", "train-groups", "--workers", 0], "--workers", ">= 1"),
    (["data_prep", "train-groups", "--neighbours", 0], "--neighbours", "[1, 999]"),
    (["apps.train", "--iters", 2 ** 31], "--iters", "[0, 2147483647]"),       # fifth pass: Caffe's int32
    (["apps.train", "--base-lr", "1e308"], "--base-lr", "[1.1754944e-38, 3.4e+38]"),       # and float32
    (["apps.train", "--base-lr", "1e-50"], "--base-lr", "[1.1754944e-38, 3.4e+38]"),       # 0 in float32
    (["apps.train", "--gpu", -5], "--gpu", ">= 0, or -1"),                                 # -1 is the CPU
    (["apps.predict", "--gpu", -5], "--gpu", ">= 0, or -1"),
]


@pytest.mark.slow
@pytest.mark.parametrize("argv,option,valid", SETTINGS, ids=[" ".join(map(str, a)) for a, _, _ in SETTINGS])
def test_settings_that_make_no_sense_are_refused_with_the_range(data, tmp_path, argv, option, valid):
    full = commands(data, tmp_path / "out")
    command = {"apps.train": "train", "eval": "eval", "baselines.cbcs": "cbcs", "apps.predict": "predict",
               "data_prep": "train-groups"}[argv[0]]
    given = argv[2:] if argv[0] == "data_prep" else argv[1:]
    r = run(*full[command], *given)      # the last value of an option is the one argparse keeps
    assert_fails_cleanly(r, option, valid)
    assert not (tmp_path / "out").exists()


STANDALONE_SETTINGS = [   # commands that need no dataset to refuse a setting: (argv, option, valid)
    (["data_prep", "synthetic", "--size", "100000x100000"], "100000x100000", "at most 4096"),
    (["data_prep", "synthetic", "--seed", -5], "--seed", ">= 0"),
    (["data_prep", "coco9213", "--min-fraction", "nan"], "--min-fraction", "[0, 1]"),
    (["data_prep", "coco9213", "--groups", 0], "--groups", ">= 1"),
    (["data_prep", "descriptors", "--workers", 0], "--workers", ">= 1"),
    # fifth pass: checked up front, with the range Caffe's fields hold
    (["apps.ablation", "--seeds", -1], "--seeds", "[0, 4294967295]"),
    (["apps.ablation", "--seeds", 2 ** 64], "--seeds", "[0, 4294967295]"),
    (["apps.ablation", "--train-groups", 0], "--train-groups", ">= 1"),
    (["apps.ablation", "--test-groups", -2], "--test-groups", ">= 1"),
    (["apps.ablation", "--iters", 2 ** 31], "--iters", "[1, 2147483647]"),
    (["apps.pipeline", "train", "--iters", "abc"], "--iters", "[1, 2147483647], got 'abc'"),
    (["apps.pipeline", "train", "--iters", 2 ** 31], "--iters", "[1, 2147483647]"),
    (["data_prep", "synthetic", "--train-groups", 0], "--train-groups", ">= 1"),   # a split no reader takes
    (["data_prep", "synthetic", "--test-groups", 0], "--test-groups", ">= 1"),
    (["apps.pipeline", "train", "--gpu", -5], "--gpu", ">= 0, or -1"),
]


@pytest.mark.slow
@pytest.mark.parametrize("argv,option,valid", STANDALONE_SETTINGS,
                         ids=[" ".join(map(str, a)) for a, _, _ in STANDALONE_SETTINGS])
def test_standalone_settings_that_make_no_sense(tmp_path, argv, option, valid):
    out = tmp_path / "out"
    (tmp_path / "coco").mkdir()
    (tmp_path / "ann.json").write_text('{"images": [], "annotations": [], "categories": []}')
    rest = {"synthetic": ["--out", out, "--train-groups", 1, "--test-groups", 1, "--workers", 1],
            "coco9213": ["--coco-root", tmp_path / "coco", "--annotations", tmp_path / "ann.json", "--out", out],
            "descriptors": ["--dataset", "icoseg", "--root", tmp_path, "--out", out],
            "train": ["--data-root", tmp_path, "--vgg16", tmp_path / "vgg16.caffemodel", "--runs", out]}
    command = argv[:1] if argv[0] == "apps.ablation" else argv[:2]
    rest = rest.get(argv[1], ["--runs", out])
    r = run(*command, *rest, *argv[len(command):])
    assert_fails_cleanly(r, option, valid)
    assert not out.exists()


@pytest.mark.parametrize("command", ["apps.gpu_check", "core.device"])
def test_a_negative_gpu_number_other_than_the_cpu_is_refused(command):
    r = run(command, "--gpu", -5, timeout=60)
    assert_fails_cleanly(r, "--gpu", ">= 0, or -1")


MAKE_SWITCHES = [("train", "RESUME", "resume"), ("reproduce", "DRY_RUN", "dry_run")]


def _make_command(target, variable, value):
    """The pipeline's arguments that `make <target> <variable>=<value>` runs (make -n)."""
    import shlex
    r = subprocess.run(["make", "-n", "--no-print-directory", target, f"{variable}={value}"], capture_output=True,
                       text=True, cwd=ROOT, env=ENV, timeout=60)
    assert r.returncode == 0, r.stderr
    line = next(x for x in r.stdout.replace("\\\n", " ").splitlines() if "-m apps.pipeline" in x)
    argv = shlex.split(line)
    return argv[argv.index("apps.pipeline") + 1:]


@pytest.mark.parametrize("value,on", [("1", True), ("yes", True), ("0", False), ("no", False), ("false", False),
                                      ("", False)])
@pytest.mark.parametrize("target,variable,option", MAKE_SWITCHES, ids=[v for _, v, _ in MAKE_SWITCHES])
def test_make_switches_are_off_at_0(target, variable, option, value, on):
    """make train RESUME=0 does not resume (a make variable is 'set' by any value, 0 included)."""
    from apps.pipeline import build_parser
    argv = _make_command(target, variable, value)
    assert getattr(build_parser().parse_args(argv), option) is on, argv


@pytest.mark.parametrize("target,variable,option", MAKE_SWITCHES, ids=[v for _, v, _ in MAKE_SWITCHES])
def test_make_switches_other_than_1_or_0_are_refused(tmp_path, target, variable, option):
    flag = "--" + option.replace("_", "-")
    r = run("apps.pipeline", target, "--data-root", tmp_path, "--vgg16", tmp_path / "vgg16.caffemodel",
            "--runs", tmp_path / "runs", f"{flag}=maybe", timeout=60)
    assert_fails_cleanly(r, flag, "'maybe'", "1 or 0", variable)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("value", ["abc", "-1", "2 4", ""])
def test_make_test_refuses_test_jobs_that_are_not_a_count(value):
    """pytest-xdist's usage text (status 4) came instead, after the setup."""
    r = subprocess.run(["make", "--no-print-directory", "test-fast", f"TEST_JOBS={value}"], capture_output=True,
                       text=True, cwd=ROOT, env=ENV, timeout=120)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and lines[0] == f"error: TEST_JOBS={value}: expected auto, logical or a number of " \
        "workers (0: none)", r.stderr
    assert [x for x in lines if "error:" in x] == lines[:1] and "usage" not in r.stderr and not r.stdout.strip()


def run_with_env(argv, **env):
    return subprocess.run([sys.executable, "-m", *map(str, argv)], capture_output=True, text=True, cwd=ROOT,
                          env=dict(ENV, **env), timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("value", ["abc", "-5", "nan"])
def test_a_progress_interval_that_makes_no_sense_is_refused(data, tmp_path, value):
    argv = [a for a in eval_args(data["root"], data["maps"], tmp_path / "out") if a != "--no-progress"]
    r = run_with_env(argv, GWD_PROGRESS_SECONDS=value)
    assert_fails_cleanly(r, "GWD_PROGRESS_SECONDS", ">= 0")
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
@pytest.mark.parametrize("command", ["eval", "train"])
def test_a_matplotlib_backend_of_the_environment_does_not_stop_the_figures(data, tmp_path, command):
    """MPLBACKEND=nonsense made matplotlib raise on import, after the evaluation's work (nothing
    written) or at a training's first loss plot; the project draws into files only."""
    out = tmp_path / "out"
    r = run_with_env(commands(data, out)[command], MPLBACKEND="nonsense")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert (out / ("pr_curves.png" if command == "eval" else "loss.png")).is_file()


# ---------------------------------------------------------------- the shared helpers, in-process
def test_write_together_rolls_back_when_the_swap_fails(tmp_path, monkeypatch):
    from core import outputs
    outputs.write_together(tmp_path, {"a.txt": "old a", "b.txt": "old b"})
    real = os.replace
    calls = []

    def flaky(src, dst):
        calls.append(dst)
        if len(calls) == 4:     # two old files moved aside, one new file in: then the disk fails
            raise OSError(errno.EIO, "I/O error", dst)
        return real(src, dst)

    monkeypatch.setattr(outputs.os, "replace", flaky)
    with pytest.raises(UserError, match="cannot write"):
        outputs.write_together(tmp_path, {"a.txt": "new a", "b.txt": "new b"})
    monkeypatch.setattr(outputs.os, "replace", real)
    assert files_of(tmp_path) == {"a.txt": b"old a", "b.txt": b"old b"}


def test_atomic_files_get_the_umask_permissions(tmp_path):
    from core.outputs import atomic_path, atomic_write_bytes, write_together
    from data_prep.descriptors import save_cache
    import numpy as np
    old = os.umask(0o022)
    try:
        atomic_write_bytes(tmp_path / "a", b"x")
        write_together(tmp_path, {"b": "y"})
        with atomic_path(tmp_path / "c") as t:
            pathlib.Path(t).write_bytes(b"z")
        save_cache(tmp_path / "d.h5", {"k": np.zeros(1024, np.float32)})
    finally:
        os.umask(old)
    for name in "abcd":
        p = tmp_path / name if name != "d" else tmp_path / "d.h5"
        assert p.stat().st_mode & 0o777 == 0o644, name


@pytest.mark.parametrize("link", ["to a file", "relative, to a file in another folder", "dangling", "a chain"])
def test_an_atomic_write_to_a_symlink_replaces_its_target(tmp_path, link):
    """The rename put a regular file in place of the link, and the file it pointed to kept the
    old content. The temporary file lies beside the target: the rename stays in one file system."""
    from core.outputs import atomic_path, atomic_write_bytes
    (tmp_path / "elsewhere").mkdir()
    target = tmp_path / "elsewhere" / "target.txt"
    if link != "dangling":
        target.write_bytes(b"old")
    path = tmp_path / "link.txt"
    if link == "a chain":
        (tmp_path / "middle.txt").symlink_to(target)
        path.symlink_to(tmp_path / "middle.txt")
    else:
        path.symlink_to(os.path.relpath(target, tmp_path) if link.startswith("relative") else target)
    atomic_write_bytes(path, b"new")
    assert path.is_symlink() and target.read_bytes() == b"new"
    with atomic_path(path) as t:
        assert os.path.dirname(t) == str(target.parent)
        pathlib.Path(t).write_bytes(b"newer")
    assert path.is_symlink() and target.read_bytes() == b"newer"
    assert sorted(os.listdir(target.parent)) == ["target.txt"]


def test_prepare_out_dir(tmp_path):
    from core.errors import cli
    from core.outputs import prepare_out_dir
    (tmp_path / "f").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        prepare_out_dir(tmp_path / "f" / "sub")
    with pytest.raises(UserError, match="not a folder"):
        prepare_out_dir(tmp_path / "f")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(UserError, match="not empty.*--force"):
        prepare_out_dir(tmp_path / "full")
    assert prepare_out_dir(tmp_path / "full", force=True)
    assert prepare_out_dir(tmp_path / "full", may_hold=lambda names: names == ["x"])   # its lock file not counted

    @cli
    def command():
        prepare_out_dir(tmp_path / "new" / "deeper")
        assert os.listdir(tmp_path / "new" / "deeper") == [".gwd-lock"]     # held while the command runs
    command()
    assert not (tmp_path / "new").exists()      # made for its lock, removed at the end: left empty


def test_shape_checks_match_caffe_on_every_prototxt():
    from core.netcheck import check_shapes, learnable_shapes
    from core.netio import caffe, net_learnable_shapes, read_prototxt
    for model in ("group", "single", "group_plus"):
        for tiny in (False, True):
            deploy = model_files(model, tiny).deploy
            shapes = check_shapes(read_prototxt(deploy), deploy)
            net = caffe.Net(str(deploy), caffe.TEST)
            for name, blob in net.blobs.items():
                if name in shapes:
                    assert shapes[name] == tuple(blob.data.shape), (deploy, name)
            # the weights' shapes predict checks before Caffe reads the net
            assert learnable_shapes(read_prototxt(deploy), deploy) == net_learnable_shapes(net), deploy


def test_progress_prints_plain_lines_without_a_terminal(capsys, monkeypatch):
    from core.progress import progress
    monkeypatch.setenv("GWD_PROGRESS_SECONDS", "0")
    for _ in progress(range(3), desc="work", unit="img"):
        pass
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("work: 3/3 img (100 %)"), lines
    assert "\r" not in "".join(lines)


def test_worker_count_follows_the_affinity_mask():
    from core.workers import available_cpus, worker_count
    if hasattr(os, "sched_getaffinity"):
        assert available_cpus() == len(os.sched_getaffinity(0))
    assert worker_count(3) == 3 and worker_count(None, tasks=1) == 1 and worker_count(0) == available_cpus()


# ---------------------------------------------------------------- second pass: odd but valid inputs
def test_cshs_and_the_e_measure_take_a_one_pixel_image():
    import numpy as np
    from baselines.cshs import cshs_maps
    from eval.metrics import emeasure_curve
    rng = np.random.RandomState(0)
    maps = cshs_maps([rng.randint(0, 255, (1, 1, 3), np.uint8), rng.randint(0, 255, (30, 40, 3), np.uint8)])
    assert [m.shape for m in maps] == [(1, 1), (30, 40)]     # higra crashed the process on 1 x 1
    e = emeasure_curve(np.ones(256), np.zeros(256), 1, 1)
    assert np.all(e <= 1.0)                                   # not n / (n - 1 + eps) = 4.5e15


@pytest.mark.slow
@pytest.mark.parametrize("module", ["baselines.cbcs", "baselines.cshs"])
def test_a_group_named_twice_is_run_once(data, tmp_path, module):
    r = run(module, "--dataset", "icoseg", "--root", data["root"], "--out", tmp_path / "maps", "--workers", 1,
            "--group", "g 1", "--group", "g 1")
    assert r.returncode == 0, r.stderr
    assert ": 5 maps written" in r.stderr.strip().splitlines()[-1], r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("command", ["cbcs", "train-groups", "predict"])
def test_names_that_are_not_utf8_are_skipped_and_counted(data, tmp_path, command):
    root = copy_dataset(data, tmp_path)
    name = os.fsdecode(b"caf\xe9")
    shutil.copy(root / "img" / "g 0" / "0.jpg", root / "img" / "g 0" / f"{name}.jpg")
    shutil.copy(root / "gt" / "g 0" / "0.png", root / "gt" / "g 0" / f"{name}.png")
    r = run(*commands(dict(data, root=root), tmp_path / "out")[command])
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert "names not UTF-8 skipped: 2" in r.stdout + r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("command", ["train-groups", "descriptors", "cbcs", "eval"])
def test_a_dataset_under_a_folder_whose_name_is_not_utf8(data, tmp_path, command):
    """A dataset unpacked under a Latin-1 folder name: the descriptor cache's keys (absolute
    paths, HDF5 strings) and eval's results.json and tables (which name the folder) were a
    UnicodeEncodeError traceback, the latter once all the work was done."""
    root = tmp_path / os.fsdecode(b"caf\xe9") / "toy"
    shutil.copytree(data["root"], root)
    argv = commands(dict(data, root=root), tmp_path / "out").get(command) or \
        ["data_prep", "descriptors", "--dataset", "icoseg", "--root", root, "--out", tmp_path / "d.h5", "--workers", 1]
    r = subprocess.run([sys.executable, "-m", *map(str, argv)], capture_output=True, encoding="utf-8",
                       errors="backslashreplace", cwd=ROOT, env=ENV, timeout=300)   # the path, as it is
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr


def test_a_worker_that_dies_is_one_error_line(tmp_path, monkeypatch):
    import importlib
    import types
    from baselines.runner import run_groups
    (tmp_path / "dying_worker.py").write_text("import os\n\ndef process(task):\n    os._exit(1)\n")
    monkeypatch.syspath_prepend(str(tmp_path))      # the spawned workers get this sys.path too
    process = importlib.import_module("dying_worker").process
    item = types.SimpleNamespace(name="a", image="a.jpg")
    dataset = types.SimpleNamespace(name="toy", root=tmp_path, groups={"g1": [item], "g2": [item]})
    with pytest.raises(UserError, match="worker process died.*--resume"):
        run_groups(dataset, tmp_path / "out", process, workers=2, progress=False)


ASCII_OUTPUT = {"PYTHONIOENCODING=ascii": {"PYTHONIOENCODING": "ascii"},
                # stdout ascii with errors=surrogateescape, not strict: it failed on the table's dash
                "LC_ALL=C PYTHONUTF8=0": {"LC_ALL": "C", "PYTHONUTF8": "0"}}


@pytest.mark.slow
@pytest.mark.parametrize("locale", sorted(ASCII_OUTPUT))
def test_eval_prints_its_table_on_an_ascii_only_stdout(data, tmp_path, locale):
    env = dict(ENV, **ASCII_OUTPUT[locale])
    r = subprocess.run([sys.executable, "-m", *map(str, eval_args(data["root"], data["maps"], tmp_path / "é"))],
                       capture_output=True, errors="replace", cwd=ROOT, env=env, timeout=300)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    r = subprocess.run([sys.executable, "-m", "eval", "table", "--results", tmp_path / "é" / "results.json",
                        "--out", tmp_path / "table"], capture_output=True, errors="replace", cwd=ROOT, env=env,
                       timeout=300)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr


@pytest.mark.slow
def test_a_utf8_path_in_a_locale_that_is_not_is_blamed_on_the_locale(data, tmp_path):
    """With LC_ALL=C and PYTHONUTF8=0 Python cannot decode a UTF-8 name: renaming a file whose
    name is fine is not the advice."""
    folder = tmp_path / "wéights"
    folder.mkdir()
    argv = with_option(commands(data, tmp_path / "out")["predict"], "--weights",
                       shutil.copy(data["weights"]["single"], folder))
    r = subprocess.run([sys.executable, "-m", *map(str, argv)], capture_output=True, errors="replace", cwd=ROOT,
                       env=dict(ENV, LC_ALL="C", PYTHONUTF8="0"), timeout=300)
    assert_fails_cleanly(r, "PYTHONUTF8=1", "UTF-8 locale")
    assert "rename" not in r.stderr


def _children(pid):
    """The pids whose parent is `pid` (from /proc)."""
    kids = []
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _group_alive(pgid):
    try:
        os.killpg(pgid, 0)
        return True
    except ProcessLookupError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, "twice"], ids=["Ctrl-C", "SIGTERM", "Ctrl-C twice"])
def test_ctrl_c_reaches_the_pipeline_step_once_and_leaves_no_process(icoseg_dev, tmp_path, sig):
    """Ctrl-C to the pipeline while a baseline runs with its worker processes: the step (in a
    process group of its own) gets it once and ends its own way, the pipeline ends with one line
    and 130, and nothing of the step's process group survives; a rerun finishes the maps.
    SIGTERM (kill, timeout) does the same: the step once left running without its parent. So
    does a second Ctrl-C while the step stops: the pipeline printed a second line and left."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "iCoseg").symlink_to(icoseg_dev)
    argv = ["apps.pipeline", "baselines", "--dataset", "icoseg", "--data-root", tmp_path / "data",
            "--runs", tmp_path / "runs"]
    p = subprocess.Popen([sys.executable, "-m", *map(str, argv)], cwd=ROOT, env=ENV, text=True,
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = []
    for line in p.stderr:                # wait for the first step to start
        err.append(line)
        if line.startswith("$ python -m baselines"):
            break
    deadline = time.time() + 30
    steps = []
    while not steps and time.time() < deadline:
        steps = _children(p.pid)
        time.sleep(0.05)
    assert steps, "".join(err)
    time.sleep(1.0)                      # its workers are busy by now
    step_workers = _children(steps[0])
    p.send_signal(signal.SIGINT if sig == "twice" else sig)     # the pipeline alone, not its group
    if sig == "twice":
        time.sleep(0.3)
        p.send_signal(signal.SIGINT)
    err.append(p.stderr.read())
    p.wait(timeout=120)
    err = "".join(err)
    assert "Traceback" not in err and "Check failed" not in err, err
    assert p.returncode == 130, (p.returncode, err)
    assert err.strip().splitlines()[-1] == "interrupted", err
    assert err.count("interrupted") == 1, err
    deadline = time.time() + 15         # the workers end with their parent, not at once
    while _group_alive(steps[0]) and time.time() < deadline:
        time.sleep(0.1)
    left = [(w, pathlib.Path(f"/proc/{w}/cmdline").read_bytes().replace(b"\0", b" ")[:120])
            for w in step_workers if pathlib.Path(f"/proc/{w}").exists()]
    assert not _group_alive(steps[0]), f"step {steps[0]}: still running after 15 s: {left}"
    r = run(*argv)                       # resumes: the interrupted baseline continues
    assert r.returncode == 0, r.stderr[-2000:]
    assert "CSHS on icoseg" in r.stderr


@pytest.mark.slow
@pytest.mark.parametrize("command", ["cbcs", "cshs", "synthetic"])
def test_a_second_ctrl_c_while_the_workers_finish_is_not_a_hang(request, tmp_path, command):
    """Ctrl-C, and Ctrl-C again while the worker processes finish their groups (a user who finds
    the first slow): the second cut the pool's shutdown short and the command hung at exit for
    ever, its workers waiting for tasks; now it ends with the one line and 130."""
    if command == "synthetic":
        argv = ["data_prep", "synthetic", "--train-groups", 400, "--test-groups", 1]
    else:
        argv = [f"baselines.{command}", "--dataset", "icoseg", "--root", request.getfixturevalue("icoseg_dev")]
    p = subprocess.Popen([sys.executable, "-m", *map(str, argv), "--out", str(tmp_path / "out"), "--workers", "2"],
                         cwd=ROOT, env=ENV, text=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                         start_new_session=True)
    try:
        deadline = time.time() + 60
        while len(_children(p.pid)) < 3 and time.time() < deadline:    # two workers (and a helper)
            time.sleep(0.1)
        time.sleep(1.0)                      # busy with their first groups
        p.send_signal(signal.SIGINT)
        time.sleep(0.3)
        p.send_signal(signal.SIGINT)
        err = p.communicate(timeout=120)[1]
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait()
    assert "Traceback" not in err, err
    assert (p.returncode, err.strip().splitlines()[-1]) == (130, "interrupted"), err


@pytest.mark.slow
def test_workers_end_with_a_killed_parent(icoseg_dev, tmp_path):
    """A baseline killed outright (SIGKILL, the OOM killer) takes its worker processes with it:
    none keeps running or writing maps."""
    out = tmp_path / "cbcs"
    p = subprocess.Popen([sys.executable, "-m", "baselines.cbcs", "--dataset", "icoseg", "--root",
                          str(icoseg_dev), "--out", str(out), "--workers", "2"],
                         cwd=ROOT, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    workers = []
    while len(workers) < 2 and time.time() < deadline:
        workers = _children(p.pid)
        time.sleep(0.1)
    assert workers, "no worker processes started"
    time.sleep(1.0)
    p.kill()
    p.wait()
    deadline = time.time() + 15
    while any(pathlib.Path(f"/proc/{w}").exists() for w in workers) and time.time() < deadline:
        time.sleep(0.1)
    alive = [w for w in workers if pathlib.Path(f"/proc/{w}").exists()
             and pathlib.Path(f"/proc/{w}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"]
    assert not alive, f"workers {alive} outlived their parent"
    maps = sorted(out.rglob("*.png"))
    time.sleep(2.0)
    assert sorted(out.rglob("*.png")) == maps, "maps still being written after the parent died"


# ---------------------------------------------------------------- third pass
def _limited_memory():
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))   # a regression fails, not the machine


@pytest.mark.slow
@pytest.mark.parametrize("command,option,valid", [("groups", "--group-size", "[1, 1000]"),
                                                  ("train-groups", "--neighbours", "[1, 999]")])
def test_a_group_size_that_would_fill_the_memory_is_refused(data, tmp_path, command, option, valid):
    argv = [sys.executable, "-m", "data_prep", command, "--dataset", "icoseg", "--root", str(data["root"]),
            "--out", str(tmp_path / "g.jsonl"), option, "1000000000"]
    if command == "train-groups":
        argv += ["--workers", "1"]
    r = subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=300,
                       preexec_fn=_limited_memory)
    assert_fails_cleanly(r, option, valid)
    assert not (tmp_path / "g.jsonl").exists()


@pytest.mark.slow
def test_make_takes_paths_with_spaces_and_quotes(tmp_path):
    runs = tmp_path / "it's a runs folder"
    (runs / "eval" / "icoseg").mkdir(parents=True)
    (runs / "eval" / "icoseg" / "results.json").write_text(json.dumps(results_file()))
    r = subprocess.run(["make", "--no-print-directory", "table", f"RUNS={runs}"], capture_output=True, text=True,
                       cwd=ROOT, env=ENV, timeout=300)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert (runs / "table" / "table.md").is_file()


@pytest.mark.parametrize("target,variable,word", [("gpu-check", "GPU", "{}"), ("gpu-bundle", "BUNDLE_DIR", "{}"),
                                                   ("gpu-bundle", "ICOSEG_DEV", "DATA={}")])
def test_make_gpu_targets_pass_a_variable_as_one_word(target, variable, word):
    """GPU, BUNDLE_DIR and ICOSEG_DEV went into the command unquoted (or in double quotes): a
    space split them, DATA=x y ran `y`, a '"' added options."""
    value = "it's a \"spaced\" dir"
    r = subprocess.run(["make", "-n", "--no-print-directory", target, f"{variable}={value}"], capture_output=True,
                       text=True, cwd=ROOT, env=ENV, timeout=60)
    assert r.returncode == 0, r.stderr
    import shlex
    assert word.format(value) in shlex.split(r.stdout.strip().splitlines()[-1]), r.stdout


@pytest.mark.slow
def test_training_warns_of_a_mask_of_another_size_in_one_line(data, tmp_path):
    import cv2
    root = copy_dataset(data, tmp_path)
    mask = root / "gt" / "g 0" / "1.png"
    cv2.imwrite(str(mask), cv2.resize(cv2.imread(str(mask), 0), (11, 5)))
    r = run("apps.train", *train_args(data["groups"], root, tmp_path / "run"), "--iters", 2)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    warnings = [x for x in r.stderr.splitlines() if "11x5" in x]
    assert warnings == [f"warning: {mask}: mask is 11x5, image 80x60; resizing both to 128x64"], r.stderr


COCO_SEGMENTATIONS = {   # id: (an annotation's segmentation in an 80 x 60 image, words of the message)
    "a string": ("bad", ["annotation 1", "neither polygons nor an RLE"]),
    "a polygon of 3 numbers": ([[0, 0, 1]], ["annotation 1", "x, y coordinates"]),
    "no polygons": ([], ["annotation 1", "x, y coordinates"]),
    "an RLE of another size": ({"counts": "zz", "size": [5, 5]}, ["annotation 1", "[5, 5]"]),
    "RLE counts past the image": ({"counts": [99999, 5], "size": [60, 80]}, ["annotation 1", "60 x 80 pixels"]),
}


@pytest.mark.slow
@pytest.mark.parametrize("damage", sorted(COCO_SEGMENTATIONS))
def test_coco9213_with_a_damaged_segmentation(tmp_path, damage):
    import cv2
    import numpy as np
    segmentation, words = COCO_SEGMENTATIONS[damage]
    (tmp_path / "coco").mkdir()
    cv2.imwrite(str(tmp_path / "coco" / "x.jpg"), np.zeros((60, 80, 3), np.uint8))
    ann = tmp_path / "ann.json"
    ann.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "x.jpg", "width": 80, "height": 60}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "segmentation": segmentation, "area": 3000,
                         "bbox": [0, 0, 60, 50], "iscrowd": 0}],
        "categories": [{"id": 1, "name": "a"}]}))
    r = run("data_prep", "coco9213", "--coco-root", tmp_path / "coco", "--annotations", ann, "--out",
            tmp_path / "out", "--groups", 1, "--images", 1)
    assert_fails_cleanly(r, ann, *words)


@pytest.mark.slow
def test_a_descriptor_cache_with_damaged_values_is_recomputed(data, tmp_path):
    import h5py
    import numpy as np
    out = tmp_path / "g.jsonl"
    argv = ["data_prep", "train-groups", "--dataset", "icoseg", "--root", data["root"], "--workers", 1,
            "--out", out]
    assert run(*argv).returncode == 0
    whole = out.read_bytes()
    with h5py.File(tmp_path / "g.descriptors.h5", "r+") as f:
        f["descriptor"][0] = np.nan
    out.unlink()
    r = run(*argv)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    assert out.read_bytes() == whole


@pytest.mark.slow
def test_sigterm_while_training_starts_is_one_line_and_leaves_no_scratch(data, tmp_path):
    """SIGTERM (kill, timeout) while the solver is being built: one line, 128 + 15, and no
    scratch folder left in the run folder (the default action killed the process silently), nor
    the new run folder itself."""
    out = tmp_path / "run"
    code = ("import os, signal, sys\n"
            "import apps.train as t\n"
            "build = t.build_solver\n"
            "def slow_start(*a):\n"
            "    os.kill(os.getpid(), signal.SIGTERM)\n"
            "    return build(*a)\n"
            "t.build_solver = slow_start\n"
            "t.main(sys.argv[1:])\n")
    r = subprocess.run([sys.executable, "-c", code, *map(str, train_args(data["groups"], data["root"], out)),
                        "--iters", "5"], capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=300)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 128 + signal.SIGTERM, (r.returncode, r.stderr)
    assert r.stderr.strip().splitlines()[-1] == "terminated", r.stderr
    assert not out.exists()     # the run folder as before: it was not there


@pytest.mark.parametrize("case", ["data not found", "data without images", "out under a file", "out read-only"])
def test_gpu_check_refuses_its_data_and_out_before_the_work(tmp_path, case):
    """--data given is used or refused, never replaced by toy groups; --out is checked before
    the check's minutes of work, not after."""
    (tmp_path / "file").write_text("x")
    (tmp_path / "empty").mkdir()
    argv, fault, names = {
        "data not found": (["--write-bundle", tmp_path / "b", "--data", tmp_path / "nothere"], None,
                           ["nothere", "not found"]),
        "data without images": (["--write-bundle", tmp_path / "b", "--data", tmp_path / "empty"], None,
                                ["empty", "no image folder"]),
        "out under a file": (["--cpu", "--out", tmp_path / "file" / "o"], None, ["file", "is a file"]),
        "out read-only": (["--cpu", "--out", tmp_path / "o"], ("erofs", tmp_path), ["o", "cannot write"]),
    }[case]
    r = run("apps.gpu_check", *argv, fault=fault, timeout=60)
    assert_fails_cleanly(r, *names)
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("argv", [["apps.pipeline", "table", "--runs", ""], ["apps.pipeline", "table", "--runs", "."],
                                  ["apps.pipeline", "baselines", "--dataset", "icoseg", "--runs", " "],
                                  ["apps.ablation", "--runs", ""]], ids=["empty", "project", "blank", "ablation"])
def test_a_runs_folder_that_is_empty_or_the_project_is_refused(argv):
    """make table RUNS= would read and write eval/ and maps/ among the project's own folders."""
    before = sorted(os.listdir(ROOT))
    r = run(*argv, timeout=60)
    assert_fails_cleanly(r, "--runs")
    assert sorted(os.listdir(ROOT)) == before


# Every option that takes a path, per command: an empty value meant the current folder (maps,
# a run folder, a dataset written into it) or failed after the work naming no file.
EMPTY_PATH_OPTIONS = {
    "apps.predict": ["--out", "--weights", "--images", "--root", "--prototxt"],
    "apps.train": ["--out", "--train-list", "--data-root", "--solver", "--init", "--vgg16", "--from-single",
                   "--val-list", "--val-root"],
    "eval": ["--out", "--root", "--method"], "eval table": ["--results", "--out"],
    "baselines.cbcs": ["--out", "--root"], "baselines.cshs": ["--out", "--root"],
    "data_prep synthetic": ["--out"], "data_prep coco9213": ["--out", "--annotations", "--coco-root"],
    "data_prep groups": ["--out", "--root"], "data_prep train-groups": ["--out", "--cache", "--root"],
    "data_prep descriptors": ["--out"], "data_prep summary": ["--root"], "data_prep msrc-convert": ["--root", "--out"],
    "apps.gpu_check": ["--data", "--out", "--write-bundle"], "apps.ablation": ["--runs"],
    "apps.pipeline train": ["--runs", "--data-root", "--vgg16"], "apps.pipeline eval": ["--root", "--group-weights"],
}
EMPTY_PATH_CASES = [(c, o) for c, options in EMPTY_PATH_OPTIONS.items() for o in options]


@pytest.mark.parametrize("command,option", EMPTY_PATH_CASES, ids=[f"{c} {o}" for c, o in EMPTY_PATH_CASES])
def test_an_empty_path_is_refused_naming_the_option(tmp_path, command, option):
    r = subprocess.run([sys.executable, "-m", *command.split(), option, ""], capture_output=True, text=True,
                       cwd=tmp_path, env=ENV, timeout=120)
    assert_fails_cleanly(r, f"argument {option}", "must not be empty")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("what", ["folder", "file"])
def test_the_output_checks_refuse_an_empty_path(what):
    from core.outputs import prepare_out_dir, prepare_out_file
    with pytest.raises(UserError, match="an empty path"):
        (prepare_out_dir if what == "folder" else prepare_out_file)("")


def test_ablation_runs_a_seed_or_placement_named_twice_once(monkeypatch, tmp_path):
    import apps.ablation as A
    done = []
    monkeypatch.setattr(A, "benchmark", lambda d, placement, cfg: ({"test": None}, {}))
    monkeypatch.setattr(A, "train_seed", lambda steps, roots, lists, n, seed: done.append((steps.runs.parent.name, seed)))
    monkeypatch.setattr(A, "evaluate_seed", lambda *a: {})
    monkeypatch.setattr(A, "summarise", lambda per_seed: ({}, {}))
    monkeypatch.setattr(A, "plot_pr", lambda curves: b"")
    A.run_ablation(A.parse_args(["--runs", str(tmp_path), "--seeds", "0", "0", "--placements", "free", "free"]))
    assert done == [("free", 0)]


def test_ctrl_c_inside_a_weakref_callback_is_not_lost(tmp_path):
    """Ctrl-C that lands where Python ignores exceptions (a weakref callback, as h5py's object
    registry runs during gpu_check --write-bundle) is one line and 130, not an 'Exception
    ignored' traceback and a command that goes on to exit 0."""
    script = tmp_path / "weakref_ctrl_c.py"
    script.write_text(
        "import os, signal, time, weakref\n"
        "from core.errors import cli\n"
        "class Blob: pass\n"
        "def callback(_):\n"
        "    os.kill(os.getpid(), signal.SIGINT)\n"
        "    for _ in range(100000): pass\n"
        "@cli\n"
        "def main():\n"
        "    blob = Blob()\n"
        "    ref = weakref.ref(blob, callback)\n"
        "    del blob\n"
        "    time.sleep(3)\n"
        "    print('finished')\n"
        "main()\n")
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, cwd=ROOT, env=ENV, timeout=60)
    assert (r.returncode, r.stderr.strip(), r.stdout) == (130, "interrupted", ""), r.stderr


@pytest.mark.slow
def test_a_run_that_failed_before_its_first_snapshot_can_be_started_again(data, tmp_path):
    """A training that stops on a data error before any snapshot leaves its own files (the
    prototxts, loss.csv, ratios.csv): a rerun of the same command starts it anew, no --force."""
    out = tmp_path / "run"
    (out / "snapshots").mkdir(parents=True)
    for name in ("train.prototxt", "solver.prototxt", "loss.csv", "ratios.csv", "ratios.png"):
        (out / name).write_text("x")
    r = run("apps.train", *train_args(data["groups"], data["root"], out), "--iters", 1)
    assert r.returncode == 0, r.stderr
    assert (out / "latest.json").is_file()
