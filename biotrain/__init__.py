"""biotrain: longitudinal studies of on-device fine-tuning of biosignal models.

The library is grouped by concern (``data``, ``models``, ``adaptation``, ``study``,
``tracking``, ``report``, ``device``). It never reads ``params.yaml``: ``stages/common`` loads
it once into a typed :class:`biotrain.study.StudyConfig` and passes sections down as
arguments, so every function is usable from a notebook or a test.
"""

__version__ = "0.1.0"
