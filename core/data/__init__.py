"""Photos from disk to tensors: acquire, scan, split, decode, augment, batch."""
