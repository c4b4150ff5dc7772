"""Scale-out: the Ray engine (``--engine ray`` for ``run`` and ``scan``) and the scaling plan.

:mod:`.engine` starts or joins a Ray cluster and runs sharded search; :mod:`.extractor` streams images to
detector actors (:mod:`.actor`) and stores their descriptors (:mod:`.store`); :mod:`.plan` models a scan's
time on N devices from measured rates (``python -m copybench.scaling``). ``from copybench.scaling import
plan_scan`` keeps working: names load from the submodules on first use.
"""

from __future__ import annotations

from copybench._lazy import submodule_getattr

__getattr__ = submodule_getattr(__name__, ("plan", "engine", "extractor", "actor", "store", "records"))
