"""Quality: how good a generator's images are (FID, KID, precision/recall, class accuracy) against
the real test split, in the features of the dataset's classifier or of Inception (torch)."""
