"""Released pretrained weights: manifest and verified downloads."""
