"""Forward quantizers (sign, k-bit, DSQ) and backward estimators (STE variants).

The estimators are declared once in ``estimator_registry`` (torch-free, so reports can label them);
``estimators`` wires them into autograd with the sign forward; ``sign``, ``kbit`` and ``dsq`` hold
the forward maps; modules are built by name in ``registry`` (:func:`make_quantizer`); quantized
layers live in ``layers``. Names below are imported on first use, so importing
``lowbit_core.quant.estimator_registry`` does not import torch.
"""
import importlib

_EXPORTS = {
    "dsq": ("DSQQuantizer", "dsq_alpha_schedule", "dsq_hard", "dsq_sign_ste", "dsq_soft"),
    "estimators": ("ESTIMATORS", "ede_schedule", "get_estimator", "sign", "sign_ste"),
    "kbit": ("DoReFaAct", "DoReFaWeight", "LSQQuantizer", "dorefa_act", "dorefa_weight", "lsq_quantize", "quantize_k"),
    "layers": ("QuantConv2d", "QuantLinear", "QuantSpec", "set_dsq_alpha", "set_ede_epoch"),
    "registry": ("QUANTIZERS", "QuantizerSpec", "make_quantizer", "register_quantizer"),
    "sign": ("WEIGHT_SCALES", "SignQuantizer", "binarize", "binarize_weight", "mean_abs_scale"),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = list(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module 'lowbit_core.quant' has no attribute {name!r}")
    return getattr(importlib.import_module(f"lowbit_core.quant.{_WHERE[name]}"), name)
