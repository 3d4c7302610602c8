"""``python -m xm_integrations`` runs the command line."""

import sys

from xm_integrations.cli import main

sys.exit(main())
