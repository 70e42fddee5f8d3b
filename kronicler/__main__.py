"""``python -m kronicler``: the same as the ``kronicler`` command."""

from __future__ import annotations

from kronicler.cli import main

raise SystemExit(main())
