"""The interactive video inpainting ("invisibility cloak") study: scribbles on any frame, the object
segmented through the video and removed, the background restored from other frames."""
