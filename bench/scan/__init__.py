"""Replication scan: generated images against a training set (``copybench scan``).

:mod:`.search` holds the exact top-k search, the train-vs-train baseline and the statistics; :mod:`.pipeline`
the scan itself (:func:`scan`); :mod:`.report` its match grids, histograms and HTML report; :mod:`.cli` the
command. ``from copybench.scan import scan`` keeps working: names load from the submodules on first use, so
importing the package stays cheap.
"""

from __future__ import annotations

from copybench._lazy import submodule_getattr

__getattr__ = submodule_getattr(__name__, ("pipeline", "search"))
