import pytest

from core.toydata import icoseg_dev_root

ICOSEG_DEV = icoseg_dev_root()


@pytest.fixture
def icoseg_dev():
    """The real iCoseg development subset; tests that need it skip when it is absent."""
    if not (ICOSEG_DEV / "images").is_dir():
        pytest.skip(f"iCoseg dev subset not found at {ICOSEG_DEV}")
    return ICOSEG_DEV
