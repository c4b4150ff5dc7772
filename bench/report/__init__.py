"""Reporting: leaderboard tables (:mod:`.table`), the HTML page (:mod:`.html`), plots (:mod:`.plots`,
:mod:`.speed_plot`), tidy exports (:mod:`.tidy`), published figures (:mod:`.published`) and ISC/HDF5 interop
(:mod:`.interop`). Each reads result files; none runs a model. Commands: ``table``, ``plot``, ``score-h5``,
``export`` (:mod:`.cli`)."""
