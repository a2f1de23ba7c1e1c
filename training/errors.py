"""The training stage's expected failures: bad config, bad data, a failed run, an unusable checkpoint.

The CLI reports these as one line; anything else is a bug and keeps its traceback.
"""


class TrainingError(Exception):
    pass
