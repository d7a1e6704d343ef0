"""Shared pieces of the group-wise deep co-saliency (GWD) reproduction: errors, image I/O."""
