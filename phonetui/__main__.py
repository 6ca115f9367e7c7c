"""`python -m phonetui` is the `phonetui` command."""

import sys

from .cli import main

sys.exit(main())
