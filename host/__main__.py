"""`python -m qdev.host` == `qdev`."""

import sys

from qdev.host.cli import main

sys.exit(main())
