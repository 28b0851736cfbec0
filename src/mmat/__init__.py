"""mmat: the MMAT-1M data engine and the tool-using vision-language agent around it.

Importing mmat is cheap: heavy back-ends (torch, onnxruntime, ray) load only when used.
"""

from mmat.schema import SCHEMA_VERSION

__version__ = "0.1.0"

__all__ = ["SCHEMA_VERSION", "__version__"]
