"""Prediction: a trained model applied to whole scenes and volumes, window by window, out of
core."""
