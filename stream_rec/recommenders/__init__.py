from .base import Ranking, Recommender
from .decayed import DecayedPopularity
from .markov import Markov, RecentMarkov
from .popularity import Popularity
from .river_mf import RiverMF
from .sequence import SequenceRecommender

__all__ = [
    "DecayedPopularity",
    "Markov",
    "Popularity",
    "Ranking",
    "RecentMarkov",
    "Recommender",
    "RiverMF",
    "SequenceRecommender",
]
