"""Collectivia: sovereign RAG assistant for French local authorities."""
__version__ = "0.1.0"
