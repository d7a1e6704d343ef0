"""Tables (Markdown, CSV) and figures (PR curves as Figure 5, AP bars as Figure 6, a visual
comparison grid as Figure 4) from evaluation results (eval.results). Every function returns the
file's content (str or PNG bytes); writing is the caller's business (atomic)."""
import csv
import io

import numpy as np

from core.plotting import pyplot

from . import paper
from .metrics import METRICS, PAPER_METRICS
from .results import NORMALIZATIONS

DIGITS = 4
DASH = "–"


def _fmt(v):
    return DASH if v is None else f"{v:.{DIGITS}f}"


def _label(run):
    """Table 1's dataset name, with ours where they differ or where several of ours stand for
    it (iCoseg (icoseg5), MSRC (msrc7), MSRC (msrc))."""
    ref = run.get("paper_dataset")
    if not ref:
        return run["dataset"]
    if ref.lower() == run["dataset"].lower() and not paper.has_variants(ref):
        return ref
    return f"{ref} ({run['dataset']})"


def _method_order(runs):
    """Method names in order of appearance; the same method (names compared case-insensitively)
    once, spelled as first seen."""
    order = {}
    for run in runs:
        for m in run["methods"]:
            order.setdefault(m["name"].lower(), m["name"])
    return list(order.values())


def _by_name(run):
    """The run's methods keyed by lower-case name."""
    return {m["name"].lower(): m for m in run["methods"]}


