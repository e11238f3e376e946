"""Two-tower retrieval recommender for MovieLens-scale data."""

__version__ = "0.1.0"
