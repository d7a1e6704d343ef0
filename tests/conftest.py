import signal

import pytest

from core.toydata import icoseg_dev_root

ICOSEG_DEV = icoseg_dev_root()

# The interrupt tests send SIGINT to the commands they start, as Ctrl-C reaches a terminal's
# foreground job. A suite started in the background by a non-interactive shell (`make test &`,
# a CI script's `cmd &`) inherits SIGINT ignored, and so would every command it starts (POSIX):
# give them the disposition of a foreground job.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture
def icoseg_dev():
    """The real iCoseg development subset; tests that need it skip when it is absent."""
    if not (ICOSEG_DEV / "images").is_dir():
        pytest.skip(f"iCoseg dev subset not found at {ICOSEG_DEV}")
    return ICOSEG_DEV
