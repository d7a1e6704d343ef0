import os
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
ICOSEG_DEV = pathlib.Path(os.environ.get("ICOSEG_DEV", ROOT.parent / "shared" / "datasets" / "icoseg-dev"))


@pytest.fixture
def icoseg_dev():
    """The real iCoseg development subset; tests that need it skip when it is absent."""
    if not (ICOSEG_DEV / "images").is_dir():
        pytest.skip(f"iCoseg dev subset not found at {ICOSEG_DEV}")
    return ICOSEG_DEV
