"""``python -m phenossl``: the ``phenossl`` command."""

from phenossl.cli import main

raise SystemExit(main())
