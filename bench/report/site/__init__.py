"""``copybench publish``: a static leaderboard site (HTML, SVG, CSS, one inline script) built from result files.

The site works from ``file://`` and any static host with no network access at view time. Same inputs, same
bytes: pages, figures and downloads are written in a stable order with no timestamps beyond the results' own.
:func:`copybench.report.site.build.publish` is the entry point; ``cli`` is the thin command over it.
"""
