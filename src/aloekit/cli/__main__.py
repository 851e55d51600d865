"""``python -m aloekit.cli ...``: the same command as ``aloe`` (tests and ``accelerate launch`` run it this way)."""

import sys

from aloekit.cli.main import main

sys.exit(main())
