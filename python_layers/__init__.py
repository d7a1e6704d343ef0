"""Caffe Python layers of the project (named in prototxts as python_layers.<module>)."""

import core.errors  # noqa: F401,E402  first: a Ctrl-C during the imports that follow is one line
