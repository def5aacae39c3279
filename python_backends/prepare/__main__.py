"""``python -m python_backends.prepare``: see ``python_backends.prepare.cli``."""

import sys

from python_backends.prepare.cli import main

sys.exit(main())
