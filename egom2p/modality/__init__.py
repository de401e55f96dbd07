"""The modality registry's behaviour: one :class:`ModalityInfo` entry per modality (see :mod:`.base`).

The built-in modalities, one module each: :mod:`.rgb`, :mod:`.depth`, :mod:`.gaze`, :mod:`.cam`. Their
size specs are in :mod:`egom2p.modalities`; a further modality registers both with :func:`register`.
"""

from . import cam, depth, gaze, rgb
from .base import (MODALITY_INFO, ModalityError, ModalityInfo, finite_rows, float_sequence_codec,
                   float_sequence_column, info, names, plot_channels, register, registered, standard_norm_stats,
                   standard_postprocess, standard_prepare, standardize_signal, unregister)

BUILTIN = (rgb, depth, gaze, cam)  # in registry order; their sizes are built in egom2p.modalities
for _module in BUILTIN:
    MODALITY_INFO[_module.INFO.name] = _module.INFO

#: Further modality modules (each with ``INFO`` and ``SPECS``), registered after the built-in ones:
#: import yours above and list it here.
PLUGINS: tuple = ()
for _module in PLUGINS:
    register(_module.INFO, _module.SPECS)

__all__ = ["BUILTIN", "PLUGINS", "MODALITY_INFO", "ModalityError", "ModalityInfo", "finite_rows", "float_sequence_codec",
           "float_sequence_column", "info", "names", "plot_channels", "register", "registered", "standard_norm_stats",
           "standard_postprocess", "standard_prepare", "standardize_signal", "unregister"]
