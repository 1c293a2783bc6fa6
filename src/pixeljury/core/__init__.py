"""The seams every evaluator, engine and metric plugs into: registry, contracts, accumulators."""
