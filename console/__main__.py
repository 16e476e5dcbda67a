"""`python -m console` is the `release-console` command."""

from console.cli import main

raise SystemExit(main())
