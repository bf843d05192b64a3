"""Budgeted tuning of the task model's configuration from the labels (issue: model tuning).

- ``space``: the hierarchical, define-by-run search space (input, family and its parameters, loss);
- ``folds``: repeated stratified k-fold CV bounded by the class counts;
- ``allocator``: successive halving over the training epochs under a seconds budget (Optuna ask-and-tell);
- ``adoption``: a challenger replaces the incumbent only when better by more than the CV standard error;
- ``tuner``: one tuning on the labeled set, and when a tuning is due.
"""

from autoal_engine.tuning.tuner import TuningOutcome, TuningState, apply_recipe, due, trained_model_config, tune

__all__ = ["TuningOutcome", "TuningState", "apply_recipe", "due", "trained_model_config", "tune"]
