from .head import Head
from .sequence import Encoder, Fusion, SequenceModel

__all__ = ["Encoder", "Fusion", "Head", "SequenceModel"]
