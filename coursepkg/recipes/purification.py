"""Recipes of the chapter "Purification" (the PixelCNN of PixelDefend)."""
