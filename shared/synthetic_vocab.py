"""The category names of the synthetic population: the vocabulary a server uses when it is given none.

``vane.simulations.synthetic`` builds its users over these names (in this order, first
``num_categories`` of them), and ``vane.server.config.default_taxonomy`` builds the default
:class:`~vane.shared.taxonomy.Taxonomy` from them, so a server started without a taxonomy file
trains the model the synthetic devices can use.
"""

from __future__ import annotations

#: The 12 readable category names of the synthetic population, in order.
SYNTHETIC_CATEGORIES: tuple[str, ...] = (
    "sports",
    "cooking",
    "travel",
    "technology",
    "fashion",
    "music",
    "finance",
    "gaming",
    "health",
    "home",
    "science",
    "books",
)
