"""``python -m hitsong`` is the ``hitsong`` command."""

from hitsong.cli import main

raise SystemExit(main())
