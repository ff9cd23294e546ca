"""`python -m bordermon_devstack up|down|status`: `bordermon stack`, without `bordermon`."""

import sys

from bordermon_devstack.cli import main

sys.exit(main())
