"""Tools around the model: benchmarks (`make bench`)."""
