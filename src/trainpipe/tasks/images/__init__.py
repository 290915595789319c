"""Image classification: a folder (or table) of pictures → a torchvision ResNet → a registered
model that takes paths, bytes, base64 or arrays (docs/architecture.md, "The task interface").
Imports no torch (tasks/base.py)."""

from trainpipe.tasks.images.task import ImageTask

TASK = ImageTask()
