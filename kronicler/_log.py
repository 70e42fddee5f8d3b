"""Logging once per kind of problem: the one way Kronicler keeps a failing loop from flooding logs.

A write that fails fails again on the next cycle, an exporter that cannot store one batch cannot
store the next: the first occurrence of each kind is logged (with its traceback), later ones are
only counted by their owner (dropped rows, failures, ``kronicler.status()``). Loggers are named
after their module (``logging.getLogger(__name__)``), so ``kronicler`` configures all of them.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable

from kronicler.errors import warn_data_loss


class LogOnce:
    """Logs the first message of each kind to ``logger``; later ones of that kind are dropped.

    Thread-safe enough for its purpose: two threads failing at the same moment may both log.
    """

    __slots__ = ("_logger", "_seen")

    def __init__(self, logger: logging.Logger) -> None:
        self._logger = logger
        self._seen: set[Hashable] = set()

    def __call__(
        self, kind: Hashable, level: int, message: str, *args: object,
        exc_info: BaseException | bool | None = None, loss: bool = False,
    ) -> bool:  # fmt: skip
        """Log ``message % args`` if no message of ``kind`` was logged yet; True if it was now.

        ``loss``: the message says calls are being lost, so it is also issued as a
        :class:`~kronicler.errors.DataLossWarning`, which reaches the user however logging is set
        up (see :func:`~kronicler.errors.warn_data_loss`).
        """
        if kind in self._seen:
            return False
        self._seen.add(kind)
        if loss:
            warn_data_loss(message % args, self._logger, level=level, exc_info=exc_info)
        else:
            self._logger.log(level, message, *args, exc_info=exc_info)
        return True
