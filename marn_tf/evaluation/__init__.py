"""`marn evaluate`: ranking metrics, modality weights, discriminator accuracies and slices, with a report."""
