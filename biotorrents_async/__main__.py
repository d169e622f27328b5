"""``python -m biotorrents_async``: the same as the ``biotorrents`` command."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
