"""Input rows, images and benchmark metadata."""
