"""Helpers every study's models share (pure torch / numpy / OpenCV): atomic saves, frame sequences
(video files or frame folders, streamed; H.264 and mask writers), bootstrap intervals, Lightning mixins."""
