"""aloekit: the Aloe recipe for healthcare LLMs, from data to risk assessment."""

__version__ = "0.1.0"
