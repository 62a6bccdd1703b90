"""The study's parameters: declared once (``declarations.py``), checked (``checks.py``) and read
from a file (``files.py``). The rest of the library takes typed settings, never this dict."""

from .checks import ParamsError, unknown_keys, validate_params
from .declarations import BY_KEY, PARAMS, REQUIRED, STAGES, Param, default_of, stage_params
from .files import load_params, load_study, params_path, read_params

__all__ = ["BY_KEY", "PARAMS", "REQUIRED", "STAGES", "Param", "ParamsError", "default_of", "load_params",
           "load_study", "params_path", "read_params", "stage_params", "unknown_keys", "validate_params"]
