"""`trainpipe generate model_uri=… prompt="…" [max_new_tokens=64 temperature=0.8 …]`: print
continuations of a prompt by a trained language model (configs/generate.yaml lists the keys)."""

from __future__ import annotations

from trainpipe.commands import EXPECTED_FAILURES, failure_exit


def main(args: list[str]) -> int:
    from omegaconf import open_dict

    from trainpipe.config.compose import compose
    from trainpipe.config.validate import validate

    if args and args[0] in ("-h", "--help"):
        print(__doc__)
        return 0
    # the prompt is taken as typed: text such as `def main(` is not Hydra override syntax
    prompts = [a.partition("=")[2] for a in args if a.startswith("prompt=")]
    try:
        cfg = compose("generate", [a for a in args if not a.startswith("prompt=")])
        with open_dict(cfg):
            cfg.prompt = prompts[-1] if prompts else cfg.prompt
        conf = validate(cfg, "generate")
        texts = generate(conf)
    except EXPECTED_FAILURES as err:
        return failure_exit(err)
    for i, text in enumerate(texts):
        if len(texts) > 1:
            print(f"--- sample {i + 1}")
        print(conf["prompt"] + text)
    return 0


def generate(conf: dict) -> list[str]:
    import torch

    from trainpipe.errors import ConfigError
    from trainpipe.loading import load_model
    from trainpipe.tasks import get_task
    from trainpipe.tasks.base import GENERATE

    predictor, _ = load_model(conf["model_uri"], conf["tracking_uri"])
    task = get_task(predictor.spec["task"])
    if GENERATE not in task.capabilities:
        raise ConfigError(
            "model_uri",
            f"{conf['model_uri']!r} is a {task.name} model, not a language model",
        )
    device = (
        conf["device"]
        if conf["device"] != "auto"
        else ("cuda" if torch.cuda.is_available() else "cpu")
    )
    predictor.model.to(device)
    options = {k: conf[k] for k in ("max_new_tokens", "temperature", "top_k")}
    return [
        predictor.continue_text(
            conf["prompt"], seed=conf["seed"] + i if conf["seed"] >= 0 else -1, **options
        )
        for i in range(conf["num_samples"])
    ]
