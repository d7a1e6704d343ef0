"""The numbers the paper reports (Table 1 and section 3.4; design.md section 5), and how our
dataset and method names map onto its rows and columns."""

METHODS = ("Ours", "Ours-S", "CBCS", "CBCS-S", "CSHS")
DATASETS = ("iCoseg", "MSRC", "Cosal2015")

# Table 1: dataset -> metric -> values in the order of METHODS.
_TABLE1 = {
    "iCoseg": {"mF": (0.6983, 0.6935, 0.6885, 0.6443, 0.5288),
               "AUC": (0.9497, 0.9256, 0.9294, 0.9106, 0.9530),
               "MAE": (0.1018, 0.1343, 0.1922, 0.1517, 0.1102)},
    "MSRC": {"mF": (0.5952, 0.5671, 0.5206, 0.5057, 0.4612),
             "AUC": (0.6997, 0.6799, 0.7030, 0.6981, 0.6813),
             "MAE": (0.2238, 0.2534, 0.3677, 0.2912, 0.2587)},
    "Cosal2015": {"mF": (0.6084, 0.5512, 0.5130, 0.4942, 0.4898),
                  "AUC": (0.8954, 0.8744, 0.8261, 0.8251, 0.8521),
                  "MAE": (0.1434, 0.1611, 0.2268, 0.1980, 0.1883)},
}
TABLE1 = {(d, m): {k: v[i] for k, v in metrics.items()}
          for d, metrics in _TABLE1.items() for i, m in enumerate(METHODS)}

# Section 3.4: averages over the three datasets, as stated. (The group model's AUC average of
# Table 1's values is 0.8483, not the stated 0.8477; the other five agree to 4 digits.)
AVERAGES = {"Ours": {"mF": 0.6340, "AUC": 0.8477, "MAE": 0.1563},
            "Ours-S": {"mF": 0.6039, "AUC": 0.8266, "MAE": 0.1829}}

# Which of our metrics stands beside each Table 1 metric, and in which convention (the evidence
# for each choice: README, "Evaluation protocol"). The other AUC convention, the mean of the
# images' own ROC areas (AUC_img), is in every results file and in the "All metrics" table.
TABLE1_CONVENTION = {
    "mF": ("mF", "adaptive threshold, mean over images"),
    "AUC": ("AUC", "area under the image-averaged ROC"),
    "MAE": ("MAE", "mean over images"),
}

# The group model as later papers (GCoNet+, MCCL) list it on CoSal2015, with modern metrics.
LATER = {("Cosal2015", "Ours"): {"maxE": 0.802, "S": 0.744, "maxF": 0.706, "MAE": 0.148}}
LATER_SOURCE = "as listed by GCoNet+ / MCCL"

# Where our protocol differs from the one behind the paper's row, said next to the numbers.
PROTOCOL_NOTES = {
    "icoseg": "all images of every group; the paper evaluated 5-image subsets per group "
              "(dataset icoseg5 is the project's fixed subset)",
    "msrc": "the whole converted MSRC-v2 release, as the paper describes it (591 images in "
            "23 classes); most co-saliency papers evaluate the 7-class subset (dataset msrc7)",
    "msrc7": "the 7-class MSRC subset of the co-saliency literature (233 images there); the "
             "paper describes the whole MSRC-v2 (dataset msrc); the class list is not verified "
             "against a published list (README, Evaluation protocol)",
}

_DATASET_ALIASES = {"icoseg": "iCoseg", "icoseg5": "iCoseg", "msrc": "MSRC", "msrc7": "MSRC",
                    "cosal2015": "Cosal2015"}


def paper_dataset(name):
    """Table 1's name for one of our dataset names (icoseg, icoseg5, msrc, msrc7, cosal2015), or
    None."""
    return _DATASET_ALIASES.get(str(name).lower())


def has_variants(paper_name):
    """Whether more than one of our datasets stands for this Table 1 dataset (MSRC: msrc and
    msrc7), so that a row must say which one it used."""
    return sum(1 for v in _DATASET_ALIASES.values() if v == paper_name) > 1


def paper_method(name):
    """Table 1's name for a method name matched case-insensitively (ours-s -> Ours-S), or None."""
    key = str(name).strip().lower()
    for m in METHODS:
        if m.lower() == key:
            return m
    return None


def reported(dataset, method):
    """Table 1's mF/AUC/MAE for our dataset and method names, or None when not in the table."""
    return TABLE1.get((paper_dataset(dataset), paper_method(method)))


def reported_later(dataset, method):
    """The modern metrics later papers report for this method and dataset, or None."""
    return LATER.get((paper_dataset(dataset), paper_method(method)))
