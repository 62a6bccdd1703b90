"""biotrain: longitudinal studies of on-device fine-tuning of biosignal models.

The library is grouped by concern (``data``, ``models``, ``adaptation``, ``study``,
``tracking``, ``report``, ``device``, ``params``). It never reads ``params.yaml`` on its own: an
entry point names the file to ``biotrain.params.load_study``, which checks it once into a typed
:class:`biotrain.study.StudyConfig`, whose sections are passed down as arguments, so every
function is usable from a notebook or a test. It imports nothing from the project's ``stages/``
or ``flows/``.
"""

__version__ = "0.1.0"
