"""Reading what the pipeline wrote: the tf.data input and the item feature table."""
