"""Continual meta-learning (ACL, Irie et al. 2025) on glyph task streams, meta-tested on the
embedded Split-MNIST digits: the SRWM with and without the ACL terms, domain- and
class-incremental, meta-trained on the glyph `train` classes and validated on streams of `val`."""
from metafwp.studies.declaration import Column, Condition, Study, register_study

COLUMNS = (Column("final average", lambda results, learner: results[learner]["final_average"]),
           Column("task 1 after task 1", lambda results, learner: results[learner]["forgetting"]["mean"][0][0]),
           Column("task 1 after task 5", lambda results, learner: results[learner]["forgetting"]["mean"][0][4]))


def continual_study(kind: str, steps: int) -> Study:
    recipe = f"glyphs_continual_{kind}"
    return register_study(Study(
        name=f"continual_{kind}",
        summary=f"SRWM with and without ACL, {kind}-incremental glyph streams, meta-tested on Split-MNIST",
        conditions=(Condition("SRWM with ACL", f"{recipe}_acl"), Condition("SRWM without ACL", f"{recipe}_plain")),
        columns=COLUMNS,
        validation=("data.train_splits=[train]", "data.val_splits=[val]", f"eval.val_every={steps // 8}",
                    "eval.val_episodes=300"),
        steps=steps,
        notes="The step count is declared here, before the runs. Replay-free baselines as quoted by Irie et al. "
              "(2025) from Hsu et al. (2018), full MNIST and conventional training, for scale only.",
    ))


DOMAIN = continual_study("domain", 1600)
CLASS = continual_study("class", 1200)
