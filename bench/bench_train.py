"""Training speed on the CPU: solver iterations/s of the tiny and full models (one group each).

    python bench/bench_train.py [--full-iters 3] [--tiny-iters 200]

Data: groups of random images written to a temporary folder at each net's input size (decoding
is not what is measured here; see bench_data_layer.py).
"""
import argparse
import os
import tempfile
import time


from core.netio import caffe
from apps.train import model_files, write_solver, write_train_net
from core.toydata import write_toy_groups


def rate(model, tiny, iters, tmp):
    train_proto, _, solver_proto = model_files(model, tiny)
    h, w = (64, 128) if tiny else (128, 256)
    d = os.path.join(tmp, f"{model}{'-tiny' if tiny else ''}")
    lst = write_toy_groups(d, n_groups=4, size=(h, w))
    net = os.path.join(d, "train.prototxt")
    write_train_net(train_proto, net, {"group_list": lst, "data_root": d})
    write_solver(solver_proto, os.path.join(d, "solver.prototxt"), net, os.path.join(d, "snap"), 10 ** 6, None)
    solver = caffe.get_solver(os.path.join(d, "solver.prototxt"))
    solver.step(2)                                   # warm-up
    t = time.perf_counter()
    solver.step(iters)
    return iters / (time.perf_counter() - t)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--full-iters", type=int, default=3)
    ap.add_argument("--tiny-iters", type=int, default=200)
    args = ap.parse_args()
    caffe.set_mode_cpu()
    tmp = tempfile.mkdtemp()
    print(f"pycaffe CPU training, one group of 5 per iteration, {os.cpu_count()} CPUs\n")
    print("| model | input | iterations/s | s/iteration |\n|---|---|---|---|")
    for tiny, iters in ((True, args.tiny_iters), (False, args.full_iters)):
        for model in ("single", "group"):
            r = rate(model, tiny, iters, tmp)
            size = "64x128" if tiny else "128x256"
            print(f"| {'tiny ' if tiny else ''}{'Ours-S' if model == 'single' else 'Ours'} | {size} | {r:.2f} | {1 / r:.3f} |")


if __name__ == "__main__":
    main()
