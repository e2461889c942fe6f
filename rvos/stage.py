"""What every pipeline stage shares: logging set-up and one-line user errors."""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from rvos.errors import RvosError


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main; a user error (bad params, data, checkpoint) ends in one line."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        main()
    except RvosError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
