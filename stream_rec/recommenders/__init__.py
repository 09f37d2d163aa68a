from .base import Ranking, Recommender
from .category import CategoryPopularity
from .decayed import DecayedPopularity
from .knn import SKNN, VSKNN, SequentialRules
from .markov import Markov, RecentMarkov
from .own import OwnFirst
from .popularity import Popularity
from .river_mf import RiverMF
from .rule import EvidenceRule

__all__ = [
    "SKNN",
    "VSKNN",
    "CategoryPopularity",
    "DecayedPopularity",
    "EvidenceRule",
    "Markov",
    "OwnFirst",
    "Popularity",
    "Ranking",
    "RecentMarkov",
    "Recommender",
    "RiverMF",
    "SequentialRules",
]
