"""Pneumonia detection model: data, preprocessing, training, evaluation and inference."""

__version__ = "1.0.0"
