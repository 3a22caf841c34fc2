"""Layers built on the fast-weight ops, and the baselines beside them; each takes and returns its
state so sequences can be continued."""
from metafwp.nn.baseline_layers import CausalAttentionLayer, LSTMLayer, SlidingWindowAttentionLayer
from metafwp.nn.blocks import FeedForward, MixerBlock
from metafwp.nn.dct_layers import DCTLSTM, DCTLinear, DCTWeight, FastDCTRNN
from metafwp.nn.elstm_layer import ELSTMLayer, ELSTMRTRL
from metafwp.nn.fast_weight_layer import BETA_ACTIVATIONS, FEATURE_MAPS, LAYER_RULES, FastWeightLayer
from metafwp.nn.hybrid_layer import DELAYED_RATES, HQLT_MIXINGS, HQLT_VARIANTS, HybridQLTLayer, HybridState
from metafwp.nn.mixers import MIXERS, Mixer, build_mixer, register_mixer
from metafwp.nn.recurrent_fwp_layer import RecurrentFWPLayer
from metafwp.nn.short_conv import ShortConvolution
from metafwp.nn.srwm_layer import SRWMLayer

__all__ = ["BETA_ACTIVATIONS", "DELAYED_RATES", "FEATURE_MAPS", "HQLT_MIXINGS", "HQLT_VARIANTS", "LAYER_RULES",
           "MIXERS", "CausalAttentionLayer", "DCTLSTM", "DCTLinear", "DCTWeight", "FastDCTRNN",
           "ELSTMLayer", "ELSTMRTRL", "FastWeightLayer", "FeedForward",
           "HybridQLTLayer", "HybridState", "LSTMLayer", "Mixer", "MixerBlock", "RecurrentFWPLayer", "SRWMLayer",
           "ShortConvolution", "SlidingWindowAttentionLayer", "build_mixer", "register_mixer"]
