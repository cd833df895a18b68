"""`python -m ragbench`: the same as the `ragbench` command."""
import sys

from .cli import main

sys.exit(main())
