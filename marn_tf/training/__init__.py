"""`marn train`: distribution strategy, callbacks (checkpoints, NaN guard, GRL ramp) and the training run."""
