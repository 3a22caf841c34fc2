"""Multi-task in-context learning on glyphs: sequences of a letter segment then a symbol segment
(new classes, new labels at the switch); SRWM, DeltaNet and LSTM at the same depth (two layers),
each learner's feed-forward size set so that its parameter count is within 10 % of DeltaNet's, the
learning rate chosen per learner on validation (letter and symbol classes held out of training)."""
from metafwp.studies.declaration import ACCURACY, Column, Condition, Study, register_study

LEARNING_RATES = ("optim.lr", (1e-3, 3e-3))
# two layers each; feed-forward width (x d_model = 128) matching DeltaNet's 408,613 parameters:
# SRWM 387,093 (-5.3 %), LSTM 408,597 (-0.004 %); tested in tests/test_studies.py
LEARNERS = {"SRWM": ("glyphs_multitask_srwm", ("model.num_layers=2", "model.ff_multiplier=5")),
            "DeltaNet": ("glyphs_multitask_delta", ("model.num_layers=2", "model.ff_multiplier=4")),
            "LSTM": ("glyphs_multitask_lstm", ("model.num_layers=2", "model.ff_multiplier=2"))}

MULTITASK = register_study(Study(
    name="multitask",
    summary="SRWM, DeltaNet and LSTM of matched size on letter-then-symbol glyph sequences",
    conditions=tuple(Condition(label, recipe, overrides, grid=(LEARNING_RATES,))
                     for label, (recipe, overrides) in LEARNERS.items()),
    columns=(ACCURACY,
             Column("second segment", lambda results, learner: results[learner]["second_segment_accuracy"])),
    validation=("data.train_splits=[train,train]", "data.val_splits=[val,val]", "eval.val_every=125",
                "eval.val_episodes=300"),
    steps=750,
    notes="750 steps, not the recipes' 1000, declared before the runs: 18 runs (3 learners, 2 learning rates, "
          "3 seeds) keep the study within an hour on 2 CPU cores (--jobs 2).",
))
