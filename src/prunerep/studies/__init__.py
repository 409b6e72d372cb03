"""Studies: which runs test a paper's claims, and the paper's tables and figures.

One module per paper (the slug): its params section (a registered config dataclass), a
``plan(cfg, ctx) -> list[RunSpec]`` and the functions its notebook calls to turn run records
into tables, figures and claim evidence. The algorithms live in :mod:`prunerep.methods`; the
runs are executed by :mod:`prunerep.runner`. Sections are discovered by
:func:`prunerep.config.registered_sections`, which imports every module of this package.
"""
