"""HTML reports of stored results: tables, matplotlib SVG plots, one self-contained page.

Reads result files only (``vcoal.results``); never runs a trial. ``render_report(dir, out)``.
"""

from vcoal.report.render import ReportInfo, render_report

__all__ = ["ReportInfo", "render_report"]
