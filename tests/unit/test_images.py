"""The image task's parts: decoding to RGB, the per-batch augmentation, the spec a net is built
from, the predictor's inputs, the folder rules and the fine-tuning weights check."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from tests.images_data import COLOURS, picture, write_folder
from trainpipe.errors import ConfigError, DataError
from trainpipe.tasks.base import ScoreOptions
from trainpipe.tasks.images.decode import fit_square, open_image, to_rgb
from trainpipe.tasks.images.model import ImageNet, load_backbone
from trainpipe.tasks.images.predictor import ImagePredictor
from trainpipe.tasks.images.sources import scan_folder
from trainpipe.tasks.images.transforms import ImageTransform

SIZE = 8


def spec(**net: object) -> dict:
    return {
        "task": "image_classification",
        "classes": list(COLOURS),
        "num_outputs": len(COLOURS),
        "image_size": SIZE,
        "mean": [0.4, 0.4, 0.4],
        "std": [0.3, 0.3, 0.3],
        "image_column": "image",
        "target_name": "label",
        "net": {"depth": 18, "small_stem": True, "stem_pool": True, "freeze_backbone": False,
                "backbone_lr_scale": 1.0, **net},
        "name": "resnet",
    }  # fmt: skip


def png_bytes(pixels: np.ndarray, mode: str | None = None) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(pixels)
    (image.convert(mode) if mode else image).save(buffer, format="PNG")
    return buffer.getvalue()


def test_grayscale_palette_and_transparent_pictures_become_rgb() -> None:
    pixels = picture(COLOURS["red"], seed=1)
    for mode in ("L", "P", "RGBA", "LA"):
        out = fit_square(open_image(png_bytes(pixels, mode)), SIZE)
        assert out.shape == (SIZE, SIZE, 3) and out.dtype == np.uint8, mode
    gray = fit_square(open_image(png_bytes(pixels, "L")), SIZE)
    assert (gray[..., 0] == gray[..., 1]).all() and (gray[..., 1] == gray[..., 2]).all()
    clear = np.zeros((4, 4, 4), np.uint8)  # fully transparent: shown over white, not black
    assert (fit_square(open_image(png_bytes(clear)), SIZE) == 255).all()


def test_exif_orientation_is_honoured() -> None:
    wide = np.zeros((10, 30, 3), np.uint8)
    wide[:, :10] = 255  # white on the left
    buffer = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    Image.fromarray(wide).save(buffer, format="JPEG", exif=exif.tobytes(), quality=95)
    upright = to_rgb(open_image(buffer.getvalue()))
    assert upright.size == (10, 30)  # displayed 10 wide x 30 tall: the white third on top
    pixels = np.asarray(upright)
    assert pixels[:8].mean() > 200 and pixels[-8:].mean() < 50


def test_a_non_square_picture_is_resized_by_its_shorter_side_and_center_cropped() -> None:
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, 10:30] = 255  # the middle half
    out = fit_square(Image.fromarray(pixels), 10)
    assert out.shape == (10, 10, 3) and out.min() > 200


def test_augmentation_is_a_function_of_the_batch_seed_and_off_for_evaluation() -> None:
    row = torch.from_numpy(picture(COLOURS["blue"], seed=2).reshape(-1))
    target = torch.tensor(1)
    train = ImageTransform(16, augment=True, crop_scale=0.3, hflip=0.5)

    def draw(seed: int) -> torch.Tensor:
        torch.manual_seed(seed)
        return train(row, target)[0]

    assert torch.equal(draw(7), draw(7))
    assert not torch.equal(draw(7), draw(8))
    image, label = ImageTransform(16, augment=False)(row, target)
    assert image.shape == (3, 16, 16) and image.dtype == torch.float32 and label == 1
    expected = torch.from_numpy(picture(COLOURS["blue"], seed=2)).permute(2, 0, 1) / 255
    assert torch.allclose(image, expected, atol=1e-6)


def test_the_net_is_built_from_its_spec_and_holds_the_normalisation() -> None:
    net = ImageNet(spec())
    assert net.resnet.conv1.kernel_size == (3, 3) and net.resnet.conv1.stride == (1, 1)
    assert net.resnet.fc.out_features == 3
    state = net.state_dict()
    assert torch.allclose(state["mean"].flatten(), torch.tensor([0.4] * 3))
    big = ImageNet({**spec(small_stem=False), "image_size": 224})
    assert big.resnet.conv1.kernel_size == (7, 7)
    assert net(torch.rand(2, 3, SIZE, SIZE)).shape == (2, 3)


def test_the_predictor_takes_paths_bytes_base64_and_arrays_alike(tmp_path: Path) -> None:
    torch.manual_seed(0)
    predictor = ImagePredictor(spec(), ImageNet(spec()))
    pictures = [picture(c, seed=i) for i, c in enumerate(COLOURS.values())]
    paths = []
    for i, pixels in enumerate(pictures):
        paths.append(str(tmp_path / f"{i}.png"))
        Image.fromarray(pixels).save(paths[-1])
    raw = [Path(p).read_bytes() for p in paths]
    encoded = [base64.b64encode(b).decode() for b in raw]
    reference = predictor.predict(pd.DataFrame({"image": paths}))
    assert list(reference.columns) == ["label", "probabilities"]
    assert set(reference["label"]) <= set(COLOURS)
    assert np.allclose([sum(p) for p in reference["probabilities"]], 1.0)
    for given in (
        pd.DataFrame({"image": raw}),
        pd.DataFrame({"image": encoded}),
        pd.DataFrame({"other": encoded}),  # one column: read whatever its name
        paths,
        np.stack(pictures),  # a uint8 NHWC batch
    ):
        out = predictor.predict(given)
        assert np.allclose(np.stack(out["probabilities"]), np.stack(reference["probabilities"]))
    single = predictor.predict(pictures[0])  # one HWC array
    assert np.allclose(single["probabilities"][0], reference["probabilities"][0])
    wide = predictor.predict(paths, {"output": "probabilities"})
    assert list(wide.columns) == list(COLOURS)
    with pytest.raises(ValueError, match="neither an existing file nor base64"):
        predictor.predict(pd.DataFrame({"image": ["no/such/file.png"]}))
    with pytest.raises(ValueError, match="must be uint8"):
        predictor.predict(np.zeros((2, 8, 8, 3), np.float32))
    # batch scoring (trainpipe predict): relative paths beside the input, bytes, base64 alike
    options = ScoreOptions(probabilities=True, base_dir=str(tmp_path))
    frame = pd.DataFrame({"image": [Path(paths[0]).name, raw[1], encoded[2]]})
    scored = predictor.score(frame, options)
    assert (
        list(scored)
        == predictor.output_columns(options)
        == ["prediction"] + [f"probability_{c}" for c in COLOURS]
    )
    assert scored["prediction"] == reference["label"].tolist()
    assert np.allclose(
        np.stack(reference["probabilities"]).T, [scored[f"probability_{c}"] for c in COLOURS]
    )
    (tmp_path / "cut.png").write_bytes(raw[0][:50])
    broken = pd.DataFrame({"image": ["cut.png", paths[1], None]})
    with pytest.raises(DataError, match="column 'image': image 'cut.png' does not decode"):
        predictor.score(broken, options)
    skipped = predictor.score(broken, ScoreOptions(skip_bad=True, base_dir=str(tmp_path)))
    assert list(skipped["prediction"]) == [None, reference["label"][1], None]
    with pytest.raises(ValueError, match="no image column 'image'"):
        predictor.predict(pd.DataFrame({"a": paths, "b": paths}))


def test_folder_rules_name_the_folder(tmp_path: Path) -> None:
    root = write_folder(tmp_path / "pics", per_class=2)
    splits, ignored = scan_folder(root)
    assert ignored == 1 and {c for _, c in splits["train"]} == set(COLOURS)
    (root / "empty").mkdir()
    with pytest.raises(DataError, match="class folder .*empty has no images"):
        scan_folder(root)
    lonely = tmp_path / "lonely" / "cats"
    lonely.mkdir(parents=True)
    Image.fromarray(picture(COLOURS["red"], 0)).save(lonely / "a.png")
    with pytest.raises(DataError, match=r"single class \(cats\)"):
        scan_folder(lonely.parent)
    text = tmp_path / "text" / "a"
    text.mkdir(parents=True)
    (text / "x.txt").write_text("x")
    with pytest.raises(DataError, match=r"has no images \(1 other file\(s\) ignored\)"):
        scan_folder(text.parent)


def test_split_folders_give_the_splits(tmp_path: Path) -> None:
    for split in ("train", "val", "test"):
        write_folder(tmp_path / split, per_class=1)
    splits, _ = scan_folder(tmp_path)
    assert sorted(splits) == ["test", "train", "val"] and len(splits["val"]) == 3


def test_fine_tuning_weights_must_fit_and_keep_a_new_head(tmp_path: Path) -> None:
    import torchvision
    from safetensors.torch import save_file

    donor = torchvision.models.resnet18(num_classes=1000)
    donor.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    path = tmp_path / "donor.pt"
    torch.save({"state_dict": {f"module.{k}": v for k, v in donor.state_dict().items()}}, path)
    net = ImageNet(spec())
    load_backbone(net, path)
    assert torch.equal(net.resnet.layer4[1].conv2.weight, donor.layer4[1].conv2.weight)
    assert net.resnet.fc.out_features == 3  # the head is new, sized to the classes
    imagenet = tmp_path / "imagenet.safetensors"
    save_file(torchvision.models.resnet18().state_dict(), str(imagenet))
    with pytest.raises(ConfigError, match=r"tensor 'conv1.weight' has shape \[64, 3, 7, 7\]"):
        load_backbone(ImageNet(spec()), imagenet)
    with pytest.raises(ConfigError, match="has no tensor 'layer3.0.conv1.weight'"):
        shallow = {k: v for k, v in donor.state_dict().items() if not k.startswith("layer3")}
        torch.save(shallow, tmp_path / "partial.pt")
        load_backbone(ImageNet(spec()), tmp_path / "partial.pt")
    assert json.loads(json.dumps(spec()))["net"]["depth"] == 18


def image_data(tmp_path: Path, **data: object) -> dict:
    """A resolved `data` section of image data (configs/data/images.yaml), for TASK.prepare."""
    return {
        "name": "pics", "kind": "image", "source": "images", "image_column": "image",
        "target": "label", "image_size": SIZE, "augment": True, "crop_scale": 0.5, "hflip": 0.5,
        "skip_bad_images": False, "val_fraction": 0.2, "test_fraction": 0.2, "batch_size": 4,
        "num_workers": 0, "num_proc": 1, "seed": 0, "cache_dir": str(tmp_path / "cache"), **data,
    }  # fmt: skip


def test_a_table_with_an_image_column_of_paths_or_bytes_is_image_data(tmp_path: Path) -> None:
    from trainpipe.tasks.images import TASK

    root = write_folder(tmp_path / "pics", per_class=5)
    files = sorted(root.glob("*/*.*g"))
    table = pd.DataFrame({"file": [str(f.relative_to(root)) for f in files]})
    table["kind"] = [f.parent.name for f in files]
    table.to_csv(root / "index.csv", index=False)
    by_path = TASK.prepare(
        {"data": image_data(tmp_path, source="csv", path=str(root / "index.csv"),
                            image_column="file", target="kind")}
    )  # fmt: skip
    assert by_path.classes == sorted(COLOURS) and sum(by_path.split_sizes().values()) == 15
    table["file"] = [f.read_bytes() for f in files]
    table.to_parquet(tmp_path / "inline.parquet")
    by_bytes = TASK.prepare(
        {"data": image_data(tmp_path, source="parquet", path=str(tmp_path / "inline.parquet"),
                            image_column="file", target="kind")}
    )  # fmt: skip
    assert by_bytes.split_sizes() == by_path.split_sizes()
    assert by_bytes.mean == by_path.mean  # the same pictures, decoded the same way
    first = by_path.splits["train"].with_format("numpy")[0]
    expected = [fit_square(open_image(f), SIZE).reshape(-1) for f in files]
    assert any(np.array_equal(first["features"], e) for e in expected)
    # the digest covers the pictures a table points to, not only the table file
    Image.fromarray(picture(COLOURS["red"], seed=99)).save(files[0])
    again = TASK.prepare({"data": image_data(tmp_path, source="csv", path=str(root / "index.csv"),
                                             image_column="file", target="kind")})  # fmt: skip
    assert again.digest != by_path.digest


def test_fine_tuning_freezes_the_backbone_or_gives_it_a_smaller_learning_rate() -> None:
    import functools

    from trainpipe.tasks.images.module import ImageModule

    optimizer = functools.partial(torch.optim.AdamW, lr=0.01)
    frozen = ImageModule(spec(freeze_backbone=True), optimizer, None, ImageNet(spec()))
    (group,) = frozen.configure_optimizers().param_groups
    assert len(group["params"]) == 2  # the head's weight and bias only
    assert not frozen.model.resnet.conv1.weight.requires_grad
    scaled = ImageModule(spec(backbone_lr_scale=0.1), optimizer, None, ImageNet(spec()))
    backbone, head = scaled.configure_optimizers().param_groups
    assert backbone["lr"] == pytest.approx(0.001) and head["lr"] == 0.01
    assert len(backbone["params"]) + len(head["params"]) == len(list(scaled.parameters()))


def test_model_cnn_trains_on_pictures_and_its_package_predicts_the_same() -> None:
    """`data=images model=cnn`: the small CNN of the table task, built by the image task (its
    normalisation in front), learns the three colours; weights + spec alone rebuild it."""
    from trainpipe.config.compose import compose
    from trainpipe.config.validate import validate
    from trainpipe.tasks import check_config, get_task

    conf = validate(compose("train", ["data=images", "data.path=p", "model=cnn"]), "train")
    check_config(conf)
    model_cfg = compose("train", ["data=images", "data.path=p", "model=cnn"]).model
    task = get_task("image_classification")
    torch.manual_seed(0)
    data_spec = {k: v for k, v in spec().items() if k not in ("net", "name")}
    module = task.build_module(model_cfg, data_spec)
    assert module.spec["net"]["_target_"] == "trainpipe.tasks.tabular.nets.CNN"
    assert set(module.model.state_dict()) >= {"mean", "std", "net.head.4.weight"}
    images = (
        torch.stack(
            [
                torch.from_numpy(picture(c, seed=i, side=SIZE))
                for i in range(8)
                for c in COLOURS.values()
            ]
        )
        .permute(0, 3, 1, 2)
        .float()
        / 255
    )
    labels = torch.arange(len(COLOURS)).repeat(8)
    optimizer = module.configure_optimizers()["optimizer"]
    losses = []
    for _ in range(30):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(module.model(images), labels)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    module.model.eval()
    rebuilt = ImageNet(json.loads(json.dumps(module.spec)))  # as spec.json gives it back
    rebuilt.load_state_dict(module.model.state_dict())
    assert torch.equal(rebuilt.eval()(images), module.model(images))
    assert (module.model(images).argmax(1) == labels).float().mean() == 1.0


@pytest.mark.parametrize(
    "overrides",
    [
        ["experiment=digits_images"],
        ["experiment=cifar10_resnet18", "trainer=gpu"],
        ["data=images", "data.path=pics", "model.depth=50"],  # a ResNet unless model= says
        ["data=images", "data.source=csv", "data.path=t.csv", "model=resnet"],
    ],
)
def test_the_image_configs_compose_and_pass_the_task_rules(overrides: list[str]) -> None:
    from trainpipe.config.compose import compose
    from trainpipe.config.validate import validate
    from trainpipe.tasks import check_config, resolve_task

    conf = validate(compose("train", overrides), "train")
    check_config(conf)
    task, reason = resolve_task(conf)
    assert task.name == "image_classification" and reason == "inferred: image data"
    assert conf["model"]["name"] == "resnet"


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        (["model=mlp"], "model: model=mlp is not a model for images"),
        (["model=cnn", "+model.weights=w.pt"], "model.weights: fine-tuning from a state dict"),
        (["model=resnet", "model.freeze_backbone=true"], "needs trained weights"),
        (["model=resnet", "model.depth=20"], "model.depth: must be one of 18, 34, 50"),
        (["model=resnet", "data.crop_scale=0"], "data.crop_scale: must be a number > 0"),
    ],
)
def test_image_config_mistakes_are_config_errors(overrides: list[str], needle: str) -> None:
    from trainpipe.config.compose import compose
    from trainpipe.config.validate import validate
    from trainpipe.tasks import check_config

    with pytest.raises(ConfigError) as caught:
        check_config(
            validate(compose("train", ["data=images", "data.path=p", *overrides]), "train")
        )
    assert needle in str(caught.value)
