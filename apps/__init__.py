"""The applications: training, prediction and the pipeline behind every make target. They may
import anything of the project; nothing imports them."""

import core.errors  # noqa: F401,E402  first: a Ctrl-C during the imports that follow is one line
