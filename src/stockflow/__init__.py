"""Stockflow: an order and inventory backend."""

__version__ = "0.1.0"
