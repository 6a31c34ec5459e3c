"""`python -m netspec ...`: the command line; torchrun starts its workers this way."""

import os
import sys

from netspec.cli import main


def worker_main() -> None:
    """A torchrun worker (WORLD_SIZE > 1) leaves without the interpreter's teardown: once the
    command has finished (its files written, the process group left), destroying gloo's
    threads at exit has aborted finished jobs with "terminate called without an active
    exception". The exit status is the command's."""
    code: object = 0
    try:
        main()
    except SystemExit as e:
        code = e.code
    except BaseException:  # noqa: BLE001 - as the interpreter would: the traceback, then status 1
        import traceback

        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    if not isinstance(code, int):
        if code is not None:
            print(code, file=sys.stderr, flush=True)
        code = 0 if code is None else 1
    os._exit(code)


if __name__ == "__main__":
    if os.environ.get("WORLD_SIZE", "1").strip() not in ("", "0", "1"):
        worker_main()
    main()
