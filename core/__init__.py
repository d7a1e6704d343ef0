"""The core library: errors, image I/O, group lists, preprocessing, safe Caffe loading, weight
surgery, device checks, the project layout and output helpers. It imports nothing else of the
project; the stages (python_layers, data_prep, eval, baselines) and the applications (apps) build
on it."""
