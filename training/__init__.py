"""Offline training, evaluation, export and paper reproductions."""
