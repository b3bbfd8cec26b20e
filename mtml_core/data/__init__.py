"""Data: the built-in synthetic world, real-dataset loaders and episode samplers."""
