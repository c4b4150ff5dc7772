"""copybench: a benchmark harness for image copy detection and training-data replication scans.

Importing ``copybench`` is cheap: heavy libraries (torch, faiss, kornia, timm) load only when used.
"""

from __future__ import annotations

__version__ = "0.1.0"
