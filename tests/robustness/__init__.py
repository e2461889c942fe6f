"""Robustness: bad and hostile input of every kind, and interrupted pipeline stages."""
