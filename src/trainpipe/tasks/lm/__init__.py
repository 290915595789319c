"""Causal language modelling: GPT-2-architecture models on text, from corpus to a registered
generator."""

from trainpipe.tasks.lm.task import LanguageModelTask

TASK = LanguageModelTask()
