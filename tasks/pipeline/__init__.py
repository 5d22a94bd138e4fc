"""The pipeline as DVC sees it: its stages, the run lock, pushes, and the run's summary."""
