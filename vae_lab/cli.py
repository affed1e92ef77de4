"""What every entry point shares: turning user mistakes into one clear line and a non-zero exit."""

import functools
import logging
import os
import sys
import tempfile
import threading
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hydra
from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from vae_lab.errors import ConfigError, user_error

# Library notices a vae_lab user cannot act on (vae_lab's own choices trigger them), silenced one by one: any
# other warning still shows.
LIBRARY_NOISE: tuple[tuple[str, type[Warning]], ...] = (
    (r"Precision bf16-mixed is not supported by the model summary", UserWarning),  # the summary counts fp32 sizes
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),  # Lightning's own use of torch's pytree
    (r"You have overridden `on_after_batch_transfer` in `LightningModule`", UserWarning),  # by design (base.py)
)
LIGHTNING_LOGS = ("pytorch_lightning.utilities.rank_zero", "lightning_fabric.utilities.rank_zero")


def _not_an_advert(record: logging.LogRecord) -> bool:
    """Drop Lightning's tip to install its cloud logger."""
    return not str(record.msg).startswith("💡 Tip")


def quiet_console() -> None:
    """Silence the library notices in LIBRARY_NOISE and Lightning's advert, precisely, by message and category."""
    for message, category in LIBRARY_NOISE:
        warnings.filterwarnings("ignore", message=message, category=category)
    for name in LIGHTNING_LOGS:
        logger = logging.getLogger(name)
        if _not_an_advert not in logger.filters:
            logger.addFilter(_not_an_advert)
    if threading.excepthook is not _quiet_event_writer:
        _quiet_event_writer.default = threading.excepthook  # type: ignore[attr-defined]
        threading.excepthook = _quiet_event_writer


def _quiet_event_writer(args: threading.ExceptHookArgs) -> None:
    """Drop the TensorBoard writer thread's copy of an OSError the main thread reports; show any other."""
    if not (isinstance(args.exc_value, OSError) and type(args.thread).__name__ == "_AsyncWriterThread"):
        _quiet_event_writer.default(args)  # type: ignore[attr-defined]


@contextmanager
def lightning_quiet() -> Iterator[None]:
    """Lightning's per-`fit` notices off for a while: a pass of many short fits would print them each time."""
    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def entry_point(config_name: str) -> Callable[[Callable[[DictConfig], Any]], Callable[[], Any]]:
    """`hydra.main` on conf/CONFIG_NAME.yaml, with Hydra's refusals of a command line as one `error:` line, exit 2."""
    def decorate(task: Callable[[DictConfig], Any]) -> Callable[[], Any]:
        users: str | None = None  # the user's own HYDRA_FULL_ERROR

        @functools.wraps(task)
        def job(cfg: DictConfig) -> Any:
            try:
                with user_errors():
                    return task(cfg)
            except BaseException:
                _set_full_error(users)
                raise

        main = hydra.main(version_base="1.3", config_path="../conf", config_name=config_name)(job)

        @functools.wraps(task)
        def run() -> Any:
            nonlocal users
            users = os.environ.get("HYDRA_FULL_ERROR")
            if users == "1":
                return main()
            _set_full_error("1")  # Hydra then raises its refusals (else it prints them, several lines)
            try:
                return main()
            except (ConfigCompositionException, OverrideParseException) as err:
                print(f"error: {hydra_refusal(err)}", file=sys.stderr)
                sys.exit(2)
            finally:
                _set_full_error(users)
        return run
    return decorate


def _set_full_error(value: str | None) -> None:
    """HYDRA_FULL_ERROR as `value` (None: unset)."""
    if value is None:
        os.environ.pop("HYDRA_FULL_ERROR", None)
    else:
        os.environ["HYDRA_FULL_ERROR"] = value


def hydra_refusal(err: ConfigCompositionException | OverrideParseException) -> str:
    """Hydra's refusal of a command line in one line: what it refused, why, and what to do."""
    if isinstance(err, OverrideParseException):
        return f"{err.override}: not an override Hydra can read ({err.message.splitlines()[0]}; " \
               "https://hydra.cc/docs/advanced/override_grammar/basic)"
    lines = [line.strip() for line in str(err).split("Config search path:")[0].splitlines() if line.strip()]
    if isinstance(err, MissingConfigException) and err.options:
        return f"{lines[0]}; choose one of {', '.join(err.options)}"
    cause = err.__cause__
    why = f" ({str(cause).splitlines()[0]})" if isinstance(cause, OmegaConfBaseException) and str(cause) else ""
    return " ".join([lines[0].rstrip(".") + why + ".", *lines[1:]]) if lines else f"{type(err).__name__}{why}"


