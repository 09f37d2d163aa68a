from .base import Ranking, Recommender
from .popularity import Popularity
from .sequence import SequenceRecommender

__all__ = ["Popularity", "Ranking", "Recommender", "SequenceRecommender"]
