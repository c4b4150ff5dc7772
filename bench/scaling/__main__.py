"""``python -m copybench.scaling plan|simulate``: the scaling plan's command line (:func:`.plan.main`)."""

import sys

from copybench.scaling.plan import main

sys.exit(main())
