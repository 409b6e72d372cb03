"""prunerep: a reproducible replication of six channel-pruning papers on one shared engine."""

__version__ = "0.1.0"
