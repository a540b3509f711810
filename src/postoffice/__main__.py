"""`python -m postoffice`: the same as the `postoffice` console script."""

from postoffice.cli import main

raise SystemExit(main())
