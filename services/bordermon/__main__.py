import sys

from bordermon.cli import main

sys.exit(main())
