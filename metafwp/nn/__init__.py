"""Layers built on the fast-weight ops; each takes and returns its state so sequences can be continued."""
from metafwp.nn.fast_weight_layer import BETA_ACTIVATIONS, FEATURE_MAPS, FastWeightLayer
from metafwp.nn.srwm_layer import SRWMLayer

__all__ = ["BETA_ACTIVATIONS", "FEATURE_MAPS", "FastWeightLayer", "SRWMLayer"]
