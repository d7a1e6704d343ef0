"""Figures: matplotlib drawing into files (Agg), whatever the environment says.

matplotlib reads MPLBACKEND when it is first imported and raises ValueError on a name it does
not know (MPLBACKEND=nonsense), after a command has done all its work; a GUI backend would need
a display besides. The project only writes PNG files, so Agg is set before that import."""
import os


def pyplot():
    """matplotlib.pyplot with the Agg backend."""
    os.environ["MPLBACKEND"] = "agg"
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt
