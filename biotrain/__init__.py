"""biotrain: longitudinal studies of on-device fine-tuning of biosignal models.

The library is grouped by concern (``data``, ``models``, ``adaptation``, ``tracking``,
``report``, ``device``). It never reads ``params.yaml``: stages and flows read parameters
and pass them in as arguments, so every function is usable from a notebook or a test.
"""

__version__ = "0.1.0"
