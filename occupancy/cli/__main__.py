"""`python -m occupancy.cli ...` (as torchrun starts it) is the `occupancy` command."""

import sys

from . import main

sys.exit(main())
