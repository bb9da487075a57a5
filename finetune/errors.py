"""The error raised for bad fine-tuning input, before any training starts."""

from __future__ import annotations


class FinetuneError(ValueError):
    """Bad input to a fine-tuning run (unknown task, missing column, unreadable labels, a file
    without valid molecules, a checkpoint that does not fit, a data file that cannot be fetched).

    The message names the problem in one line (a failed download adds the list of URLs tried and
    how to place the file by hand); ``graphmvp-finetune`` prints it and exits with code 2.
    """


__all__ = ["FinetuneError"]
