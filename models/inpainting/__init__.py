"""Deep Interactive Video Inpainting (ACM MM 2021): scribbles on any frame → a shared
spatio-temporal memory → a mask decoder and an inpainting decoder.

Building blocks: DAVIS scribbles (``scribbles``), DAVIS J / F metrics (``metrics``), a simulated user
(``robot``), camera alignment (``align``), the shared-memory network (``network``), its Lightning
module and clip data module (``lit``), and the stateful per-video inference session (``session``).

Import submodules directly (``models.inpainting.scribbles``...): this package imports nothing heavy.
"""
