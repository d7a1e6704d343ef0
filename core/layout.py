"""Where things are: the one home of the project's shared facts.

Model keys and the names the paper gives them, the handwritten prototxts and solvers of each
model, the folder of each benchmark under a data root, and the places inside a runs folder where
the commands put maps, evaluations, tables and trained models. Everything that needs one of these
facts asks here rather than spelling it out."""
import os
import pathlib
from typing import NamedTuple

PROJECT_ROOT = pathlib.Path(__file__).resolve().parent.parent
PROTOTXT_DIR = PROJECT_ROOT / "prototxt"

# ---------------------------------------------------------------- models
# Model key -> the paper's name for it (Table 1's columns). The group model is the paper's net;
# the single model is its ablation without the group block.
MODELS = {"group": "Ours", "single": "Ours-S"}
# The layer whose output is one group's score map before the upsampling (initialised by surgery).
SCORE_LAYER = {"group": "score_co", "single": "score"}


class ModelFiles(NamedTuple):
    train: pathlib.Path
    deploy: pathlib.Path
    solver: pathlib.Path


def model_files(model, tiny=False):
    """The handwritten (train, deploy, solver) prototxts of a model; `tiny`: the narrow CPU variant."""
    if model not in MODELS:
        raise KeyError(f"unknown model {model!r}; one of {', '.join(MODELS)}")
    d = PROTOTXT_DIR / "tiny" if tiny else PROTOTXT_DIR
    return ModelFiles(d / f"{model}_train.prototxt", d / f"{model}_deploy.prototxt",
                      d / f"solver_{model}.prototxt")


def paper_name(model):
    return MODELS[model]


# ---------------------------------------------------------------- datasets
# Dataset name (the reader's) -> its folder under a data root (README "Reproducing Table 1").
DATASET_FOLDERS = {
    "icoseg": "iCoseg",
    "icoseg5": "iCoseg",
    "msrc": "MSRC",
    "msrc7": "MSRC",     # the 7-class subset, read from the same folder
    "cosal2015": "Cosal2015",
    "coco9213": "COCO9213",
    "synthetic": os.path.join("synthetic", "test"),   # python -m data_prep synthetic --out <data-root>/synthetic
}
# The test sets of Table 1, in the order `make reproduce` runs them.
TABLE1_DATASETS = ("icoseg5", "icoseg", "msrc", "cosal2015")
TRAINING_DATASET = "coco9213"


def dataset_root(data_root, dataset):
    """The folder of `dataset` under `data_root`."""
    return pathlib.Path(data_root) / DATASET_FOLDERS[dataset]


# ---------------------------------------------------------------- outputs
def prediction_path(out_dir, item):
    """Where a method's saliency map of a dataset item is stored (8-bit PNG): <out>/<group>/<name>.png."""
    return pathlib.Path(out_dir) / item.group / f"{item.name}.png"


def run_dir(runs, model):
    """The training run folder of a model: <runs>/<model>."""
    return pathlib.Path(runs) / model


def maps_dir(runs, dataset, method):
    """A method's maps of a dataset: <runs>/maps/<dataset>/<method>."""
    return pathlib.Path(runs) / "maps" / dataset / method


def eval_dir(runs, dataset):
    return pathlib.Path(runs) / "eval" / dataset


def table_dir(runs):
    return pathlib.Path(runs) / "table"
