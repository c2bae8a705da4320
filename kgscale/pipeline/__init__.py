"""`kgscale run`: the stages chained, each skipped when its output is current."""
