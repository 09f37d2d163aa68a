"""stream-rec: a streaming online-learning sequence recommender on Kafka and Faust."""

__version__ = "0.1.0"
