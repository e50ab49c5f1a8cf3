"""Encoders, fusions and the multimodal model."""

from mmbalance.models.backbones import BACKBONES, build_backbone
from mmbalance.models.encoders import ENCODERS, build_encoder
from mmbalance.models.fusions import FUSIONS
from mmbalance.models.model import MultimodalModel, build_model
from mmbalance.models.output import Output, SequenceBatch

__all__ = ["BACKBONES", "ENCODERS", "FUSIONS", "MultimodalModel", "Output", "SequenceBatch", "build_backbone", "build_encoder", "build_model"]

# Sequence encoders (transformer, LSTM), Swin, CLIP's towers, the x-vector and the i-vector register themselves into ENCODERS,
# CentralNet's backbone and central head into BACKBONES and FUSIONS, VATT's tower and backbone
# into ENCODERS and BACKBONES, the event-localisation models (AVGA, AVSDN, PSP), MWTSIM and the
# audio-visual question answering models (AVSD, Pano-AVQA) into BACKBONES and FUSIONS.
from mmbalance.models import avqa, centralnet, clip, ivector, localisation, mwtsim, sequence_encoders, swin, vatt, xvector  # noqa: E402, F401
