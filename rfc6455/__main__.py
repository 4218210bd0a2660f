"""``python -m rfc6455``: see :mod:`rfc6455.cli`."""

from .cli import main

raise SystemExit(main())
