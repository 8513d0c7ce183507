"""STDAM for no-reference video quality, its baseline, the subject model, frame I/O and metrics.

Import submodules directly (``models.vqa.video``...): this package imports nothing heavy, so the
score-cleaning path never loads torch.
"""
