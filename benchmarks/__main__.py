"""``python -m benchmarks``: see :mod:`benchmarks.run` (and :mod:`benchmarks.stock`)."""

import sys

from .run import main
from .stock import after_others, others_argv

_rest = others_argv(sys.argv[1:])
_status = main(_rest) if _rest is not None else 0
sys.exit(_status or after_others(sys.argv[1:]))
