"""Fixtures shared by several test files: tiny datasets written to disk."""
import os

import cv2
import numpy as np

from gwd.grouplist import write_group_list


def write_toy_groups(root, n_groups=2, k=5, size=(60, 80), seed=0):
    """Groups of random JPEG images with a bright rectangle and its PNG mask; returns the list path."""
    rng = np.random.RandomState(seed)
    groups = []
    for g in range(n_groups):
        imgs, masks = [], []
        for i in range(k):
            h, w = size
            img = rng.randint(0, 255, (h, w, 3), dtype=np.uint8)
            mask = np.zeros((h, w), np.uint8)
            y, x = rng.randint(0, h // 2), rng.randint(0, w // 2)
            mask[y:y + h // 3, x:x + w // 3] = 255
            img[mask > 0] = (40, 200, 240)
            rel_i, rel_m = f"img/g {g}/{i}.jpg", f"gt/g {g}/{i}.png"
            os.makedirs(os.path.join(root, f"img/g {g}"), exist_ok=True)
            os.makedirs(os.path.join(root, f"gt/g {g}"), exist_ok=True)
            cv2.imwrite(os.path.join(root, rel_i), img)
            cv2.imwrite(os.path.join(root, rel_m), mask)
            imgs.append(rel_i)
            masks.append(rel_m)
        groups.append({"group": f"g {g}", "images": imgs, "masks": masks})
    path = os.path.join(root, "groups.jsonl")
    write_group_list(path, groups)
    return path
