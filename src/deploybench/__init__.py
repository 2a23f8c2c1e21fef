"""deploybench: measure, price and rank deployment options for vision models."""

__version__ = "0.1.0"
