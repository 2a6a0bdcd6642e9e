"""What every benchmark shares, one job a module:

- ``provenance``: the commit (40 hex digits) and dirty flag, the command line, the machine and
  the load average before and after, which every ``benchmarks/results/*.json`` records;
- ``report``: writing a report's JSON and markdown, markdown tables, progress lines;
- ``timing``: medians of timed calls, and of calls timed in turn round after round; FLOPs;
- ``processes``: running ``tseg`` as a user does (entry point, pinned CPUs, resident memory);
- ``tseg_model``: the benchmarks' inputs (phrases, a decoded image) and a random-weight TSEG;
- ``clipseg``: CLIPSeg at its released architecture, run as documented and "vision once";
- ``train_step``: images/s of ``tseg.train.train_step`` and where a step's time goes.

A script in ``benchmarks/`` puts the repository root on ``sys.path`` (so that
``python benchmarks/x.py`` and ``python -m benchmarks.x`` both work), then imports from here.
"""
