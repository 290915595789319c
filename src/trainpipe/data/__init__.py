"""Data layer on Hugging Face `datasets`: sources → prepared splits → batched loaders.

Task-neutral: tables (data/tables.py) and text (data/text.py, data/tokens.py) are prepared
here; a task decides how the target is encoded and which loader serves its batches.
"""
