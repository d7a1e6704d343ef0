"""Baselines of Table 1 that need no training: CBCS and its single-image version CBCS-S."""
