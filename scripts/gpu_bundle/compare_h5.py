"""Compare one solver step taken on the CPU and on the GPU by the bundle's `caffe train` runs.

    python3 compare_h5.py CPU_DIR GPU_DIR PARAMS_JSON RTOL

Each folder holds <model>_step_iter_1.caffemodel.h5 (weights after the step) and
.solverstate.h5 (the SGD history, which after one step is the update: base_lr x (gradient +
weight decay x weights)). PARAMS_JSON gives the order of the history's blobs and the layers whose
gradients to report. Prints one line; exit status 0 when every norm-relative error <= RTOL.
Runs on the node's own Python (numpy, h5py); it imports nothing of the project.
"""
import json
import os
import sys

import h5py
import numpy as np


def rel_err(a, b):
    nb = float(np.linalg.norm(b))
    return float(np.linalg.norm(a.astype(np.float64) - b)) / (nb if nb > 0 else 1.0)


def one(folder, model, suffix):
    path = os.path.join(folder, f"{model}_step_iter_1.{suffix}")
    if not os.path.isfile(path):
        sys.exit(f"{path}: not found (the solver step failed; see logs/)")
    return h5py.File(path, "r")


def main():
    cpu_dir, gpu_dir, params, rtol = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    with open(params) as f:
        meta = json.load(f)
    model = os.path.basename(params).split(".")[0]          # nets/<model>.params.json
    wc, wg = one(cpu_dir, model, "caffemodel.h5"), one(gpu_dir, model, "caffemodel.h5")
    weights = max(rel_err(wg["data"][layer][str(i)][...], wc["data"][layer][str(i)][...])
                  for layer in wc["data"] for i in range(len(wc["data"][layer])))
    sc, sg = one(cpu_dir, model, "solverstate.h5"), one(gpu_dir, model, "solverstate.h5")
    grads = {}
    for k, (layer, i) in enumerate(meta["order"]):
        if layer in meta["grad_layers"] and i == 0:
            grads[layer] = rel_err(sg["history"][str(k)][...], sc["history"][str(k)][...])
    worst = max(grads, key=grads.get)
    print(f"weights rel. error {weights:.1e}; updates (gradients) of {', '.join(grads)}: largest rel. error "
          f"{grads[worst]:.1e} ({worst}); tolerance {rtol:g}")
    sys.exit(0 if max(weights, grads[worst]) <= rtol else 1)


if __name__ == "__main__":
    main()
