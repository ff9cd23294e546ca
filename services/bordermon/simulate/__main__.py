"""`python -m bordermon.simulate`: the simulator on its own."""

import sys

from bordermon.simulate.cli import main

sys.exit(main())
