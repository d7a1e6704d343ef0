"""Turning images and masks into net input, one implementation for training and prediction."""
import cv2
import numpy as np

# The VGG16 ImageNet mean, BGR order (the weights the semantic block starts from expect it).
VGG_MEAN_BGR = (104.00699, 116.66877, 122.67892)


def image_to_blob(img, height, width, mean=VGG_MEAN_BGR):
    """uint8 BGR (h, w, 3) -> float32 (3, height, width): resized bilinearly, mean subtracted."""
    if img.shape[:2] != (height, width):
        img = cv2.resize(img, (width, height), interpolation=cv2.INTER_LINEAR)
    x = img.astype(np.float32)
    x -= np.asarray(mean, dtype=np.float32)
    return x.transpose(2, 0, 1)


def mask_to_blob(mask, height, width):
    """float mask (h, w) in [0, 1] -> float32 (1, height, width), resized bilinearly."""
    if mask.shape[:2] != (height, width):
        mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(mask.astype(np.float32, copy=False), 0.0, 1.0)[None]
