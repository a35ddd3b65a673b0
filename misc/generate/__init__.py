"""Generation from trained snapshots: model loading, the evaluation sampler, the demo, SavedModel export."""
