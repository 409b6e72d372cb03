"""Imports every module that owns a params.yaml section, so the registry is complete.

One section per stage/paper; the slug is the section name, the DVC stage, the notebook and the
method module alike.
"""

from prunerep.config import register_section
from prunerep.data.config import DataConfig
from prunerep.methods import dsa as _dsa  # noqa: F401
from prunerep.methods import gdp as _gdp  # noqa: F401
from prunerep.methods import greg as _greg  # noqa: F401
from prunerep.stages import baseline as _baseline  # noqa: F401  (registers "baseline")
from prunerep.stages import pretrain as _pretrain  # noqa: F401  (registers "pretrain")

register_section("data")(DataConfig)
