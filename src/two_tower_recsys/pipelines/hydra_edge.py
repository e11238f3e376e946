"""The edge between Hydra and the library: compose YAML, convert it to typed settings, report errors.

Every pipeline's ``main`` is ``hydra_entry(task)``: Hydra parses the command-line overrides
(unknown keys are Hydra errors), the composed config becomes an :class:`AppConfig`, and a
:class:`RecsysError` raised anywhere below ends the process with one line on stderr and exit
status 2 instead of a traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from two_tower_recsys.errors import ConfigError, RecsysError
from two_tower_recsys.settings import AppConfig, settings_from_mapping
from two_tower_recsys.utils.allocator import keep_freed_memory_for_reuse

CONFIG_NAME = "config"
EXIT_USER_ERROR = 2


def config_dir() -> Path:
    """The Hydra config directory: inside the installed wheel, else the repository's ``configs/``."""
    packaged = Path(__file__).resolve().parents[1] / "configs"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "configs"


def settings_from_hydra(cfg: DictConfig) -> AppConfig:
    try:
        plain = OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as exc:
        raise ConfigError(f"config could not be resolved: {exc}".splitlines()[0]) from None
    plain.pop("hydra", None)
    return settings_from_mapping(AppConfig, plain)


def compose_settings(overrides: Sequence[str] = ()) -> AppConfig:
    """Compose the real config with ``overrides`` outside a Hydra run (tests, notebooks)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        cfg = compose(config_name=CONFIG_NAME, overrides=list(overrides))
    return settings_from_hydra(cfg)


def report_user_errors(task: Callable[[], int | None]) -> int:
    """Run ``task``; turn a :class:`RecsysError` into one line on stderr and exit status 2."""
    try:
        return task() or 0
    except RecsysError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def hydra_entry(task: Callable[[AppConfig], int | None]) -> Callable[[], None]:
    """Wrap ``task(settings)`` as a Hydra command-line entry point."""
    import hydra

    @hydra.main(config_path=str(config_dir()), config_name=CONFIG_NAME, version_base="1.3")
    def _run(cfg: DictConfig) -> None:
        keep_freed_memory_for_reuse()  # every command allocates large score/logit matrices in loops
        status = report_user_errors(lambda: task(settings_from_hydra(cfg)))
        if status:
            sys.exit(status)

    @functools.wraps(task)
    def main() -> None:
        _run()

    return main
