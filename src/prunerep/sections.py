"""Imports every module that owns a params.yaml section, so the registry is complete.

One section per stage/paper; the slug is the section name, the DVC stage, the notebook and the
method module alike.
"""

from prunerep.config import register_section
from prunerep.data.config import DataConfig
from prunerep.stages import baseline as _baseline  # noqa: F401  (registers "baseline")
from prunerep.stages import pretrain as _pretrain  # noqa: F401  (registers "pretrain")

register_section("data")(DataConfig)
