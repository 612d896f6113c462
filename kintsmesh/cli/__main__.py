"""``python -m kintsmesh.cli``: how the stack starts its Python processes."""

import sys

from kintsmesh.cli import main

sys.exit(main())
