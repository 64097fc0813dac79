"""`python -m pipeline.cli`: the `callstream` command without its console script."""

import sys

from pipeline.cli.commands import main

sys.exit(main())
