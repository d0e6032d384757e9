"""``python -m core``: see core.cli."""

import sys

# A sweep's worker (core.runs.sweep_driver) starts its driving child with this flag to
# get a loopback-only network for its embedded Ray. Entering one needs a
# single-threaded process, so it happens here, before numpy starts its threads.
from core.netns import LOOPBACK_ONLY_FLAG


def isolate_or_fail(run_dir: str) -> None:
    """Enter a loopback-only network, or end the run "failed" with the reason and exit."""
    from core.netns import NetworkIsolationError, enter_loopback_only_network

    try:
        enter_loopback_only_network()
    except NetworkIsolationError as error:
        from core.runs.worker import fail_run

        fail_run(run_dir, str(error))
        sys.exit(1)


if __name__ == "__main__" and sys.argv[1:3] == ["worker", LOOPBACK_ONLY_FLAG]:
    isolate_or_fail(sys.argv[3])

from core.cli import main  # noqa: E402  (after the network is settled)

if __name__ == "__main__":
    sys.exit(main())
