"""The helpers of ``scripts/bench.py`` (issue 9).

``python scripts/bench.py`` imports this package as ``bench``: a folder with ``__init__.py``
wins over the module ``bench.py`` beside it, which runs as ``__main__``.

* :mod:`bench.workloads`: what is trained, as dltrain overrides;
* :mod:`bench.trial`: one timed training in a fresh process, by one approach;
* :mod:`bench.first_step`: the default ``dltrain`` run, stopped in time at its first step;
* :mod:`bench.startup`: whole commands timed, and the peak memory of a process;
* :mod:`bench.report`: medians, ratios, targets, the tables and the JSON;
* :mod:`bench.hotspots`: ``--profile``, where a step's time goes (py-spy);
* :mod:`bench.ddp`: ``--parts ddp``, 1 process x N threads against N processes under torchrun (issue 10).
"""
