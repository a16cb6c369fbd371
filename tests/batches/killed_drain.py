"""A drain that kills itself with SIGKILL at one step (for the crash tests).

python -m tests.batches.killed_drain <step>   (environment: TARS_OPT_HOME, ANTHROPIC_*)
"""

from __future__ import annotations

import os
import signal
import sys

from tars_opt import open_app
from tars_opt.drain.runner import Drainer


def main(step: str) -> None:
    def checkpoint(name: str) -> None:
        if name == step:
            os.kill(os.getpid(), signal.SIGKILL)

    app = open_app()
    Drainer(app.config, app.db, checkpoint=checkpoint).run(now=True)
    sys.exit(3)  # the step never came: the test is wrong


if __name__ == "__main__":
    main(sys.argv[1])
