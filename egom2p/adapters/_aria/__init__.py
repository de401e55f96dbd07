"""The Project Aria helper library behind :mod:`egom2p.adapters.aria` (its face): :mod:`.mps`, :mod:`.calibration`,
:mod:`.vrs`."""
