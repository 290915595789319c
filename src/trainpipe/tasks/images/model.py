"""The image net: a torchvision ResNet (or the tables' small CNN) behind the training split's
normalisation, built from its spec alone (the one function that does: `build_net`), and the
loading of a local state dict to fine-tune from. No Lightning, MLflow or Hydra here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from trainpipe.errors import ConfigError

HEAD = "fc."  # torchvision's name for the ResNet's last layer: replaced when fine-tuning
# where other checkpoint formats keep the state dict, and the prefixes their keys carry
NESTED_KEYS = ("state_dict", "model", "model_state_dict", "net")
KEY_PREFIXES = ("module.", "model.", "net.resnet.", "resnet.")


def uses_small_stem(stem: str, image_size: int) -> bool:
    return stem == "small" or (stem == "auto" and image_size <= 64)


class ImageNet(nn.Module):
    """Normalise with the stored statistics, then the body: a torchvision ResNet (`model=resnet`)
    or trainpipe's small CNN (`model=cnn`, tasks/tabular/nets.py). Takes float [N, 3, H, W] in
    [0, 1], so a served picture needs only the same resize as in training (decode.py)."""

    def __init__(self, spec: dict[str, Any]) -> None:
        super().__init__()
        net = spec["net"]
        if "_target_" in net:  # a trainpipe net named by its config (model=cnn)
            from trainpipe.tasks.tabular.model import build_net as build_trainpipe_net

            size = spec["image_size"]
            self.net = build_trainpipe_net(net, (3, size, size), spec["num_outputs"], True)
            self.body = "net"
        else:
            self.resnet = resnet(net, spec["num_outputs"])
            self.depth = net["depth"]
            self.body = "resnet"
        self.channels_last = False  # set on a GPU (module.py): inputs converted to match
        # buffers: saved with the weights (safetensors), moved with the module, never trained
        self.register_buffer("mean", torch.tensor(spec["mean"]).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(spec["std"]).view(1, 3, 1, 1))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        return getattr(self, self.body)((images - self.mean) / self.std)

    def head_parameters(self) -> list[nn.Parameter]:
        """The last layer's: the part a fine-tuning run replaces and trains at the full rate."""
        head = self.resnet.fc if self.body == "resnet" else self.net.head[-1]
        return list(head.parameters())

    def backbone_parameters(self) -> list[nn.Parameter]:
        head = {id(p) for p in self.head_parameters()}
        return [p for p in getattr(self, self.body).parameters() if id(p) not in head]


def resnet(net: dict[str, Any], num_outputs: int) -> nn.Module:
    """torchvision's ResNet of `net["depth"]`, its stem adapted to small pictures if asked."""
    import torchvision

    model = getattr(torchvision.models, f"resnet{net['depth']}")(num_classes=num_outputs)
    if net["small_stem"]:
        # 3x3 stride-1: a 32x32 picture keeps its detail instead of shrinking 4x at once
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        if not net["stem_pool"]:
            model.maxpool = nn.Identity()
    return model


def build_net(spec: dict[str, Any]) -> ImageNet:
    return ImageNet(spec)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """A local state dict (safetensors, or a torch file loaded weights-only: nothing unpickled),
    unwrapped from the usual checkpoint nesting and key prefixes."""
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        state: Any = load_file(str(path))
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # many types: not a zip, refused pickle, truncated
            raise ConfigError(
                "model.weights", f"cannot read {path} as a state dict: {str(err).splitlines()[0]}"
            ) from None
    for key in NESTED_KEYS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise ConfigError("model.weights", f"{path} does not hold a state dict of tensors")
    for prefix in KEY_PREFIXES:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def load_backbone(net: ImageNet, path: str | Path) -> None:
    """The backbone's weights from `path` (the head stays new: it is sized to these classes).
    ConfigError naming the first tensor that is missing or whose shape does not fit."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError("model.weights", f"no such file: {path}")
    state = read_state_dict(path)
    own = {k: v for k, v in net.resnet.state_dict().items() if not k.startswith(HEAD)}
    for name, tensor in own.items():
        if name not in state:
            raise ConfigError(
                "model.weights",
                f"{path} has no tensor {name!r} of the ResNet-{net.depth} backbone; "
                "is it a torchvision ResNet state dict of that depth?",
            )
        if tuple(state[name].shape) != tuple(tensor.shape):
            raise ConfigError(
                "model.weights",
                f"tensor {name!r} has shape {list(state[name].shape)} in {path}, the model's is "
                f"{list(tensor.shape)} (model.depth / model.stem must match the weights)",
            )
    net.resnet.load_state_dict({k: state[k] for k in own}, strict=False)
