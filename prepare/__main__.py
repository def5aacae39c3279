"""``python -m prepare``: see ``prepare.cli``."""

import sys

from prepare.cli import main

sys.exit(main())
