"""GroupDataLayer throughput on real JPEGs (iCoseg dev subset), and the cost of one forward().

    python bench/bench_data_layer.py [--root ../shared/datasets/icoseg-dev] [--groups 300]

Decoding throughput: groups/s the loader's threads deliver when the consumer never waits.
forward(): time of the layer's forward with a full prefetch queue (what the solver pays).
"""
import argparse
import json
import os
import tempfile
import time


from data_prep.datasets import load_dataset
from data_prep.test_groups import make_test_groups
from core.grouplist import write_group_list
from core.netio import caffe
from python_layers.group_data_layer import GroupLoader, parse_params
from core.toydata import icoseg_dev_root


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--root", default=str(icoseg_dev_root()))
    ap.add_argument("--groups", type=int, default=300, help="groups decoded per measurement")
    args = ap.parse_args()
    if not os.path.isdir(args.root):
        print(f"skipped: {args.root} not found")
        return
    ds = load_dataset("icoseg", args.root)
    groups = [g for g in make_test_groups(ds, 5, 0) if g.get("masks") and all(g["masks"])]
    tmp = tempfile.mkdtemp()
    lst = os.path.join(tmp, "groups.jsonl")
    write_group_list(lst, groups)
    rows = []
    for workers in (1, 2):
        for cache in (False, True):
            p = parse_params(json.dumps({"group_list": lst, "data_root": args.root, "workers": workers,
                                         "prefetch": 16, "cache": cache}))
            loader = GroupLoader(p)
            if cache:                          # fill the cache first: measure the steady state
                for _ in range(len(groups)):
                    loader.next()
            t = time.perf_counter()
            for _ in range(args.groups):
                loader.next()
            rate = args.groups / (time.perf_counter() - t)
            loader.close()
            rows.append((f"decode + resize, {workers} thread(s){', cache' if cache else ''}", f"{rate:.0f} groups/s"))
    # forward() of the layer in a net, with the queue full
    proto = os.path.join(tmp, "data.prototxt")
    ps = json.dumps({"group_list": lst, "data_root": args.root, "workers": 2, "prefetch": 8})
    with open(proto, "w") as f:
        f.write('layer { name: "data" type: "Python" top: "data" top: "label" python_param { '
                f'module: "python_layers.group_data_layer" layer: "GroupDataLayer" param_str: {json.dumps(ps)} }} }}')
    net = caffe.Net(proto, caffe.TRAIN)
    times = []
    for _ in range(30):
        time.sleep(0.2)                        # a solver step's worth of time: the queue refills
        t = time.perf_counter()
        net.forward()
        times.append(time.perf_counter() - t)
    times.sort()
    rows.append(("forward() with a full queue, median of 30", f"{1000 * times[len(times) // 2]:.2f} ms"))
    print(f"GroupDataLayer on {len(ds)} iCoseg JPEGs ({len(groups)} groups of 5, 128x256), {os.cpu_count()} CPUs\n")
    print("| measurement | result |\n|---|---|")
    for r in rows:
        print(f"| {r[0]} | {r[1]} |")


if __name__ == "__main__":
    main()
