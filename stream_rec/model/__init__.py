from .repeat import RepeatScore
from .sequence import Encoder, Fusion, SequenceModel

__all__ = ["Encoder", "Fusion", "RepeatScore", "SequenceModel"]
