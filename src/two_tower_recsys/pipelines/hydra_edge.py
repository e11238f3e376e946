"""The edge between Hydra and the library: compose YAML, convert it to typed settings, report errors.

Importing this module registers the settings dataclasses in Hydra's ConfigStore: ``AppConfig`` as
the schema of the primary config and each of its sections as the schema ``_schema`` of its group,
which the group's YAML files list first in their ``defaults``. Hydra then composes onto the
dataclasses' defaults and OmegaConf rejects unknown keys and wrong types.

Every pipeline's ``main`` is ``hydra_entry(task)``: Hydra parses the command-line overrides, the
composed config becomes an :class:`AppConfig`, and a bad key or value (found while composing) or a
:class:`RecsysError` raised anywhere below ends the process with one line on stderr and exit
status 2 instead of a traceback.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
import typing
from collections.abc import Callable, Sequence
from pathlib import Path, PurePath

from hydra.core.config_store import ConfigStore
from hydra.errors import HydraException
from omegaconf import DictConfig, OmegaConf
from omegaconf._utils import get_omega_conf_dumper
from omegaconf.errors import OmegaConfBaseException

from two_tower_recsys.errors import ConfigError, RecsysError
from two_tower_recsys.settings import AppConfig, config_error, schema
from two_tower_recsys.utils.allocator import keep_freed_memory_for_reuse

CONFIG_NAME = "config"
PRIMARY_SCHEMA = "_config_schema"  # listed first in configs/config.yaml's defaults
GROUP_SCHEMA = "_schema"  # listed first in the defaults of every configs/<group>/*.yaml
EXIT_USER_ERROR = 2
# Set, Hydra raises composition errors instead of printing them (and exiting with status 1).
HYDRA_FULL_ERROR = "HYDRA_FULL_ERROR"


def schema_groups() -> dict[str, type]:
    """Config group -> the dataclass of its section in :class:`AppConfig`."""
    hints = typing.get_type_hints(AppConfig)
    return {
        spec.name: hints[spec.name]
        for spec in dataclasses.fields(AppConfig)
        if dataclasses.is_dataclass(hints[spec.name])
    }


def register_schemas() -> None:
    store = ConfigStore.instance()
    store.store(name=PRIMARY_SCHEMA, node=schema(AppConfig))
    for group, settings_class in schema_groups().items():
        store.store(group=group, name=GROUP_SCHEMA, node=schema(settings_class))


def _print_paths_as_strings() -> None:
    """``--cfg job`` prints the schema's Path defaults as the strings they are, not as
    ``!!python/object/apply:pathlib.PosixPath`` (OmegaConf 2.3's YAML writer has no Path form)."""
    dumper = get_omega_conf_dumper()
    dumper.add_multi_representer(PurePath, lambda writer, path: writer.represent_str(str(path)))


# On import: every entry point (the CLI, python -m, compose_settings) comes through this module.
register_schemas()
_print_paths_as_strings()


def config_dir() -> Path:
    """The Hydra config directory: inside the installed wheel, else the repository's ``configs/``."""
    packaged = Path(__file__).resolve().parents[1] / "configs"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parents[3] / "configs"


def settings_from_hydra(cfg: DictConfig) -> AppConfig:
    """The composed config (typed by the schema) as frozen settings: interpolations resolved,
    missing values and the dataclasses' own checks reported as a :class:`ConfigError`."""
    try:
        # Its plain values merged into a fresh schema: a key added with +key=value (which Hydra
        # lets through) is refused like any other unknown key. Interpolations resolve here.
        settings = OmegaConf.to_object(OmegaConf.merge(schema(AppConfig), OmegaConf.to_container(cfg)))
    except OmegaConfBaseException as exc:
        raise config_error(exc) from None
    if not isinstance(settings, AppConfig):  # a bug: configs/config.yaml lost its schema
        raise TypeError(f"the composed config is a {type(settings).__name__}, not an AppConfig")
    return settings


def composition_error(exc: Exception) -> ConfigError:
    """A Hydra or OmegaConf error raised while composing, as one line naming the key."""
    cause = exc if isinstance(exc, OmegaConfBaseException) else exc.__cause__
    if isinstance(cause, OmegaConfBaseException):
        return config_error(cause)
    # e.g. "Could not find 'data/ml-99m'" and the options (not the schema), without Hydra's search path
    message = str(exc).split("\nConfig search path")[0]
    return ConfigError(" ".join(word for word in message.split() if word != GROUP_SCHEMA))


def compose_settings(overrides: Sequence[str] = ()) -> AppConfig:
    """Compose the real config with ``overrides`` outside a Hydra run (tests, notebooks)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(config_dir()), version_base="1.3"):
        try:
            cfg = compose(config_name=CONFIG_NAME, overrides=list(overrides))
        except (HydraException, OmegaConfBaseException) as exc:
            raise composition_error(exc) from None
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

    raising = _CompositionErrorsRaised()

    @hydra.main(config_path=str(config_dir()), config_name=CONFIG_NAME, version_base="1.3")
    def _run(cfg: DictConfig) -> None:
        raising.stop()  # composed: what the task raises is reported as before
        keep_freed_memory_for_reuse()  # every command allocates large score/logit matrices in loops
        status = report_user_errors(lambda: task(settings_from_hydra(cfg)))
        if status:
            sys.exit(status)

    @functools.wraps(task)
    def main() -> None:
        if os.environ.get(HYDRA_FULL_ERROR):  # the user asked for Hydra's own, complete report
            _run()
            return
        try:
            with raising:
                _run()
        except (HydraException, OmegaConfBaseException) as exc:
            print(f"error: {composition_error(exc)}", file=sys.stderr)
            sys.exit(EXIT_USER_ERROR)

    return main


class _CompositionErrorsRaised:
    """While Hydra composes, HYDRA_FULL_ERROR=1 makes it raise what it finds wrong with the command
    line or the config (instead of printing it and exiting with status 1), for :func:`hydra_entry`
    to report in one line. Unset again before the task runs: its subprocesses never see it."""

    def __init__(self) -> None:
        self._set = False

    def __enter__(self) -> None:
        os.environ[HYDRA_FULL_ERROR] = "1"
        self._set = True

    def stop(self) -> None:
        if self._set:
            os.environ.pop(HYDRA_FULL_ERROR, None)
            self._set = False

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
