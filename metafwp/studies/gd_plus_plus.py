"""GD++ in von Oswald et al.'s setting (ICML 2023, section 4 and Appendix A.10): a weight-tied
two-layer linear self-attention model whose layers read the whole support (``model.causal=false``),
trained on their linear regression tasks (d = 10, one query, w ~ N(0, I), no noise) at N = 10, 25 and
50 support points, for both input ranges of their work (their code's x ~ U(-0.5, 0.5), the text's
U(-1, 1)); gamma read off the trained weights in their form ``x <- (I - gamma X X^T) x`` beside
their 0.179, 0.099, 0.056. Apart, the causal stack (the FWP as it runs) at N = 10."""
from metafwp.studies.declaration import Column, Condition, Study, register_study

PUBLISHED_GAMMA = {10: 0.179, 25: 0.099, 50: 0.056}  # von Oswald et al. 2023, Appendix A.10
INPUT_RANGES = {"U(-0.5, 0.5)": 1.0, "U(-1, 1)": 2.0}  # data.input_range r: x ~ U(-r/2, r/2)


def condition(support: int, inputs: str, causal: bool) -> Condition:
    label = f"{'causal' if causal else 'non-causal'}, N = {support}, x ~ {inputs}"
    return Condition(label, "regression_gd_plus_plus", (f"model.causal={str(causal).lower()}",
                                                        f"data.num_support={support}",
                                                        f"data.input_range={INPUT_RANGES[inputs]}"))


register_study(Study(
    name="gd_plus_plus",
    summary="a weight-tied 2-layer linear self-attention model learns GD++: gamma at N = 10, 25, 50 for both "
            "input ranges, non-causal (their layer) and causal",
    conditions=tuple(condition(support, inputs, False) for inputs in INPUT_RANGES for support in PUBLISHED_GAMMA)
    + tuple(condition(10, inputs, True) for inputs in INPUT_RANGES),
    columns=(Column("gamma", lambda results, learner: results[learner]["gd_plus_plus_gamma"]),
             Column("off-diagonal / diagonal", lambda results, learner: results[learner]["gamma_off_diagonal"]),
             Column("1/2 squared error", lambda results, learner: results[learner]["loss"] / 2),
             Column("one GD step, 1/2 squared error", lambda results, learner: results["gd"]["loss"] / 2)),
    validation=("eval.val_every=500", "eval.val_episodes=2000"),
    steps=3000,
    notes="von Oswald et al. report gamma about 0.179, 0.099 and 0.056 at N = 10, 25 and 50 (Appendix A.10). "
          "3000 steps of 2048 fresh tasks (their batch), Adam lr 1e-3, declared before these runs; an earlier "
          "declaration of 2000 steps of 512 tasks left most runs on the plateaus before GD++ (at the zero "
          "predictor or at one GD step). gamma is read per layer from the mean diagonals of the x-x blocks of "
          "W_o W_v and W_k^T W_q; the off-diagonal column says how far those blocks are from scaled identities.",
))
