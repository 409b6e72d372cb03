"""The one error the report raises for bad input: its message names the file and the fix."""

from __future__ import annotations


class ReportError(Exception):
    """Bad input to the report (a missing folder, a corrupt notebook, a malformed ledger).

    The message is one sentence naming the file, then what to do about it; the CLI prints it
    without a traceback.
    """
