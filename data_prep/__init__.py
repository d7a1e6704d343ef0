"""Data preparation: dataset readers, training groups (GIST + Lab), test groups, synthetic data."""

import core.errors  # noqa: F401,E402  first: a Ctrl-C during the imports that follow is one line
