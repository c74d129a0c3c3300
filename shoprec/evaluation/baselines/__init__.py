"""Baselines every shoprec number is reported beside, all with the ``Method`` shape."""

from shoprec.evaluation.baselines.als import ALS
from shoprec.evaluation.baselines.content_knn import ContentKNN
from shoprec.evaluation.baselines.item_knn import ItemKNN
from shoprec.evaluation.baselines.lightfm_hybrid import LightFMHybrid, lightfm_unavailable_reason
from shoprec.evaluation.baselines.popularity import Popularity
from shoprec.evaluation.baselines.random_items import RandomItems

__all__ = ["ALS", "ContentKNN", "ItemKNN", "LightFMHybrid", "Popularity", "RandomItems", "lightfm_unavailable_reason"]
