"""shoprec: an open multimodal product recommender on Qdrant.

Data path: catalog -> encoders -> indexing (store) -> recommend -> cli / http.
"""

__version__ = "0.1.0"
