"""Training: config schema, the loop, checkpoints, evaluation, distributed data parallel.

    python -m metafwp.train recipes/glyphs_5way1shot_srwm.yaml train.steps=2000 model.mixer=delta
"""
from metafwp.train.config import ConfigError, RunConfig, load_config
from metafwp.train.evaluation import confidence_interval, evaluate
from metafwp.train.loop import TrainingDiverged, train

__all__ = ["ConfigError", "RunConfig", "TrainingDiverged", "confidence_interval", "evaluate", "load_config",
           "train"]
