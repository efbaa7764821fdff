"""``datanas``: the console script of the datanas packages (``datanas DOMAIN COMMAND [ARGS...]``).

This package holds only the command dispatcher (:mod:`datanas.cli`) and imports nothing heavy, so
``datanas --help`` is fast; the engine is :mod:`datanas_core`.
"""
