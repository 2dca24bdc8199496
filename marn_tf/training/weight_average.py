"""An exponential moving average of the model's weights (Polyak averaging), for validation and the best checkpoint.

After every training step, for each model variable v with its average a:

    decay_t = decay * (1 - decay^(t-1)) / (1 - decay^t)     t the optimizer's step (1, 2, ...)
    a <- decay_t * a + (1 - decay_t) * v

which makes a the bias-corrected exponential average (Adam's correction): the weights of the last
1 / (1 - decay) steps or so, each step's weight in proportion to decay^age, from the first step on.

Validation, the best checkpoint (and so evaluation and export) see the averages; training goes on from the raw
weights. The averages are saved in every checkpoint, so a resumed run continues them.
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Sequence

import tensorflow as tf


class WeightAverage(tf.Module):
    """Moving averages of `variables`, created in the current distribution strategy's scope.

    Args:
      variables: the variables to average (the model's trainable ones; the discriminators' are not needed).
      decay: 0.98 averages over about the last 50 steps.
    """

    def __init__(self, variables: Sequence[tf.Variable], decay: float):
        super().__init__(name="weight_average")
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = decay
        self._keep_sources(variables)
        # ONLY_FIRST_REPLICA: the weights are the same on every replica after a synchronous step.
        self.averages = [tf.Variable(v.read_value(), trainable=False, name=v.name.split(":")[0].replace("/", "_"),
                                     aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA)
                         for v in self.variables_to_average]

    @tf.__internal__.tracking.no_automatic_dependency_tracking
    def _keep_sources(self, variables: Sequence[tf.Variable]) -> None:
        # Not a checkpoint dependency: the variables are saved where they live, the averages under this module.
        self.variables_to_average = tuple(variables)

    def update(self, step: tf.Tensor) -> None:
        """One averaging step after the optimizer's step number `step` (graph-safe)."""
        step = tf.cast(step, tf.float64)  # 1 - decay^t loses digits in float32 for small t
        decay = self.decay * (1.0 - self.decay ** (step - 1.0)) / (1.0 - self.decay ** step)
        for average, variable in zip(self.averages, self.variables_to_average):
            kept = tf.cast(decay, average.dtype)
            average.assign(kept * average + (1.0 - kept) * tf.cast(variable, average.dtype))

    @contextlib.contextmanager
    def swapped(self) -> Iterator[None]:
        """Within the block the variables hold their averages; afterwards their own values again (eager)."""
        kept = [v.read_value() for v in self.variables_to_average]
        for variable, average in zip(self.variables_to_average, self.averages):
            variable.assign(average)
        try:
            yield
        finally:
            for variable, value in zip(self.variables_to_average, kept):
                variable.assign(value)
