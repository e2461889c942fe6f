"""rvos: referring video object segmentation as configs of one package."""
