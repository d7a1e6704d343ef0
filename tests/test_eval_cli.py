"""python -m eval end to end on a small dataset written in the Cosal2015 layout."""
import csv
import json
import os

import cv2
import numpy as np
import pytest

from core.layout import prediction_path
from data_prep.datasets import load_dataset
from eval import metrics as M
from eval.__main__ import main
from eval.evaluate import evaluate, load_prediction, resize_to
from core.imageio import read_mask

GROUPS = {"g1 cats!": ["a", "b", "c"], "g2, dogs": ["d", "e"]}
NO_GT = ("g2, dogs", "e")      # an image without ground truth
H, W = 36, 48
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def data(tmp_path):
    """Root of a Cosal2015-layout dataset and two methods' map folders (Ours, CBCS-S)."""
    rng = np.random.default_rng(0)
    root = tmp_path / "Cosal2015"
    for g, names in GROUPS.items():
        os.makedirs(root / "Image" / g)
        os.makedirs(root / "GroundTruth" / g)
        for n in names:
            img = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
            gt = np.zeros((H, W), np.uint8)
            y, x = rng.integers(0, H // 2), rng.integers(0, W // 2)
            gt[y:y + H // 3, x:x + W // 3] = 255
            cv2.imwrite(str(root / "Image" / g / f"{n}.jpg"), img)
            if (g, n) != NO_GT:
                cv2.imwrite(str(root / "GroundTruth" / g / f"{n}.png"), gt)
            for method, sigma, noise in (("ours", 2, 20), ("cbcs_s", 5, 60)):
                m = cv2.GaussianBlur(gt.astype(np.float32), (0, 0), sigma) * 0.7 + 40
                m = np.clip(m + rng.normal(0, noise, gt.shape), 0, 255).astype(np.uint8)
                os.makedirs(tmp_path / method / g, exist_ok=True)
                cv2.imwrite(str(tmp_path / method / g / f"{n}.png"), m)
    return tmp_path, root


def run(capsys, *argv):
    """main(argv) in-process: (exit status, stdout, stderr)."""
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def eval_args(tmp, root, out, dataset="cosal2015", *extra):
    return ["--dataset", dataset, "--root", root, "--method", f"Ours={tmp / 'ours'}",
            "--method", f"CBCS-S={tmp / 'cbcs_s'}", "--out", out, "--no-progress", *extra]


def expected(tmp, root, folder):
    """Metrics computed directly from the files, without the CLI."""
    ds = load_dataset("cosal2015", root)
    pairs = []
    for it in ds.items():
        if it.mask:
            gt = read_mask(root / it.mask)
            p = load_prediction(prediction_path(tmp / folder, it))
            pairs.append((p if p.shape == gt.shape else resize_to(p, gt.shape), gt))
    return M.dataset_metrics(pairs)[0]


@pytest.mark.slow
def test_end_to_end_tables_and_figures(data, capsys):
    tmp, root = data
    out = tmp / "out"
    code, stdout, err = run(capsys, *eval_args(tmp, root, out))
    assert code == 0, err
    rows = list(csv.DictReader(open(out / "table.csv")))
    assert [r["method"] for r in rows] == ["Ours", "CBCS-S"]
    for r, folder in zip(rows, ("ours", "cbcs_s")):
        ref = expected(tmp, root, folder)
        for k in M.METRICS:
            assert float(r[k]) == pytest.approx(ref[k], abs=1e-12), (folder, k)
        assert r["images"] == "4" and r["skipped_no_gt"] == "1"
        assert r["normalization"] == "minmax" and r["paper_dataset"] == "Cosal2015"
    # Table 1's Cosal2015 values beside ours (Ours: mF .6084 AUC .8954 MAE .1434; CBCS-S:
    # .4942 .8251 .1980), and the later papers' modern metrics for Ours
    assert (rows[0]["paper_mF"], rows[0]["paper_AUC"], rows[0]["paper_MAE"]) == \
        ("0.6084", "0.8954", "0.1434")
    assert (rows[1]["paper_mF"], rows[1]["paper_MAE"]) == ("0.4942", "0.198")
    assert rows[0]["later_S"] == "0.744" and rows[1]["later_S"] == ""
    md = (out / "table.md").read_text()
    assert "| dataset | metric | Ours | Ours (paper) | CBCS-S | CBCS-S (paper) |" in md
    ours = rows[0]
    assert f"| Cosal2015 | mF | {float(ours['mF']):.4f} | 0.6084 |" in md
    assert "| Cosal2015 | Ours: paper, Table 1 |" in md
    assert "4 images with ground truth evaluated in 2 groups, 1 without ground truth skipped" in md
    assert "Table 1" in stdout
    res = json.loads((out / "results.json").read_text())
    run_ = res["runs"][0]
    assert run_["skipped_no_gt"] == 1 and run_["normalization"] == "minmax"
    assert len(run_["methods"][0]["curves"]["precision"]) == 256
    assert set(res["definitions"]) == set(M.METRICS)
    for name in ("pr_curves.png", "ap.png", "visual.png"):
        data_ = (out / name).read_bytes()
        assert data_[:8] == PNG_MAGIC, name
        img = cv2.imdecode(np.frombuffer(data_, np.uint8), cv2.IMREAD_COLOR)
        assert img is not None and img.shape[0] > 100 and img.shape[1] > 100, name
        assert img.std() > 10, name                   # not a blank canvas
    assert not [p for p in os.listdir(out) if p.startswith(".tmp")]


def test_raw_convention_is_reported(data, capsys):
    tmp, root = data
    code, _, err = run(capsys, *eval_args(tmp, root, tmp / "raw", "cosal2015", "--raw"))
    assert code == 0, err
    rows = list(csv.DictReader(open(tmp / "raw" / "table.csv")))
    assert rows[0]["normalization"] == "raw"
    assert "raw maps, not normalised" in (tmp / "raw" / "table.md").read_text()
    norm = expected(tmp, root, "ours")
    assert float(rows[0]["MAE"]) != pytest.approx(norm["MAE"], abs=1e-4)


def test_missing_predictions_exit_2_with_one_line(data, capsys):
    tmp, root = data
    os.remove(tmp / "ours" / "g1 cats!" / "b.png")
    os.remove(tmp / "cbcs_s" / "g2, dogs" / "d.png")
    os.remove(tmp / "cbcs_s" / "g2, dogs" / "e.png")   # no ground truth: not needed
    code, out, err = run(capsys, *eval_args(tmp, root, tmp / "out"))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("cosal2015:")    # the dataset summary
    assert lines[1].startswith("error: 2 prediction(s) missing for dataset 'cosal2015' "
                               "(Ours: 1, CBCS-S: 1)")
    assert str(tmp / "ours" / "g1 cats!" / "b.png") in lines[1]
    assert not (tmp / "out").exists()


@pytest.mark.slow
def test_size_mismatch_warned_once_and_resized(data, capsys):
    tmp, root = data
    for p in (tmp / "cbcs_s").glob("*/*.png"):
        m = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
        cv2.imwrite(str(p), cv2.resize(m, (W // 2, H // 2), interpolation=cv2.INTER_AREA))
    code, _, err = run(capsys, *eval_args(tmp, root, tmp / "out", "cosal2015", "--workers", "2"))
    assert code == 0, err
    warnings = [ln for ln in err.splitlines() if "warning" in ln.lower()]
    assert len(warnings) == 1
    assert "4 prediction(s) differ in size" in warnings[0] and "CBCS-S: 4" in warnings[0]
    rows = list(csv.DictReader(open(tmp / "out" / "table.csv")))
    assert rows[1]["resized"] == "4" and rows[0]["resized"] == "0"
    ref = expected(tmp, root, "cbcs_s")                # bilinear resize to the mask's size
    assert float(rows[1]["MAE"]) == pytest.approx(ref["MAE"], abs=1e-12)


def test_failed_run_keeps_previous_results(data, capsys):
    tmp, root = data
    out = tmp / "out"
    assert run(capsys, *eval_args(tmp, root, out))[0] == 0
    before = {p: (out / p).read_bytes() for p in os.listdir(out)}
    # a map that cannot be decoded is found only while evaluating, after the start
    (tmp / "cbcs_s" / "g2, dogs" / "d.png").write_text("<html>not a map</html>")
    code, _, err = run(capsys, *eval_args(tmp, root, out, "cosal2015", "--workers", "2"))
    assert code == 2 and "d.png: not a readable image" in err
    assert {p: (out / p).read_bytes() for p in os.listdir(out)} == before


def test_one_and_two_workers_agree_exactly(data):
    tmp, root = data
    ds = load_dataset("cosal2015", root)
    methods = [("Ours", tmp / "ours"), ("CBCS-S", tmp / "cbcs_s")]
    a = evaluate(ds, methods, workers=1, progress=False)
    b = evaluate(ds, methods, workers=2, progress=False)
    assert a == b


@pytest.mark.slow
def test_merge_runs_into_one_table1(data, capsys):
    tmp, root = data
    # The fixture's folders (Image/, GroundTruth/) are also read as iCoseg and MSRC layouts,
    # which gives the three datasets of Table 1.
    for ds in ("icoseg", "msrc", "cosal2015"):
        assert run(capsys, *eval_args(tmp, root, tmp / ds, ds, "--vis-groups", "0"))[0] == 0
        assert not (tmp / ds / "visual.png").exists()
    files = [tmp / ds / "results.json" for ds in ("icoseg", "msrc", "cosal2015")]
    code, _, err = run(capsys, "table", "--results", *files, "--out", tmp / "all")
    assert code == 0, err
    md = (tmp / "all" / "table.md").read_text()
    rows = list(csv.DictReader(open(tmp / "all" / "table.csv")))
    assert [(r["paper_dataset"], r["method"]) for r in rows] == [
        (d, m) for d in ("iCoseg", "MSRC", "Cosal2015") for m in ("Ours", "CBCS-S")]
    assert rows[0]["paper_mF"] == "0.6983" and rows[3]["paper_AUC"] == "0.6981"
    # averages over the three datasets: ours, and section 3.4's stated ones for the group model
    mf = np.mean([float(r["mF"]) for r in rows if r["method"] == "Ours"])
    assert f"| average of 3 | mF | {mf:.4f} | 0.6340 |" in md
    assert (tmp / "all" / "pr_curves.png").read_bytes()[:8] == PNG_MAGIC
    merged = json.loads((tmp / "all" / "results.json").read_text())
    assert [r["dataset"] for r in merged["runs"]] == ["icoseg", "msrc", "cosal2015"]
    # merging is repeatable (a merged file merges like any other) but never double-counts
    code, _, err = run(capsys, "table", "--results", tmp / "all" / "results.json", files[0],
                       "--out", tmp / "again")
    assert code == 2 and "method 'Ours' on dataset 'icoseg' (minmax) is also in" in err


@pytest.mark.parametrize("argv, message", [
    (["--dataset", "cosal2015", "--root", "{root}", "--method", "Ours", "--out", "{tmp}/o"],
     "expected NAME=DIR"),
    (["--dataset", "nope", "--root", "{root}", "--method", "Ours={tmp}/ours", "--out", "{tmp}/o"],
     "unknown dataset 'nope'"),
    (["--dataset", "cosal2015", "--root", "{root}", "--method", "Ours={tmp}/missing",
      "--out", "{tmp}/o"], "prediction folder of method 'Ours' not found"),
    (["--dataset", "cosal2015", "--root", "{root}", "--method", "Ours={tmp}/ours",
      "--method", "ours={tmp}/cbcs_s", "--out", "{tmp}/o"], "must be unique"),
    (["table", "--results", "{tmp}/ours/g1 cats!/a.png", "--out", "{tmp}/o"], "not a results file"),
])
def test_user_errors_exit_2(data, capsys, argv, message):
    tmp, root = data
    code, _, err = run(capsys, *[a.format(tmp=tmp, root=root) for a in argv])
    assert code == 2 and message in err and "Traceback" not in err


def _run(dataset, metrics):
    from eval import paper
    return {"dataset": dataset, "paper_dataset": paper.paper_dataset(dataset), "root": "/data",
            "normalization": "minmax", "groups": 1, "images": 2, "skipped_no_gt": 0,
            "methods": [{"name": "CBCS", "paper_method": "CBCS", "resized": 0,
                         "metrics": dict(metrics), "paper": paper.reported(dataset, "CBCS"),
                         "later": None}]}


def test_table1_says_which_convention_and_which_msrc():
    from eval import report
    from eval.results import make_results
    # the two AUC conventions differ, so the table shows which one stands beside the paper
    metrics = {"mF": 0.5, "AUC": 0.81, "AUC_img": 0.79, "MAE": 0.2}
    md = report.table_markdown(make_results([_run("msrc", metrics), _run("msrc7", metrics),
                                             _run("icoseg5", metrics)]))
    table1 = md.split("## All metrics")[0]
    assert ("Our numbers beside the paper's: mF: adaptive threshold, mean over images; "
            "AUC: area under the image-averaged ROC; MAE: mean over images.") in table1
    # Table 1's AUC row carries AUC (0.81), not AUC_img (0.79), beside the paper's 0.7030
    assert "| MSRC (msrc) | AUC | 0.8100 | 0.7030 |" in table1
    assert "| MSRC (msrc7) | AUC | 0.8100 | 0.7030 |" in table1
    assert "| iCoseg (icoseg5) | MAE | 0.2000 | 0.1922 |" in table1
    assert "0.7900" not in table1
    # every metric, both AUC conventions, in the All metrics table and the notes on each MSRC
    assert "| MSRC (msrc7) | CBCS | min-max | 2 | 0.5000 | 0.8100 | 0.7900 | 0.2000 |" in md
    assert "dataset msrc7" in md.replace("`", "") and "not verified" in md
    assert "591 images in 23 classes" in md
    # a results file written before AUC_img existed still renders (a dash)
    old = {"mF": 0.5, "AUC": 0.81, "MAE": 0.2}
    md = report.table_markdown(make_results([_run("cosal2015", old)]))
    assert "| Cosal2015 | CBCS | min-max | 2 | 0.5000 | 0.8100 | – | 0.2000 |" in md
    assert "| Cosal2015 | AUC | 0.8100 | 0.8261 |" in md
