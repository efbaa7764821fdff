"""``python -m datanas ...`` is the ``datanas`` console script."""

from datanas.cli import main

raise SystemExit(main())
