"""The modality registry's behaviour: one :class:`ModalityInfo` entry per modality (see :mod:`.base`).

The built-in modalities, one module each: :mod:`.rgb`, :mod:`.depth`, :mod:`.gaze`, :mod:`.cam`. Their
size specs are in :mod:`egom2p.modalities`; a further modality registers both with :func:`register`.
"""

from . import cam, depth, gaze, rgb
from .base import (MODALITY_INFO, ModalityError, ModalityInfo, finite_rows, float_sequence_codec,
                   float_sequence_column, info, names, plot_channels, register, registered, standard_norm_stats,
                   standard_postprocess, standard_prepare, standardize_signal, unregister)

BUILTIN = (rgb, depth, gaze, cam)  # in registry order: the model's modality order
for _module in BUILTIN:
    MODALITY_INFO[_module.INFO.name] = _module.INFO

__all__ = ["BUILTIN", "MODALITY_INFO", "ModalityError", "ModalityInfo", "finite_rows", "float_sequence_codec",
           "float_sequence_column", "info", "names", "plot_channels", "register", "registered", "standard_norm_stats",
           "standard_postprocess", "standard_prepare", "standardize_signal", "unregister"]
