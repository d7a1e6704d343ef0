"""Test-time groups of K images (design.md section 3), written as a JSON Lines group list.

For every dataset group, its images are drawn K at a time at random from those not yet covered;
the last draw, when fewer than K remain, is filled up with images already covered, so every image
is predicted at least once and every group has exactly K images. A dataset group with fewer than
K images repeats its images (each as evenly as possible) to fill one group.

Each written group keeps its dataset group's name ("group": "<dataset group>") and there may be
several lines with the same name: prediction stores a map per image at <out>/<group>/<name>.png
and averages the maps of an image that is predicted more than once.

Randomness: the draw of each dataset group is seeded by the first 8 bytes of
SHA-256("<seed>\\0<group name>") (not Python's salted hash()), so it depends only on the seed and
the group, not on the other groups or the order they are read in. Only random.Random(seed).random()
is used, whose sequence Python guarantees across versions.
"""
import hashlib
import random


def group_seed(seed, group):
    """The seed of one dataset group's draw: seed (int) and group (str) -> int."""
    return int.from_bytes(hashlib.sha256(f"{seed}\0{group}".encode("utf-8")).digest()[:8], "big")


def _shuffled(rng, xs):
    keys = [rng.random() for _ in xs]
    return [xs[i] for i in sorted(range(len(xs)), key=lambda i: (keys[i], i))]


def sample_subgroups(names, k=5, seed=0, group=""):
    """Cover `names` with groups of exactly k.

    names: the images of one dataset group (any hashable labels, at least one); k: group size;
    seed, group: select the draw (see group_seed). Returns a list of ceil(len(names) / k) lists
    of k labels, in drawn order; labels repeat within a list only when len(names) < k."""
    names = list(names)
    if k < 1:
        raise ValueError(f"group size must be at least 1, got {k}")
    if not names:
        raise ValueError("a dataset group without images cannot be sampled")
    rng = random.Random(group_seed(seed, group))
    order = _shuffled(rng, names)   # the order in which images get covered: k at a time
    subgroups = []
    for start in range(0, len(order), k):
        take = order[start:start + k]
        need = k - len(take)
        if need:
            covered = order[:start]
            if covered:     # fill with distinct, already covered images
                take += _shuffled(rng, covered)[:need]
            else:           # the whole dataset group is smaller than k: repeat its images
                fill = []
                while len(fill) < need:
                    fill += _shuffled(rng, names)
                take += fill[:need]
        subgroups.append(take)
    return subgroups


def make_test_groups(dataset, k=5, seed=0):
    """The test group list of a data_prep.datasets.Dataset.

    dataset: the Dataset; k: images per group; seed: the draw's seed. Returns a list of dicts
    {"group", "images", "masks"} (paths relative to dataset.root) for
    core.grouplist.write_group_list; "masks" is None (omitted from the file) when no image of the
    dataset has a mask, otherwise it has one entry per image, null where that image has none."""
    with_masks = any(it.mask is not None for it in dataset.items())
    out = []
    for g, items in dataset.groups.items():
        for sub in sample_subgroups(items, k, seed, g):
            out.append({"group": g, "images": [it.image for it in sub],
                        "masks": [it.mask for it in sub] if with_masks else None})
    return out


# ---------------------------------------------------------------- command line
def register(subparsers):
    """Add the `groups` command to the data_prep command line."""
    from .datasets import dataset_names
    p = subparsers.add_parser("groups", help="write the test groups of a dataset (JSON Lines)",
                              description="Cover every image of a dataset with groups of K "
                              "images drawn at random within each dataset group (paths in the "
                              "file are relative to --root).")
    p.add_argument("--dataset", required=True, help="dataset name: " + ", ".join(dataset_names()))
    p.add_argument("--root", required=True, help="the dataset's folder")
    p.add_argument("--out", required=True, help="the group list to write (.jsonl)")
    p.add_argument("--group-size", type=int, default=5, help="images per group (default 5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the draw (default 0)")
    p.add_argument("--verify", action="store_true",
                   help="decode every file completely first and leave out what does not decode")
    p.set_defaults(func=_cmd_groups)


def _cmd_groups(args):
    from core.errors import UserError
    from core.grouplist import MAX_GROUP_SIZE, write_group_list
    from core.outputs import prepare_out_file
    from .datasets import load_for_cli

    if not 1 <= args.group_size <= MAX_GROUP_SIZE:
        raise UserError(f"--group-size must be in [1, {MAX_GROUP_SIZE}], got {args.group_size}")
    prepare_out_file(args.out)      # before the dataset is read
    ds = load_for_cli(args)
    groups = make_test_groups(ds, args.group_size, args.seed)
    try:
        write_group_list(args.out, groups)
    except OSError as e:
        raise UserError(f"{args.out}: cannot write the group list ({e.strerror or e})") from None
    print(f"{args.out}: {len(groups)} groups of {args.group_size} covering {len(ds)} images "
          f"(paths relative to {ds.root})")
