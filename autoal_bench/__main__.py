"""``python -m autoal_bench ...``: the same as ``autoal bench ...``."""

import sys

from autoal_bench.cli import main

sys.exit(main())
