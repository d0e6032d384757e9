"""Trained models at work: inference, Grad-CAM, exports."""
