"""Baselines of Table 1 that need no training: CBCS and its single-image version CBCS-S."""

import core.errors  # noqa: F401,E402  first: a Ctrl-C during the imports that follow is one line
