"""`python -m bordermon.cli`, as `bordermon`."""

import sys

from bordermon.cli import main

sys.exit(main())
