"""Evaluation: the paper's metrics (PR curve, mF, AUC, MAE, AP) and the modern CoSOD metrics
(S-measure, max/mean E-measure, max F-measure) of saliency maps against ground truth, the
paper's Table 1 side by side with ours, and its figures (PR curves, AP bars, visual grid).

    python -m eval --dataset icoseg --root DIR --method Ours=DIR --out DIR
    python -m eval table --results a.json b.json --out DIR
"""

import core.errors  # noqa: F401,E402  first: a Ctrl-C during the imports that follow is one line
