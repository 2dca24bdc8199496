"""What MARN learns to minimise (`marn_task.py`): the click loss and the discriminators' terms, apart from the
networks that produce their inputs and the model that runs the step (tensorflow/recommenders' `tasks`)."""
