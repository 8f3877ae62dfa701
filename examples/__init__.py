"""Example models, training script and trained weights for accelc (see ``models.py``).

A package only for convenience (``from examples.models import lenet``); nothing here is
needed to import ``examples/models.py`` by path, e.g. ``--entry examples/models.py:lenet``.
"""
