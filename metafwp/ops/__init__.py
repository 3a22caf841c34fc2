"""Fast-weight ops: the Table-1 rules, DeltaProduct and the SRWM (layout and semantics: README, "Fast-weight ops")."""
from metafwp.ops.backends import BackendChoice, explain_backend
from metafwp.ops.common import BACKENDS
from metafwp.ops.fast_weight import RULES, delta_product, delta_rule, fast_weight
from metafwp.ops.srwm import srwm, srwm_columns

__all__ = ["BACKENDS", "BackendChoice", "explain_backend", "RULES", "delta_product", "delta_rule", "fast_weight", "srwm", "srwm_columns"]
