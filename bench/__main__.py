"""``python -m copybench``: the same command line as the ``copybench`` script."""

import sys

from copybench.cli import main

sys.exit(main())
