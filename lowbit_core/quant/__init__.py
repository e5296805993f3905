"""Forward quantizers (sign, k-bit, DSQ) and backward estimators (STE variants).

Pure functions live in ``estimators`` (sign backward estimators), ``sign``, ``kbit`` and ``dsq``;
modules built by name in ``registry`` (:func:`make_quantizer`); quantized layers in ``layers``.
"""
from lowbit_core.quant.dsq import DSQQuantizer, dsq_alpha_schedule, dsq_hard, dsq_sign_ste, dsq_soft
from lowbit_core.quant.estimators import ESTIMATORS, ede_schedule, get_estimator, sign, sign_ste
from lowbit_core.quant.kbit import (DoReFaAct, DoReFaWeight, LSQQuantizer, dorefa_act, dorefa_weight, lsq_quantize,
                                    quantize_k)
from lowbit_core.quant.layers import QuantConv2d, QuantLinear, QuantSpec, set_dsq_alpha, set_ede_epoch
from lowbit_core.quant.registry import QUANTIZERS, QuantizerSpec, make_quantizer
from lowbit_core.quant.sign import WEIGHT_SCALES, SignQuantizer, binarize, binarize_weight, mean_abs_scale

__all__ = [
    "DSQQuantizer", "dsq_alpha_schedule", "dsq_hard", "dsq_sign_ste", "dsq_soft",
    "ESTIMATORS", "ede_schedule", "get_estimator", "sign", "sign_ste",
    "DoReFaAct", "DoReFaWeight", "LSQQuantizer", "dorefa_act", "dorefa_weight", "lsq_quantize", "quantize_k",
    "QuantConv2d", "QuantLinear", "QuantSpec", "set_dsq_alpha", "set_ede_epoch",
    "QUANTIZERS", "QuantizerSpec", "make_quantizer",
    "WEIGHT_SCALES", "SignQuantizer", "binarize", "binarize_weight", "mean_abs_scale",
]
