"""Training groups: each training image with its nearest neighbours (paper 3.1, design.md 2).

For every image with a mask, the group is the image itself followed by its `k` (default 4)
nearest neighbours by Euclidean distance of the GIST + Lab descriptor (data_prep.descriptors),
nearest first; with `same_class` the neighbours come only from the image's own dataset group.

Neighbour search is exact and deterministic:
    - squared distances |a|^2 + |b|^2 - 2 a.b are computed in float32 by chunks of query rows
      (one matrix product per chunk), so memory stays at chunk x N floats (<= 256 MB by default)
      whatever N is;
    - the k + 8 best candidates of each row are re-ranked with exact float64 distances, ties
      broken by index, so the result does not depend on BLAS rounding or thread count.
9213 descriptors of 1024 numbers: 1.7e11 flops, about 1-2 s on 2 cores.

Plan for 100k images and beyond: the chunked search above already keeps memory bounded
(chunk rows shrink as N grows); time grows as N^2 (about 2e13 flops, a few minutes on 2 cores
for 100k). To cut it, project the descriptors on their first 128 principal components (the
usual GIST retrieval practice; 8x fewer flops, then re-rank the candidates with the full
descriptor as done here), or use faiss (IndexFlatL2 for exact search with its faster kernels,
IndexIVFFlat for approximate search at millions of images). Neither is needed at COCO9213 size.
"""
import collections
import os
import pathlib
import sys

import numpy as np

from core.errors import UserError
from core.grouplist import MAX_GROUP_SIZE, write_group_list
from core.args import number_in, positive_int
from core.outputs import prepare_out_file
from core.workers import available_cpus

RERANK_EXTRA = 8           # extra float32 candidates re-ranked exactly
CHUNK_BYTES = 256 << 20    # memory for one chunk of float32 distances
RERANK_ROWS = 256          # rows re-ranked at once (256 x 12 x D float64 = 25 MB at D = 1024)


