"""prunerep: a reproducible replication of six channel-pruning papers on one shared engine.

``prunerep.prune(...)`` prunes your own network with any of the methods (see `prunerep.api`);
it is imported on first use, so ``import prunerep`` stays light.
"""

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "prune"]


def __getattr__(name: str) -> Any:
    if name == "prune":
        from prunerep.api import prune

        return prune
    raise AttributeError(f"module 'prunerep' has no attribute {name!r}")
