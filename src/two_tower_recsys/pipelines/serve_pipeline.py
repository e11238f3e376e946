"""``two-tower serve``: serve the packaged model with MLflow's scoring server, from any directory.

``mlflow models serve -m <package> --env-manager local`` runs ``uvicorn`` *by name*, so it fails
unless the virtualenv's ``bin/`` is on ``PATH``. This command builds the same server without that
assumption: MLflow's own environment for it (``scoring_server.get_cmd``: model path, request
timeout), then uvicorn's command line with this interpreter (``serving/two_tower_uvicorn.py``:
``python -m uvicorn`` that keeps ``TCP_NODELAY`` with several workers), serving MLflow's scoring
app wrapped in :class:`~two_tower_recsys.serving.two_tower_asgi.ScoringGuard` (clean 4xx for
bodies MLflow answers with a traceback or a bare 500). The process becomes the server (``exec``),
so signals and exit status are uvicorn's.

Before starting, a problem is one line and exit status 2: no package at ``serve.model``, a package
whose index fails its manifest, a default package older than the index in ``paths.artifacts_dir``
(re-run ``two-tower package-mlflow``), or a port that is taken.
"""

from __future__ import annotations

import errno
import os
import socket
import sys
from pathlib import Path

from two_tower_recsys.errors import ArtifactError, ConfigError
from two_tower_recsys.pipelines.hydra_edge import hydra_entry
from two_tower_recsys.settings import AppConfig, ServeConfig

APP_DIR = Path(__file__).resolve().parents[1] / "serving"
APP_FACTORY = "two_tower_asgi:create_app"
# uvicorn's command line, with TCP_NODELAY kept under --workers N (see two_tower_uvicorn.py)
LAUNCHER = APP_DIR / "two_tower_uvicorn.py"
PACKAGED_INDEX = Path("artifacts") / "index"  # inference.pyfunc_model.INDEX_ARTIFACT, as saved by MLflow


def resolve_model(model: str, tracking_uri: str) -> Path:
    """A local package directory for ``serve.model``: the directory itself, or a download of a URI."""
    if "://" in model or model.startswith(("models:/", "runs:/")):
        import mlflow
        from mlflow.exceptions import MlflowException

        # $MLFLOW_TRACKING_URI, where set, wins over the configured one, as everywhere in MLflow.
        # (The registry follows the tracking URI unless $MLFLOW_REGISTRY_URI says otherwise.)
        mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI") or tracking_uri)
        try:
            return Path(mlflow.artifacts.download_artifacts(artifact_uri=model))
        except MlflowException as exc:
            raise ArtifactError(f"cannot fetch serve.model={model}: {exc.message}".splitlines()[0]) from None
    path = Path(model)
    if not (path / "MLmodel").is_file():
        raise ArtifactError(
            f"no MLflow model at {path} (no MLmodel file); run `two-tower package-mlflow` first, "
            "or point serve.model at a package directory or a models:/ URI"
        )
    return path


def check_package(package: Path, artifacts_dir: Path | None) -> dict:
    """The manifest of the package's index copy; an ArtifactError if it is damaged or stale.

    ``artifacts_dir``: the trained index the package should have been made from (checked when
    the default package is served): if its files differ from the package's copy, the model was
    retrained after packaging and serving would answer with the old one.
    """
    from two_tower_recsys.artifacts.store import index_id, refuse_if_stale, verified_manifest
    from two_tower_recsys.utils.fileio import MANIFEST_NAME

    index = package / PACKAGED_INDEX
    if not (index / MANIFEST_NAME).is_file():
        raise ArtifactError(f"{package} is not a two-tower package (no {PACKAGED_INDEX}/{MANIFEST_NAME})")
    try:
        packaged = verified_manifest(index)
    except ArtifactError as exc:
        raise ArtifactError(
            f"the package at {package} is damaged: {exc}; run `two-tower package-mlflow`"
        ) from None
    if artifacts_dir is not None:
        refuse_if_stale(package, index_id(packaged), Path(artifacts_dir), "two-tower package-mlflow")
    return packaged


def check_port_free(host: str, port: int) -> None:
    """Bind ``host:port`` as uvicorn will (SO_REUSEADDR), so a taken port is one line, not a traceback."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind(address)
    except socket.gaierror as exc:
        raise ConfigError(f"serve.host={host} cannot be resolved: {exc.strerror}") from None
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise ConfigError(
                f"port {port} on {host} is already in use; stop what listens there or pick another "
                "with serve.port=<port>"
            ) from None
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None


def server_command(package: Path, serve: ServeConfig) -> tuple[list[str], dict[str, str]]:
    """argv and environment of the server: MLflow's environment, uvicorn run by this interpreter."""
    from mlflow.pyfunc import scoring_server

    _, env = scoring_server.get_cmd(str(package.resolve()), serve.port, serve.host, None, serve.workers)
    # torch reads these when it is imported, in each worker.
    env.update(OMP_NUM_THREADS=str(serve.torch_threads), MKL_NUM_THREADS=str(serve.torch_threads))
    # glibc gives each thread of the request pool its own malloc arena (up to 8 per core), and
    # each arena keeps the high-water mark of the big answers it once built; two bound that.
    env.setdefault("MALLOC_ARENA_MAX", "2")
    # Anything else the server starts by name finds this environment's tools first.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    argv = [sys.executable, str(LAUNCHER), "--host", serve.host, "--port", str(serve.port)]
    argv += ["--workers", str(serve.workers), "--app-dir", str(APP_DIR), "--factory", APP_FACTORY]
    return argv, env


def run(settings: AppConfig) -> None:
    serve = settings.serve
    package = resolve_model(serve.model, settings.logging.mlflow.tracking_uri)
    default_package = Path(serve.model).resolve() == Path(settings.paths.mlflow_model_dir).resolve()
    manifest = check_package(package, settings.paths.artifacts_dir if default_package else None)
    check_port_free(serve.host, serve.port)
    argv, env = server_command(package, serve)
    print(
        f"serving {package} ({manifest.get('n_users')} users x {manifest.get('n_items')} movies) at "
        f"http://{serve.host}:{serve.port}/invocations with {serve.workers} worker(s), "
        f"{serve.torch_threads} torch thread(s) each; the same model serves with: mlflow models serve "
        f"-m {package} -p {serve.port} --host {serve.host} --env-manager local",
        file=sys.stderr,
        flush=True,
    )
    sys.stdout.flush()
    os.execve(sys.executable, argv, env)


main = hydra_entry(run)

if __name__ == "__main__":
    main()
