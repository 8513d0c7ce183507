"""Helpers every study's models share (pure torch / numpy / OpenCV): atomic saves, video decoding."""
