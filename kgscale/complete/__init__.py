"""Completing the graph: bulk link prediction (kgscale predict) and writing it back."""
