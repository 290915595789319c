"""Runtime concerns kept apart from the training logic: checkpoint IO, job state, ranks, signals."""
