"""`python -m host` == `qdev`."""

import sys

from host.cli import main

sys.exit(main())
