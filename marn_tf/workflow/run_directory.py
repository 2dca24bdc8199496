"""The layout of a `marn run` directory: the names the run writes directly under it, in one place.

    <run>/resolved_config.yaml        the config the run used (defaults and overrides applied)
    <run>/preprocessed/               `marn preprocess`: TFRecords, vocabularies, item table, schema, report
    <run>/model/                      `marn train`: the main model (the config's model: and train: sections)
    <run>/ladder/<variant>-seed<N>/   the ablation ladder (run.ladder x run.seeds, run.ladder_overrides)
    <run>/evaluations/<name>/         `marn evaluate` of each model on run.evaluation_split
    <run>/export/marn/1/              `marn export` of the main model, checked by `marn check-export`
    <run>/export_check.json           what `marn check-export` found
    <run>/report.html, report/*.png   the results report (`marn_tf/workflow/results_report.py`)
    <run>/summary.json                what the summary table prints
    <run>/stages/<stage>.json         what each stage consumed and produced (`marn_tf/workflow/stages.py`)
"""
RESOLVED_CONFIG = "resolved_config.yaml"
PREPROCESSED = "preprocessed"
MODEL = "model"
LADDER = "ladder"
EVALUATIONS = "evaluations"
EXPORT_DIR = "export"  # the model base directory (models.config + marn/<version>)
EXPORT_MODEL = "marn"  # <run>/export/marn/1: the one version a run exports
EXPORT_CHECK = "export_check.json"
REPORT_PAGE = "report.html"
REPORT_DIR = "report"
SUMMARY = "summary.json"
STAGES_DIR = "stages"
# Everything the run writes directly under its directory: what it may delete or overwrite there.
ENTRIES = (PREPROCESSED, MODEL, LADDER, EVALUATIONS, EXPORT_DIR, EXPORT_CHECK, REPORT_PAGE, REPORT_DIR, SUMMARY,
           RESOLVED_CONFIG, STAGES_DIR)
