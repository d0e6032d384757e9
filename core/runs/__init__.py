"""Training runs: recipes, the run folder, the job queue, the worker, evaluation."""
