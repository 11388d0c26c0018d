"""Where a catalog counts as large: the build steps that change their method above it.

One threshold for all of them (the index choice, the item neighbours, the ranker's samples), so
a catalog is either built the small way or the large way throughout.
"""

CATALOG_SCALE_ITEMS = 300_000