def _md_table(header, rows):
    lines = ["| " + " | ".join(map(_cell, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(_cell, r)) + " |" for r in rows]
    return "\n".join(lines)


def _cell(text):
    """A Markdown table cell: a '|' in a method's name would start a column, a line break end
    the row."""
    return " ".join(str(text).replace("|", "\\|").splitlines())


def conventions_line():
    """The line above each Table 1 that says in which convention our numbers stand beside the
    paper's (paper.TABLE1_CONVENTION)."""
    parts = [f"{k}: {words}" + (f" (`{key}`)" if key != k else "")
             for k, (key, words) in paper.TABLE1_CONVENTION.items()]
    return ("Our numbers beside the paper's: " + "; ".join(parts) +
            ". The mean of the images' own ROC areas is `AUC_img` under All metrics.")


def _table1(runs):
    """Paper metrics of one convention, the paper's values in their own columns; our number of
    each metric in the convention of paper.TABLE1_CONVENTION (named by `conventions_line`)."""
    names = _method_order(runs)
    in_paper = {n for n in names if paper.paper_method(n) and
                any(paper.reported(r["dataset"], n) for r in runs)}
    header = ["dataset", "metric"]
    for n in names:
        header.append(n)
        if n in in_paper:
            header.append(f"{n} (paper)")
    rows = []
    for run in runs:
        ms = _by_name(run)
        for k in PAPER_METRICS:
            row = [_label(run), k]
            ours = paper.TABLE1_CONVENTION[k][0]
            for n in names:
                m = ms.get(n.lower())
                row.append(_fmt(m["metrics"].get(ours)) if m else DASH)
                if n in in_paper:
                    ref = paper.reported(run["dataset"], n)
                    row.append(_fmt(ref[k]) if ref else DASH)
            rows.append(row)
    # Section 3.4's averages, where this convention covers each Table 1 dataset exactly once.
    covered = [r for r in runs if r.get("paper_dataset") in paper.DATASETS]
    if sorted(r["paper_dataset"] for r in covered) == sorted(paper.DATASETS):
        for k in PAPER_METRICS:
            row = ["average of 3", k]
            ours = paper.TABLE1_CONVENTION[k][0]
            for n in names:
                vals = [_by_name(r)[n.lower()]["metrics"].get(ours) for r in covered
                        if n.lower() in _by_name(r)]
                vals = [v for v in vals if v is not None]       # null: not computed there
                row.append(_fmt(float(np.mean(vals))) if len(vals) == 3 else DASH)
                if n in in_paper:
                    avg = paper.AVERAGES.get(paper.paper_method(n))
                    row.append(_fmt(avg[k]) if avg else DASH)
            rows.append(row)
    return _md_table(header, rows)


def _all_metrics(runs):
    header = ["dataset", "method", "maps", "images"] + list(METRICS)
    rows = []
    for run in runs:
        conv = "min-max" if run["normalization"] == "minmax" else "raw"
        refs = []
        for m in run["methods"]:
            shown = m.get("paper_method") or m["name"]     # an older or hand-made file may lack it
            rows.append([_label(run), m["name"], conv, str(run["images"])] +
                        [_fmt(m["metrics"].get(k)) for k in METRICS])
            if m.get("paper"):
                refs.append([_label(run), f"{shown}: paper, Table 1",
                             DASH, DASH] + [_fmt(m["paper"].get(k)) for k in METRICS])
            if m.get("later"):
                refs.append([_label(run), f"{shown}: {paper.LATER_SOURCE}", DASH, DASH] +
                            [_fmt(m["later"].get(k)) for k in METRICS])
        rows += refs
    return _md_table(header, rows)


def _notes(run):
    s = (f"- {_label(run)} (dataset `{run['dataset']}` at {run.get('root', '?')}): "
         f"{run['images']} images with ground truth evaluated in {run.get('groups', '?')} groups, "
         f"{run.get('skipped_no_gt', 0)} without ground truth skipped; "
         f"{NORMALIZATIONS[run['normalization']]}")
    note = paper.PROTOCOL_NOTES.get(run["dataset"].lower())
    if note:
        s += f"; {note}"
    res = [f"{m['name']} {m['resized']}" for m in run["methods"] if m.get("resized")]
    if res:
        s += "; maps resized to the ground truth (bilinear): " + ", ".join(res)
    return s + "."


def table_markdown(results):
    """table.md: Table 1 (ours beside the paper's) per convention, every metric, definitions."""
    runs = results["runs"]
    parts = []
    for conv, words in NORMALIZATIONS.items():
        sel = [r for r in runs if r["normalization"] == conv]
        if sel:
            parts += [f"## Table 1: the paper's metrics ({words})", "", conventions_line(), "",
                      _table1(sel), ""]
    parts += ["## All metrics", "", _all_metrics(runs), ""]
    parts += [_notes(r) for r in runs] + [""]
    parts += ["## Definitions", ""]
    parts += [f"- {k}: {v}" for k, v in results.get("definitions", {}).items()]
    return "\n".join(parts) + "\n"


CSV_COLUMNS = (["dataset", "paper_dataset", "normalization", "method", "paper_method", "images",
                "skipped_no_gt"] + list(METRICS) + [f"paper_{k}" for k in PAPER_METRICS] +
               [f"later_{k}" for k in ("S", "maxE", "maxF", "MAE")] + ["resized", "pred_dir"])


def table_csv(results):
    """table.csv: one row per dataset, convention and method; paper values in their columns."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for run in results["runs"]:
        for m in run["methods"]:
            ref, later = m.get("paper") or {}, m.get("later") or {}
            row = [run["dataset"], run.get("paper_dataset") or "", run["normalization"],
                   m["name"], m.get("paper_method") or "", run["images"],
                   run.get("skipped_no_gt", 0)]
            row += ["" if m["metrics"].get(k) is None else repr(float(m["metrics"][k]))
                    for k in METRICS]
            row += [ref.get(k, "") for k in PAPER_METRICS]
            row += [later.get(k, "") for k in ("S", "maxE", "maxF", "MAE")]
            row += [m.get("resized", 0), m.get("pred_dir", "")]
            w.writerow(row)
    return buf.getvalue()


# ---------------------------------------------------------------- figures

def _png(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    pyplot().close(fig)
    return buf.getvalue()


def _text(s, n=28):
    s = str(s).replace("$", r"\$")
    return s if len(s) <= n else s[:n - 1] + "…"


def _title(run):
    return _label(run) + ("\nraw maps" if run["normalization"] == "raw" else "")


def plot_pr_curves(results):
    """pr_curves.png: precision against recall per method, one panel per run (Figure 5)."""
    plt = pyplot()
    runs = [r for r in results["runs"] if any("curves" in m for m in r["methods"])]
    n = max(1, len(runs))
    colour = {name.lower(): f"C{i % 10}" for i, name in enumerate(_method_order(runs))}
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n, 4), squeeze=False)
    for ax, run in zip(axes[0], runs):
        for m in run["methods"]:
            c = m.get("curves")
            if c and "recall" in c and "precision" in c:
                ax.plot(c["recall"], c["precision"], lw=1.6, color=colour[m["name"].lower()],
                        label=_text(m["name"]))
        ax.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="Recall", ylabel="Precision",
               title=_text(_title(run), 40))
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left", fontsize=8)
    return _png(fig)


def _ap(method):
    """A method's AP, nan (no bar) where the run lacks the method or predates the metric."""
    ap = method["metrics"].get("AP") if method else None
    return np.nan if ap is None else ap


def plot_ap(results):
    """ap.png: average precision per method, bars grouped by run (Figure 6)."""
    plt = pyplot()
    runs = results["runs"]
    names = _method_order(runs)
    fig, ax = plt.subplots(figsize=(max(4.5, 1.2 + 0.5 * len(names) * len(runs)), 3.8))
    width = 0.8 / max(1, len(names))
    x = np.arange(len(runs))
    for j, name in enumerate(names):
        vals = [_ap(_by_name(r).get(name.lower())) for r in runs]
        bars = ax.bar(x + (j - (len(names) - 1) / 2) * width, vals, width, label=_text(name),
                      color=f"C{j % 10}")
        for b, v in zip(bars, vals):
            if np.isfinite(v):
                ax.text(b.get_x() + b.get_width() / 2, v + 0.01, f"{v:.3f}", ha="center",
                        va="bottom", fontsize=7, rotation=90 if len(names) > 3 else 0)
    ax.set_xticks(x, [_text(_title(r), 40) for r in runs])
    ax.set(ylim=(0, 1.1), ylabel="AP")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1))
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def pick_visual_items(dataset, n_groups=3, per_group=3):
    """A few items with ground truth from groups spread over the dataset, in dataset order."""
    groups = [g for g, items in dataset.groups.items() if any(i.mask for i in items)]
    if not groups:
        return []
    idx = sorted(set(np.linspace(0, len(groups) - 1, min(n_groups, len(groups)))
                     .round().astype(int).tolist()))
    out = []
    for i in idx:
        out += [it for it in dataset.groups[groups[i]] if it.mask][:per_group]
    return out


