"""Scoring generated images: metrics, Inception-v3 and its weight converter, the shapes judge, `make eval`."""
