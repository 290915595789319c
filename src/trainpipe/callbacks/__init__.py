"""Lightning callbacks of our own (imported by the runner, after lightning is loaded)."""
