"""Compose the config the way `hydra.main` will, before any job starts (the pre-flight check).

Hydra creates the job's output dir before calling the task, so config mistakes are caught here
first: a bad config leaves nothing behind.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from trainpipe.config.locate import config_dir
from trainpipe.errors import ConfigError


def split_sweeps(overrides: list[str]) -> tuple[list[str], list[str]]:
    """(plain overrides, keys of sweep overrides) of a --multirun command line (`a=1,2`, `x=interval(…)`)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    kept, swept = [], []
    for text in overrides:
        parsed = parser.parse_overrides([text])[0]
        if parsed.is_sweep_override():
            swept.append(parsed.key_or_group)
        else:
            kept.append(text)
    return kept, swept


def varied_by_sweep(key: str, swept: list[str]) -> bool:
    """Whether a config key lies in a part of the config the sweep changes (so each job checks it)."""
    for sweep_key in swept:
        parent = sweep_key.rpartition(".")[0]
        if (
            key == sweep_key
            or key.startswith(sweep_key + ".")
            or (parent and key.startswith(parent + "."))
        ):
            return True
    return False


def compose(entry: str, overrides: list[str], extra_config_dir: str | None = None) -> DictConfig:
    """The composed config (with Hydra's node) for `trainpipe <entry> <overrides>`; errors → ConfigError."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    if extra_config_dir:
        overrides = [*overrides, f"hydra.searchpath=[file://{Path(extra_config_dir).resolve()}]"]
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(
            config_dir=str(config_dir()), version_base="1.3", job_name=entry
        ):
            return hydra_compose(config_name=entry, overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException, ValueError) as err:
        raise _config_error(entry, err) from None
    finally:
        GlobalHydra.instance().clear()


def output_dir(cfg: DictConfig) -> Path:
    """The output dir a single run of this config will use."""
    return Path(str(OmegaConf.select(cfg, "hydra.run.dir")))


NOT_IN_STRUCT = re.compile(r"Could not override '([\w.]+)'.*is not in struct", re.DOTALL)
MISSING_OPTION = re.compile(
    r"Could not find '([\w/]+)/(\w[\w.-]*)'.*?Available options in '[\w/]+':\s*(.*?)(?:\n\s*\n|Config search path|$)",
    re.DOTALL,
)


def _config_error(entry: str, err: Exception) -> ConfigError:
    """Hydra's composition errors in trainpipe's words: the key, and what was probably meant."""
    text = f"{err}: {err.__cause__}" if err.__cause__ else str(err)
    if match := NOT_IN_STRUCT.search(text):  # `trainer.max_epoch=3`: a key no config declares
        from trainpipe.config.schema import load_schema
        from trainpipe.config.validate import unknown_key

        return unknown_key(match.group(1), load_schema(entry)) or ConfigError(
            match.group(1), "unknown key"
        )
    if match := MISSING_OPTION.search(text):  # `model=mpl`: an option the group does not have
        group, option = match.group(1).replace("/", "."), match.group(2)
        options = match.group(3).split()
        hint = difflib.get_close_matches(option, options, n=1)
        suggestion = f"; did you mean `{match.group(1)}={hint[0]}`?" if hint else ""
        return ConfigError(
            group, f"unknown option {option!r}{suggestion} (options: {', '.join(options)})"
        )
    return ConfigError("", _one_message(err))


def _one_message(err: Exception) -> str:
    text = str(err).strip()
    cause = err.__cause__
    if cause is not None and str(cause).strip() and str(cause).strip() not in text:
        text = f"{text}: {str(cause).strip()}"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    # Hydra lists the available options on following lines; keep them on one line
    return " ".join(lines).replace("Available options in", "— available options in")
