"""Networks: the model zoo, ImageNet weights, cached features, devices."""
