"""treeloop: an LLM improves itself by search (ηMCTS over reasoning steps), critics and fine-tuning."""

from __future__ import annotations

import sys

__version__ = "0.1.0"


def _quiet_interrupt(signum: int, frame: object) -> None:
    import os

    print("interrupted while starting; nothing was written", file=sys.stderr)
    os._exit(130)


# ``python -m agent.<tool>``: Ctrl-C while the tool's modules are still being imported ends it with
# one line instead of an import traceback. ``agent.cli.run_cli`` restores Python's own handler as
# soon as the tool starts (so that runs are interrupted cleanly and resume). Only for
# ``python -m`` (while runpy locates the module, ``sys.argv[0]`` is "-m"); never for library use.
if sys.argv[:1] == ["-m"]:
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, _quiet_interrupt)
