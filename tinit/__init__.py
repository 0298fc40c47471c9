"""tinit: a process supervisor for PID 1 of a container."""

from __future__ import annotations

__version__ = "0.1.0"
