"""Reviewing a dataset before training on it: the data doctor and its corrections."""