def nearest_neighbours(desc, k=4, chunk_rows=None, rows=None):
    """Indices (N, min(k, N - 1)) of the k nearest other rows of `desc`, nearest first.

    Parameters
        desc: (N, D) array of descriptors.
        k: number of neighbours per row.
        chunk_rows: query rows per matrix product; default: as many as fit in CHUNK_BYTES.
        rows: optional (start, stop): answer only these query rows (searching all N), e.g.
            to share a very large search between processes; the result then has stop - start rows.
    Exact Euclidean distance; ties are broken by the smaller index.
    """
    x = np.ascontiguousarray(desc, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError("descriptors must be a 2-D array")
    if not np.all(np.isfinite(x)):
        raise ValueError("descriptors contain NaN or infinity")
    n = len(x)
    kk = min(int(k), n - 1)
    if kk <= 0:
        return np.zeros((n, 0), np.int64)
    n_cand = min(n - 1, kk + RERANK_EXTRA)
    if chunk_rows is None:
        chunk_rows = int(max(16, min(4096, CHUNK_BYTES // (4 * n))))
    first, last = (0, n) if rows is None else (max(0, rows[0]), min(n, rows[1]))
    sq = np.einsum("ij,ij->i", x, x)
    out = np.empty((max(0, last - first), kk), np.int64)
    for start in range(first, last, chunk_rows):
        stop = min(last, start + chunk_rows)
        rows = np.arange(start, stop)
        d2 = x[start:stop] @ x.T
        d2 *= -2.0
        d2 += sq[start:stop, None]
        d2 += sq[None, :]
        d2[rows - start, rows] = np.inf           # never one's own neighbour
        if n_cand < n - 1:
            cand = np.argpartition(d2, n_cand - 1, axis=1)[:, :n_cand]
        else:
            cand = np.argsort(d2, axis=1, kind="stable")[:, :n_cand]
        del d2
        for s in range(0, stop - start, RERANK_ROWS):
            c = cand[s:s + RERANK_ROWS]
            q = rows[s:s + RERANK_ROWS]
            # exact distances of the candidates; order by (distance, index)
            diff = x[c].astype(np.float64) - x[q, None, :].astype(np.float64)
            exact = np.einsum("ijk,ijk->ij", diff, diff)
            exact[c == q[:, None]] = np.inf
            order = np.lexsort((c, exact), axis=1)
            out[q - first] = np.take_along_axis(c, order, axis=1)[:, :kk]
    return out


def neighbour_lists(desc, k=4, classes=None, chunk_rows=None):
    """For each row, the list of its neighbours (indices into desc), always of length k.

    Parameters
        desc: (N, D) descriptors.
        k: neighbours per image.
        classes: optional sequence of N labels; neighbours are then taken within the same label.
        chunk_rows: see nearest_neighbours.
    A row whose pool has fewer than k other members repeats the ones it has (nearest first),
    or itself when it is alone, as the test-time grouping does for small groups.
    Returns (list of lists, number of rows that had to repeat).
    """
    n = len(desc)
    if classes is None:
        pools = [np.arange(n)]
    else:
        if len(classes) != n:
            raise ValueError("classes must have one label per descriptor")
        by = collections.defaultdict(list)
        for i, c in enumerate(classes):
            by[c].append(i)
        pools = [np.asarray(v) for _, v in sorted(by.items(), key=lambda kv: kv[1][0])]
    result = [None] * n
    short = 0
    for pool in pools:
        nn = nearest_neighbours(np.asarray(desc)[pool], k, chunk_rows)
        for local, i in enumerate(pool):
            nb = [int(pool[j]) for j in nn[local]]
            if len(nb) < k:
                short += 1
                base = nb or [int(i)]
                nb = [base[j % len(base)] for j in range(k)]
            result[i] = nb
    return result, short


def build_train_groups(items, desc, k=4, same_class=False, chunk_rows=None):
    """Group-list entries (dicts group/images/masks) for training.

    Parameters
        items: data_prep.datasets.Item list (all with masks), same order as desc.
        desc: (N, D) descriptors of the items' images.
        k: neighbours per group (group size k + 1).
        same_class: restrict neighbours to the item's own dataset group.
    Group names are "<dataset group>/<image name>" of the query image, which comes first.
    """
    classes = [it.group for it in items] if same_class else None
    nbrs, short = neighbour_lists(desc, k, classes, chunk_rows)
    groups = []
    for it, nb in zip(items, nbrs):
        members = [it] + [items[j] for j in nb]
        groups.append({"group": f"{it.group}/{it.name}",
                       "images": [m.image for m in members],
                       "masks": [m.mask for m in members]})
    return groups, short


def default_cache_path(out):
    """The descriptor cache that goes with a group list: FILE.jsonl -> FILE.descriptors.h5."""
    out = pathlib.Path(out)
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    return out.with_name(stem + ".descriptors.h5")


# ---------------------------------------------------------------- command line
def register(subparsers):
    """Add `python -m data_prep train-groups`."""
    p = subparsers.add_parser(
        "train-groups", help="training groups: each image with its nearest neighbours (GIST+Lab)",
        description="Write a JSON Lines group list in which every training image with a mask "
                    "forms a group with its nearest neighbours by GIST + Lab descriptor "
                    "(paper 3.1). Descriptors are cached next to the output.")
    p.add_argument("--dataset", required=True, help="dataset name (see data_prep.datasets)")
    p.add_argument("--root", required=True, help="dataset folder; group-list paths are relative to it")
    p.add_argument("--out", required=True, help="group list to write (.jsonl)")
    p.add_argument("--neighbours", type=number_in(1, MAX_GROUP_SIZE - 1), default=4,
                   help="neighbours per image (default 4: groups of 5)")
    p.add_argument("--same-class", action="store_true",
                   help="take neighbours only from the image's own dataset group")
    p.add_argument("--workers", type=positive_int, default=available_cpus(),
                   help="threads computing descriptors (default: all cores)")
    p.add_argument("--cache", default=None,
                   help="descriptor cache (HDF5; default: OUT with .descriptors.h5)")
    p.set_defaults(func=_cmd)
    return p


def _cmd(args):
    from data_prep.datasets import load_dataset
    from data_prep.descriptors import check_cache_path, describe_files
    out = prepare_out_file(args.out)      # a file name, before a cache name is made from it
    cache = args.cache or default_cache_path(out)
    if os.path.abspath(cache) == os.path.abspath(out):
        raise UserError(f"{cache}: --cache and --out are the same file; give the cache another name")
    check_cache_path(cache)
    ds = load_dataset(args.dataset, args.root)
    items = [it for it in ds.items() if it.mask is not None]
    skipped = len(ds) - len(items)
    if len(items) < 2:
        raise UserError(f"{ds.root}: need at least 2 images with masks to form training groups "
                        f"({ds.summary()})")
    desc = describe_files([pathlib.Path(ds.root) / it.image for it in items],
                          workers=args.workers, cache_path=cache)
    groups, short = build_train_groups(items, desc, args.neighbours, args.same_class)
    write_group_list(out, groups)
    msg = f"{ds.summary()}; {len(groups)} training groups of {args.neighbours + 1} in {args.out}"
    if skipped:
        msg += f"; {skipped} images without mask left out"
    if short:
        msg += (f"; {short} groups repeat images (fewer than {args.neighbours} neighbours "
                f"{'in their class' if args.same_class else 'available'})")
    print(msg, file=sys.stderr)
    return 0
