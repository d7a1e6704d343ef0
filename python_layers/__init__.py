"""Caffe Python layers of the project (named in prototxts as python_layers.<module>)."""
