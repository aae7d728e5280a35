"""``python -m latentcf``: see :mod:`latentcf.cli`."""

import sys

from latentcf.cli import main

sys.exit(main())
