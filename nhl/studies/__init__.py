"""The committed studies and their analysis (docs/method.md §9); the method never imports them.

- :mod:`~nhl.studies.catalogue`: what each study trains (``python -m nhl study NAME``);
- :mod:`~nhl.studies.runner`: training their runs in parallel, writing their tables;
- :mod:`~nhl.studies.tables`: finished runs as a long table (one row per run and length);
- :mod:`~nhl.studies.results`: the committed tables in ``results/`` and where a table comes from;
- :mod:`~nhl.studies.grid`: nested against single-length models (the paper's main table);
- :mod:`~nhl.studies.statistics`: paired differences over seeds, confidence intervals, chance;
- :mod:`~nhl.studies.comparisons`, :mod:`~nhl.studies.weighting_effect`,
  :mod:`~nhl.studies.report`: what the tables say, for the notebooks and README.md;
- :mod:`~nhl.studies.probes`: gradients watched during training on a fixed probe batch;
- :mod:`~nhl.studies.timing`: interleaved timing of training steps, evaluation and search;
- :mod:`~nhl.studies.search`: search with nested codes measured (funnel, length choice).
"""
