"""`python -m dashboard.commands ...` is `natslab ...`; the supervisor starts listeners this way."""

import sys

from dashboard.commands.main import main

sys.exit(main())
