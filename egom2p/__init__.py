"""egom2p: egocentric multimodal multitask pretraining, data pipeline first.

Raw egocentric datasets -> standard clips (Lance) -> token DB (Lance) -> EgoM2P model.
The conventions every stage shares live in `egom2p.modalities` (what each modality is and
how it is tokenized), `egom2p.geometry` (axes, poses, projections), `egom2p.clip` (the
standard clip) and `egom2p.video` (decode / encode / resample).
"""

__version__ = "0.1.0"
