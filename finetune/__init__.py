"""Downstream fine-tuning of the pretrained 2D encoder (MoleculeNet, DTA, user data)."""
