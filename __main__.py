"""`python -m mdpiano ...` is the `mdpiano` command."""

import sys

from .cli import main

sys.exit(main())
