"""The applications: training, prediction and the pipeline behind every make target. They may
import anything of the project; nothing imports them."""
