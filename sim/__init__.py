"""nbstream simulator: virtual peers, scenarios, metrics, complexity fits, gate, reports and CLI."""

from __future__ import annotations
