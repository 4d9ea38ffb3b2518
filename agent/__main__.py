"""``python -m agent`` is ``shoal``."""

import sys

from .cli import main

sys.exit(main())
