"""Data preparation: dataset readers, training groups (GIST + Lab), test groups, synthetic data."""
