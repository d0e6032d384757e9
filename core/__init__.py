"""PawLab's engine: data, pipelines, models, training runs and inference.

Plain Python, no Streamlit. TensorFlow is imported only by the modules that
need it (pipeline, augment layers, models, training, inference), never here,
so that importing ``core`` stays fast for the app's pages.
"""
