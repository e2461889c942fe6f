"""Multi-scale deformable attention: the compiled op, its PyTorch reference and the layer.

`ms_deform_attn` runs on the backend that `backend()` reports ("compiled" when the
extension `rvos.ops._C` is built, else "reference"; RVOS_MSDA_BACKEND forces one).
"""

from rvos.ops.function import backend, ms_deform_attn
from rvos.ops.modules import MSDeformAttn
from rvos.ops.reference import ms_deform_attn_reference

__all__ = ["MSDeformAttn", "backend", "ms_deform_attn", "ms_deform_attn_reference"]
