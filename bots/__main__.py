"""``python -m bots`` runs the ``relaybot`` command line."""

import sys

from bots.cli import main

sys.exit(main())
