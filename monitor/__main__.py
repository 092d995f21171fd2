"""``python -m monitor`` runs the same CLI as the ``paymon`` script."""

from monitor.cli import main

raise SystemExit(main())
