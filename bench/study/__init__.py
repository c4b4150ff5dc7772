"""The study's experiment, replication against training-set size (``copybench study``).

:mod:`.subsets` draws the nested training subsets and their pixels; :mod:`.train` trains and samples the small
DDPMs; :mod:`.experiment` runs :func:`data_size_study`; :mod:`.report` writes its figures and page;
:mod:`.demo` the CPU-sized demo; :mod:`.cli` the commands. ``from copybench.study import data_size_study``
keeps working: names load from the submodules on first use.
"""

from __future__ import annotations

from copybench._lazy import submodule_getattr

__getattr__ = submodule_getattr(__name__, ("experiment", "subsets"))
