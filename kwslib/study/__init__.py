"""The study around the method: notebook glue, replicates and verdicts, reports, benchmarks, reproduction.

- ``experiment``, ``train_cli``, ``tuning``  the notebooks' glue, the training command, the validation-only tuner
- ``replicates``, ``verdicts``, ``rerun``     replicate runs and their records, pooled verdicts with intervals,
                                              recomputing and comparing stored runs
- ``report``, ``verdict_tables``, ``conclusions``, ``tables``, ``plots``  what a run says, in words, tables, figures
- ``bench``, ``bench_network``, ``bench_pipeline``, ``memory``, ``peers``  speed and memory measurements
- ``reproduce``                               ``make reproduce``: every notebook, headless
"""
