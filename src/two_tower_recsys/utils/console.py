"""Console logging that does not cut through progress bars.

Every command's log lines go to stderr through :class:`ProgressAwareHandler` (configured in
``configs/hydra/job_logging/stderr.yaml``): it writes with ``tqdm.write``, which clears the bars on
screen, prints the line and draws the bars again below it.
"""

from __future__ import annotations

import logging

from tqdm import tqdm


class ProgressAwareHandler(logging.StreamHandler):
    def emit(self, record: logging.LogRecord) -> None:
        try:
            tqdm.write(self.format(record), file=self.stream)
            self.flush()
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)
