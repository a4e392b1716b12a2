"""HTML reports of instruments and recordings, and a read-only loopback server to browse them.

- :func:`instrument_report`: a ``.calyx`` instrument as a clickable grid of decoded notes (beside
  the originals when the source library is given), spectrograms, the learned factors, size and
  quality figures, and sliders that play notes between the grid points;
- :func:`events_report`: a recording and its ``.cxe`` events: players, the event map (click a
  point to hear the event), the pursuit's residuals step by step, the event vectors and three
  edits made in codec space;
- :func:`serve` / :func:`make_server`: a GET/HEAD-only HTTP server for a folder of reports.

Each report is a self-contained folder (``index.html`` beside its PNG and WAV files) that works
opened from disk. matplotlib (and scikit-learn for the event map's t-SNE) are needed only here:
``pip install 'calyx[report]'``.
"""

from __future__ import annotations

from calyx.report._events import events_report
from calyx.report._instrument import instrument_report
from calyx.report._server import DEFAULT_HOST, DEFAULT_PORT, ReportServer, make_server, serve

__all__ = [
    "DEFAULT_HOST",
    "DEFAULT_PORT",
    "ReportServer",
    "events_report",
    "instrument_report",
    "make_server",
    "serve",
]
