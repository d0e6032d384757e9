"""``python -m core``: see core.cli."""

import sys

# A sweep's driver (core.runs.sweep) re-starts itself with this flag to get a
# loopback-only network for its embedded Ray. Entering one needs a
# single-threaded process, so it happens here, before numpy starts its threads.
LOOPBACK_ONLY_FLAG = "--loopback-only"

if __name__ == "__main__" and sys.argv[1:3] == ["worker", LOOPBACK_ONLY_FLAG]:
    from core.netns import enter_loopback_only_network

    enter_loopback_only_network()

from core.cli import main  # noqa: E402  (after the network is settled)

if __name__ == "__main__":
    sys.exit(main())
