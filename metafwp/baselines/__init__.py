"""Classic learners to read the in-context learners against: closed-form and iterative regression
(``metafwp.baselines.regression``)."""
