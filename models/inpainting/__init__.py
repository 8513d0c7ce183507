"""Deep Interactive Video Inpainting (ACM MM 2021): scribbles on any frame → a shared
spatio-temporal memory → a mask decoder and an inpainting decoder. So far the building blocks:
DAVIS scribbles, DAVIS J / F metrics, a simulated user (robot).

Import submodules directly (``models.inpainting.scribbles``...): this package imports nothing heavy.
"""
