"""The video-quality (VQA) study: acquire -> clean -> train / baseline -> evaluate -> report -> register."""
