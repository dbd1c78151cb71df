"""Recipes of the chapter "Randomness" (chapter 5): none.

Both randomised defences of the chapter -- stochastic activation pruning and random
resizing and padding (:mod:`coursepkg.defences.randomness`) -- wrap the shared ``standard``
classifier at test time, unchanged: nothing is trained for them.  The random resizing
resizes its canvas back to 28 x 28, so the standard classifier needs no retraining.
Imported by :mod:`coursepkg.zoo` with the other recipe modules; it registers nothing.
"""
