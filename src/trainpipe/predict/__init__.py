"""Batch inference (`trainpipe predict`): readers (what is scored), the chunked, resumable scoring
loop (batch.py), writers (part files, the published output) and the MLflow record of the run."""
