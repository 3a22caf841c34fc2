"""Fast-weight ops: the Table-1 rules, DeltaProduct, the SRWM, the recurrent FWPs and the mesa rule
(layout and semantics: README, "Fast-weight ops"); the e-LSTM and its exact RTRL sensitivities;
sliding-window softmax attention; continuous-time learning rules (ODE vector fields on a spline path);
weights kept as low-frequency DCT coefficients."""
from metafwp.ops.backends import BackendChoice, explain_backend
from metafwp.ops.common import BACKENDS
from metafwp.ops.ct_fwp import (CT_RULES, ODE_SOLVERS, LearningRuleField, NaturalCubicSpline, rule_field, solve_ode,
                                write_term)
from metafwp.ops.dct import coefficients_to_weight, dct_2d, dct_matrix, idct_2d, kept_coefficients
from metafwp.ops.elstm import ELSTMSensitivities, elstm
from metafwp.ops.fast_weight import RULES, delta_product, delta_rule, fast_weight
from metafwp.ops.mesa import mesa
from metafwp.ops.recurrent_fwp import (RECURRENT_FWPS, DeltaDeltaState, DeltaLSTMState, DeltaMLPState, DeltaRNNState,
                                       RecurrentDeltaState, delta_delta, delta_lstm, delta_mlp, delta_rnn,
                                       recurrent_delta)
from metafwp.ops.srwm import srwm, srwm_columns
from metafwp.ops.window_attention import sliding_window_attention

__all__ = ["BACKENDS", "BackendChoice", "CT_RULES", "ODE_SOLVERS", "ELSTMSensitivities", "LearningRuleField",
           "NaturalCubicSpline",
           "coefficients_to_weight", "dct_2d", "dct_matrix", "idct_2d", "kept_coefficients",
           "explain_backend", "RULES", "RECURRENT_FWPS", "rule_field", "solve_ode", "write_term",
           "DeltaDeltaState", "DeltaLSTMState", "DeltaMLPState", "DeltaRNNState", "RecurrentDeltaState", "delta_delta",
           "delta_lstm", "delta_mlp", "delta_product", "delta_rnn", "delta_rule", "elstm", "fast_weight", "mesa",
           "recurrent_delta", "sliding_window_attention", "srwm", "srwm_columns"]
