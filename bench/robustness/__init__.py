"""Robustness profiles (``copybench robustness``): where each detector breaks, transform by transform.

Sweep datasets (:mod:`copybench.datasets.sweep`) hold one set of items at K severity levels per axis; a run
scores every level (:mod:`copybench.levels`); :mod:`.profile` turns those numbers into curves, breaking points,
normalised AUCs and a summary score; :mod:`.plots` draws the curves, :mod:`.tables` prints them, :mod:`.gate`
lets ``copybench check`` fail on an AUC drop, :mod:`.html` gives the leaderboard page its section.
"""
