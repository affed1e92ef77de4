"""Data: raw IDX files, their sources, and the resident-tensor LightningDataModule."""
