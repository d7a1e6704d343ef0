"""Training diagnostics: how far each learnable layer's weights move in one solver step.

The update-to-weight ratio of a layer is ||dw|| / ||w|| over its weight blob (the bias starts at
zero, so its ratio says nothing early on; the weights hold nearly all of a layer's parameters).
Caffe's SGD solver leaves the update it has just applied in each parameter's `diff` (the diffs are
cleared at the start of the next step, not after the update), so the ratio after `solver.step`
is read without copying any weights.

Why watch it: the paper's base_lr of 1e-10 only works because EuclideanLoss is summed over every
pixel of the group (5 x 128 x 256), which makes the gradients huge. A user whose data, input size
or loss scale differs can train for days with weights that do not move; the loss curve alone
shows that late. RATIO_FLOOR is the per-step ratio below which a layer is stalled: at 1e-7 per
step, even 60000 steps that all pointed the same way would change the weights by at most 0.6%,
which is no training at all. A run warns once when every learnable layer has stayed below the
floor for STALL_ITERS iterations in a row (long enough that SGD momentum, which ramps the
update up over its first 1 / (1 - momentum) = 100 steps at 0.99, has reached full speed).
"""
import csv
import math
import os

import numpy as np

from .outputs import atomic_write_text
from .plotting import pyplot

RATIO_FLOOR = 1e-7
STALL_ITERS = 1000


def learnable_layers(net_param):
    """Names of the layers of a NetParameter that the solver updates: those with parameters at
    least one of which has lr_mult > 0 (an omitted param spec means lr_mult 1)."""
    with_params = {"Convolution", "Deconvolution", "InnerProduct", "Scale", "Bias", "Embed", "PReLU"}
    names = []
    for layer in net_param.layer:
        if layer.type not in with_params:
            continue
        if not layer.param or any(p.lr_mult > 0 for p in layer.param):
            names.append(layer.name)
    return names


def update_ratios(net, layers):
    """{layer: ||dw|| / ||w||} of the step the solver has just taken (read from the diffs; w is
    the weights before the step, data + diff)."""
    out = {}
    for name in layers:
        blob = net.params[name][0]
        w = float(np.linalg.norm(blob.data + blob.diff))     # the weights before the step
        dw = float(np.linalg.norm(blob.diff))
        out[name] = dw / w if w > 0 else math.inf
    return out


class StallWatch:
    """Says once when every layer's ratio has stayed below `floor` for `window` iterations."""

    def __init__(self, floor=RATIO_FLOOR, window=STALL_ITERS):
        self.floor, self.window = floor, window
        self.since = None        # first iteration of the current all-below stretch
        self.warned = False

    def update(self, iteration, ratios):
        """Record the ratios measured at `iteration`; returns the warning (a str) the first time
        the stretch reaches `window` iterations, else None."""
        if not ratios or max(ratios.values()) >= self.floor:
            self.since = None
            return None
        if self.since is None:
            self.since = iteration
        if self.warned or iteration - self.since < self.window:
            return None
        self.warned = True
        top = max(ratios, key=ratios.get)
        return (f"weights are not moving: since iteration {self.since} every layer's update-to-weight "
                f"ratio ||dw||/||w|| is below {self.floor:g} per step (largest now: {top} "
                f"{ratios[top]:.2g}); the learning rate is too small for this loss scale (--base-lr)")


class RatioLog:
    """ratios.csv (iter, loss, one column per layer) and ratios.png in a run folder.

    start: the iteration the run starts or resumes at; rows past it (written after the snapshot
    being resumed from) are dropped so that the file matches the resumed run."""

    def __init__(self, out, layers, start=0, floor=RATIO_FLOOR, window=STALL_ITERS):
        self.csv_path = os.path.join(out, "ratios.csv")
        self.png_path = os.path.join(out, "ratios.png")
        self.layers = list(layers)
        self.watch = StallWatch(floor, window)
        if os.path.exists(self.csv_path):
            rows = read_ratio_csv(self.csv_path)
            if rows and list(rows[0]) != ["iter", "loss"] + self.layers:
                rows = []                      # another model's file: start a new one
            keep = [r for r in rows if int(r["iter"]) <= start]
            self._write_all(keep)

    def _write_all(self, rows):
        head = ["iter", "loss"] + self.layers
        lines = [",".join(head)] + [",".join(str(r[k]) for k in head) for r in rows]
        atomic_write_text(self.csv_path, "\n".join(lines) + "\n")

    def record(self, net, iteration, loss):
        """Measure and append the ratios of the step that ended at `iteration`; returns the
        stall warning when it fires (once), else None."""
        ratios = update_ratios(net, self.layers)
        new = not os.path.exists(self.csv_path)
        with open(self.csv_path, "a") as f:
            if new:
                f.write(",".join(["iter", "loss"] + self.layers) + "\n")
            f.write(",".join([str(iteration), f"{loss:.6g}"] + [f"{ratios[n]:.4g}" for n in self.layers]) + "\n")
        return self.watch.update(iteration, ratios)

    def plot(self):
        rows = read_ratio_csv(self.csv_path) if os.path.exists(self.csv_path) else []
        if not rows:
            return
        plt = pyplot()
        it = [int(r["iter"]) for r in rows]
        fig, ax = plt.subplots(figsize=(8, 5))
        for name in self.layers:
            ax.plot(it, [float(r[name]) for r in rows], lw=1, label=name)
        ax.axhline(self.watch.floor, color="k", ls="--", lw=1, label=f"floor {self.watch.floor:g}")
        ax.set_xlabel("iteration")
        ax.set_ylabel("||dw|| / ||w|| per step")
        ax.set_yscale("log")
        ax.legend(fontsize=6, ncol=2)
        fig.tight_layout()
        tmp = self.png_path + ".tmp.png"
        fig.savefig(tmp, dpi=100)
        plt.close(fig)
        os.replace(tmp, self.png_path)


def read_ratio_csv(path):
    """Rows of a ratios.csv as dicts (values as strings)."""
    with open(path, newline="") as f:
        return list(csv.DictReader(f))
