"""What every pipeline stage shares: logging set-up and one-line user errors."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable

from rvos.errors import RvosError


def run_stage(main: Callable[[], None]) -> None:
    """Run a stage's main; a user error (bad params, data, checkpoint) ends in one line.

    Under torchrun, processes other than rank 0 log warnings and errors only.
    """
    main_process = os.environ.get("RANK", "0") == "0"
    logging.basicConfig(
        level=logging.INFO if main_process else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        main()
    except RvosError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