@contextmanager
def user_errors() -> Iterator[None]:
    """Library noise off; a VaeLabError as one `error:` line (exit 2), Ctrl+C as one line (exit 130); bugs raise."""
    quiet_console()
    try:
        yield
    except KeyboardInterrupt:  # every result file is written whole or not at all: nothing to clean up
        print("error: interrupted (Ctrl+C)", file=sys.stderr)
        to_log_files("error: interrupted (Ctrl+C)")
        sys.exit(130)
    except Exception as err:
        cause = user_error(err)
        if cause is None:
            raise
        print(f"error: {cause}", file=sys.stderr)
        to_log_files(f"error: {cause}")
        sys.exit(2)


def to_log_files(message: str) -> None:
    """Write a line to the log files Hydra's job logging opened (a run's train.log), not again to the console."""
    record = logging.LogRecord("vae_lab", logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def require(cfg: DictConfig, key: str, example: str) -> None:
    """A one-line error for a mandatory option left out (Hydra's `???`), with an example of it."""
    if OmegaConf.is_missing(cfg, key):
        raise ConfigError(f"give {key}, e.g. {key}={example}")


def output_folder(key: str, path: str | Path) -> Path:
    """Make an output file's folder and check it can be written there, before any long work."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ConfigError(f"{key}={path}: cannot write there ({err.strerror}: {err.filename})") from err
    if path.is_dir():
        raise ConfigError(f"{key}={path}: is a folder; give a file name")
    writable(f"{key}={path}", path.parent)
    if path.exists() and not os.access(path, os.W_OK):
        raise ConfigError(f"{key}={path}: the file is read-only")
    return path


def writable(what: str, folder: Path) -> None:
    """Create and remove a file in `folder` (the one test a read-only mount or a root user cannot fool)."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".write-test-"):
            pass
    except OSError as err:
        raise ConfigError(f"{what}: cannot write in {folder} ({err.strerror})") from err


def creatable(key: str, folder: Path) -> None:
    """A folder that exists and can be written in, or whose nearest existing parent is a folder that can."""
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{key}={folder}: {existing} is a file, not a folder")
    writable(f"{key}={folder}", existing)


HEADLINE = {  # metrics.json key → how the run summary names it, in this order (those a run has)
    "test/nelbo": "−ELBO", "test/nll_iwae": "NLL (IWAE)", "test/fid": "FID", "test/cond_accuracy": "cond acc",
    "test/probe_accuracy": "probe acc", "test/mig": "MIG", "test/dci_disentanglement": "DCI-D",
}


def run_summary(record: dict, run_dir: str | Path) -> str:
    """The lines a finished run ends with: where it is, its headline test metrics, how to look at it."""
    run_dir = Path(run_dir)
    if run_dir.is_absolute() and run_dir.is_relative_to(Path.cwd()):
        run_dir = run_dir.relative_to(Path.cwd())
    train_s = record.get("time/train_seconds")
    took = f", {train_s:.0f} s of training" if isinstance(train_s, (int, float)) else ""
    metrics = " · ".join(f"{name} {record[key]:.4g}" for key, name in HEADLINE.items()
                         if isinstance(record.get(key), (int, float)))
    epochs = record.get("epochs", "?")
    lines = [f"run {run_dir}: {record.get('status', '?')}, {epochs} epoch{'' if epochs == 1 else 's'}{took}"]
    if metrics:
        lines.append(f"  test: {metrics}  (all in {run_dir / 'metrics.json'})")
    lines.append(f"  look: tensorboard --logdir {run_dir / 'tensorboard'} --host 127.0.0.1")
    return "\n".join(lines)


HYDRA_VALUE_FLAGS = {"-cn", "--config-name", "-cp", "--config-path", "-cd", "--config-dir", "--experimental-rerun"}


def positional_dirs(argv: list[str]) -> list[str]:
    """Turn `DIR [DIR ...]` (arguments with no `=` that are not flags) into Hydra's `dirs=[...]` override."""
    dirs, rest = [], []
    for i, arg in enumerate(argv):
        is_value = i > 0 and argv[i - 1] in HYDRA_VALUE_FLAGS
        (rest if "=" in arg or arg.startswith("-") or is_value else dirs).append(arg)
    if not dirs:
        return argv
    return rest + ["dirs=[" + ",".join("'" + d.replace("'", "\\'") + "'" for d in dirs) + "]"]
