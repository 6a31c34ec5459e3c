"""A worker process of `netspec tune --workers N` (started by the tune command, not by hand).

    python -m netspec.tools.tune.worker '{"spec": ..., "folder": ..., "trials": ..., ...}'
"""

from __future__ import annotations

import json
import os
import sys


def main() -> None:
    from netspec.tools.tune.command import worker_main

    code = worker_main(json.loads(sys.argv[1]))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)  # no interpreter teardown: torch's threads can abort it after an interrupt


if __name__ == "__main__":
    main()
