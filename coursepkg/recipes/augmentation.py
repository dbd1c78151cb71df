"""Recipes of the chapter "Data augmentation" (adversarial training, logit pairing, TRADES)."""
