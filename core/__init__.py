"""nbstream core: a minimal notebook sync daemon over Automerge with truly progressive loading."""

from __future__ import annotations

__version__ = "0.1.0"
