from .base import Ranking, Recommender
from .decayed import DecayedPopularity
from .knn import SKNN, VSKNN, SequentialRules
from .markov import Markov, RecentMarkov
from .own import OwnFirst
from .popularity import Popularity
from .river_mf import RiverMF
from .sequence import SequenceRecommender

__all__ = [
    "SKNN",
    "VSKNN",
    "DecayedPopularity",
    "Markov",
    "OwnFirst",
    "Popularity",
    "Ranking",
    "RecentMarkov",
    "Recommender",
    "RiverMF",
    "SequenceRecommender",
    "SequentialRules",
]
