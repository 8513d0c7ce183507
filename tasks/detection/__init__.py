"""The object-detection study: synthetic COCO data, acquisition, annotation cleaning and COCO scoring."""
