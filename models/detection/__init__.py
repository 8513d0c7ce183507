"""Decoupled IoU Regression (DIR, ACM MM 2021): a small two-stage detector in plain torch whose IoU
heads (IoU-Net "direct", "decoupled" purity/integrity, and "dir" with hindsight re-alignment) share
one backbone, RPN and box head.

Import submodules directly (``models.detection.detector``...): this package imports nothing heavy.
"""
