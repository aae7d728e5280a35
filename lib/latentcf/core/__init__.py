"""The machinery every chapter shares: runs and results, claims, settings, the model cache, the one
training loop, device choice and named random streams, paths, errors, batching and the plotting style."""
