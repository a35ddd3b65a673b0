"""The StackGAN library both stages build on, and above it the programs that use the stages.

The modules directly in `misc/` import no stage: configuration, data pipeline, blocks, losses, the
GAN training step and the shared training frame. The sub-packages are by concern: `text/` (the
char-CNN-RNN text encoder), `data/` (dataset preparation), `generate/` (sampling, demo, export),
`evaluation/` (metrics and scorers) and `tools/` (benchmarks).
"""
