"""Channel names and event codes of the smart-glasses task, shared by every EOG source.

The synthetic generator, the real recordings (:mod:`biotrain.data.glasses`) and the windowing all
speak of the same three electrodes and the same 11 trigger-coded classes; they read them here so
that none of them has to import another to agree.
"""

from __future__ import annotations

import numpy as np

GLASSES_CHANNELS = ("EEG 1", "EEG 2", "EEG 3")
# the two channels EpiDeNet sees, derived from the three electrodes
GLASSES_DERIVED_CHANNELS = ("vertical", "horizontal")
# BRIEF section 4: task triggers 50..80 map to classes 0..10.
EOG_TRIGGERS = (50, 51, 52, 53, 61, 62, 63, 64, 70, 71, 80)
EOG_EVENTS = {f"eye_{t}": t for t in EOG_TRIGGERS}


def derive_glasses_channels(X: np.ndarray) -> np.ndarray:
    """Smart-glasses electrodes e1, e2, e3 -> vertical = e2 - (e1+e3)/2, horizontal = e1 - e3."""
    e1, e2, e3 = X[:, 0], X[:, 1], X[:, 2]
    return np.stack([e2 - (e1 + e3) / 2, e1 - e3], axis=1)
