"""`python -m host.cli` == `qdev`."""

import sys

from host.cli import main

sys.exit(main())
