"""`python -m qdev.host.cli` == `qdev`."""

import sys

from qdev.host.cli import main

sys.exit(main())
