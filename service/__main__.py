"""``python -m service``: the same as the ``bedside`` command."""

from service.cli import main

raise SystemExit(main())