def plot_visual_grid(dataset, methods, items, height=110):
    """visual.png: image, ground truth and each method's map (rows) for `items` (columns),
    as Figure 4. Parameters: dataset -- data_prep Dataset; methods -- [(name, folder)];
    items -- Items with ground truth; height -- thumbnail height in pixels."""
    import cv2

    from core.layout import prediction_path
    from core.imageio import read_image, read_mask

    from .evaluate import load_prediction, resize_to

    plt = pyplot()

    def thumb(img):
        h, w = img.shape[:2]
        return cv2.resize(img, (max(1, round(w * height / h)), height),
                          interpolation=cv2.INTER_AREA)

    rows = ["image", "ground truth"] + [n for n, _ in methods]
    fig, axes = plt.subplots(len(rows), len(items), squeeze=False,
                             figsize=(1.5 * len(items) + 1, 1.15 * len(rows)))
    for j, it in enumerate(items):
        img = read_image(dataset.root / it.image)
        gt = read_mask(dataset.root / it.mask)
        cells = [cv2.cvtColor(thumb(img), cv2.COLOR_BGR2RGB), thumb(gt)]
        for _, folder in methods:
            m = load_prediction(prediction_path(folder, it))
            if m.shape != gt.shape:   # shown as evaluated: at the ground truth's size
                m = resize_to(m, gt.shape)
            cells.append(thumb(m if m.dtype == np.uint8 else m.astype(np.float32)))
        for i, cell in enumerate(cells):
            ax = axes[i][j]
            if cell.ndim == 2:
                vmax = 255 if cell.dtype == np.uint8 else 1
                ax.imshow(cell, cmap="gray", vmin=0, vmax=vmax)
            else:
                ax.imshow(cell)
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if j == 0:
                ax.set_ylabel(_text(rows[i], 16), rotation=0, ha="right", va="center",
                              fontsize=8)
        if j == 0 or it.group != items[j - 1].group:
            axes[0][j].set_title(_text(it.group, 22), fontsize=7, loc="left")
    fig.subplots_adjust(wspace=0.04, hspace=0.04)
    return _png(fig)
