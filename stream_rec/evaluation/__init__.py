"""Measuring recommenders offline: the prequential replay (prequential.py), its plots (plots.py) and the search
of the model's settings by replay (tune.py)."""
