"""raco: reward-free multi-objective preference alignment of language models."""

__version__ = "0.1.0"
