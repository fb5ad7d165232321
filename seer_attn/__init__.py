"""seer_attn: variable-length block-sparse attention kernels for PyTorch.

Importing the package loads the compiled extension (op schemas + CUDA kernels), then registers the
pure-PyTorch reference as the CPU implementation, fake kernels for torch.compile and autograd.
"""
import torch  # noqa: F401  (loads libtorch before the extension)

from . import _C  # noqa: F401  (registers the torch.ops.seer_attn schemas and CUDA kernels)
from . import ops as _ops
from .ops import kernel_status
from .api import *  # noqa: F401,F403
from .api import __all__ as _api_all
from .masks import *  # noqa: F401,F403
from .masks import __all__ as _masks_all

__version__ = "0.1.0"
__all__ = ["kernel_status"] + list(_api_all) + list(_masks_all)
