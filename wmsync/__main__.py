"""``python -m wmsync``: the same as the ``wmsync`` command."""

import sys

from .cli import main

sys.exit(main())
