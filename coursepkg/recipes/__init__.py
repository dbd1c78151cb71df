"""Recipes of the model zoo, one module per chapter that trains models.

Each module registers its recipes with :func:`coursepkg.zoo.register` when imported;
:mod:`coursepkg.zoo` imports them all on first use.
"""
