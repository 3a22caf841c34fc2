"""Training: config schema, the loop, checkpoints, distributed data parallel; the tasks it trains
on are in ``metafwp.tasks``.

    python -m metafwp.train recipes/glyphs_5way1shot_srwm.yaml train.steps=2000 model.mixer=delta
"""
from metafwp.errors import ConfigError, TrainingDiverged, TrainingInterrupted
from metafwp.tasks import confidence_interval
from metafwp.train.config import RunConfig, load_config
from metafwp.train.loop import train

__all__ = ["ConfigError", "RunConfig", "TrainingDiverged", "TrainingInterrupted", "confidence_interval",
           "load_config", "train"]
