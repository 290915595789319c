"""`trainpipe pipeline`: prepare → train → evaluate → register → promote, each stage cached by a
content hash of its inputs (docs/pipeline.md).

    context.py  the command line → the training config, the pipeline's settings (no torch)
    cache.py    stage keys and the on-disk cache of stage outputs (pure)
    stages.py   what each stage does, and the config its key covers
    runs.py     the parent MLflow run and one nested run per stage (cached ones included)
    runner.py   the stages in order, from the cache when their inputs are unchanged

A stage-level package: it runs `trainpipe train` as a child process and calls the registry
lifecycle (trainpipe.registry); mlflow and torch are imported only when a stage needs them.
"""
