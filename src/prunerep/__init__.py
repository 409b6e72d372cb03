"""prunerep: a reproducible replication of six channel-pruning papers on one shared engine."""

from prunerep.api import prune as prune

__version__ = "0.1.0"
