"""`python -m bordermon.simulate`: the simulator on its own."""

import sys

from bordermon.cli.simulate import main

sys.exit(main())
