"""`marn run` and `marn demo`: the main job (pipeline -> train with the ablation ladder -> evaluate -> export ->
check), stage by stage and resumable, with a summary table and a results report."""
