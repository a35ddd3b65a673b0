"""Dataset preparation: CUB-200-2011 and Oxford-102 preprocessing, and the built-in shapes dataset."""
