"""Reading trained learners: the dual form of linear layers (what a layer trained by gradient
descent attends to among its training inputs)."""
from metafwp.analysis.dual_form import DualFormRecorder, Spotlight, step_coefficients

__all__ = ["DualFormRecorder", "Spotlight", "step_coefficients"]
