from .sequence import Encoder, Fusion, SequenceModel

__all__ = ["Encoder", "Fusion", "SequenceModel"]
