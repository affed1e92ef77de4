"""Write docs/configuration.md's option tables from the schema: every option of every group, each setting's type from
its class's constructor (vae_lab.registry), its default and its comment from the option's YAML.

`python scripts/configuration_page.py` rewrites the part of the page between its markers; tests/test_docs.py fails
when the page is stale.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.utils import get_class
from omegaconf import OmegaConf

from vae_lab.data import DATAMODULES
from vae_lab.models.base import MODELS
from vae_lab.nets import NETS
from vae_lab.registry import HYDRA_KEYS, describe, parameters

ROOT = Path(__file__).resolve().parents[1]
CONF, PAGE = ROOT / "conf", ROOT / "docs" / "configuration.md"
START, END = "<!-- options:start (scripts/configuration_page.py writes this part) -->", "<!-- options:end -->"
GROUPS = {  # group → (what it is, the registry of vae_lab's classes it names, or None: a library's)
    "model": ("the objective (`vae_lab/models/`)", MODELS),
    "net": ("encoder and decoder (`vae_lab/nets/`); `net.image_size` sets the input size, the data follows it", NETS),
    "data": ("the dataset (`vae_lab/data/`, [datasets.md](datasets.md))", DATAMODULES),
    "trainer": ("Lightning's `Trainer`; any other of its arguments with a `+` ([scaling.md](scaling.md))", None),
    "logger": ("Lightning's logger", None),
}
ENTRY_POINTS = ("evaluate", "generate", "report", "explore")
KEY = re.compile(r"^(\s*)([\w.]+):\s*(.*?)\s*(?:#\s*(.*))?$")


def yaml_comments(path: Path) -> dict[str, str]:
    """Dotted key → the comment on its line (or on the indented lines below it) in a YAML file."""
    comments: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    last = None
    for line in path.read_text().splitlines():
        match = KEY.match(line)
        if not match or line.lstrip().startswith(("#", "-")):
            if last and line.strip().startswith("#") and comments.get(last) and line.startswith(" " * 20):
                comments[last] += " " + line.strip().lstrip("#").strip()
            continue
        indent, key, _, comment = match.groups()
        while stack and stack[-1][0] >= len(indent):
            stack.pop()
        dotted = ".".join([*(k for _, k in stack), key])
        stack.append((len(indent), key))
        comments[dotted], last = (comment or "").strip(), dotted
    return comments


def parents(path: Path) -> list[Path]:
    """An option's file and the files of its own group it lists in `defaults` (`- vae`), nearest first."""
    found = [path]
    for name in re.findall(r"^\s*-\s*(\w+)\s*$", path.read_text(), re.MULTILINE):
        if name != "_self_" and (path.parent / f"{name}.yaml").is_file():
            found += parents(path.parent / f"{name}.yaml")
    return found


def comment(paths: list[Path], key: str) -> str:
    """The first comment on `key` in an option's files."""
    for path in paths:
        text = yaml_comments(path).get(key)
        if text:
            return escape(text)
    return ""


def cell(value: Any) -> str:
    """A default as the page shows it (YAML's spelling)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, (dict, list)):
        value = OmegaConf.to_yaml(value).strip().replace("\n", " ") if isinstance(value, dict) else \
            "[" + ", ".join(str(v) for v in value) + "]"
    return escape(f"`{value}`")


def escape(text: str) -> str:
    """Text safe inside a Markdown table cell."""
    return text.replace("|", "\\|")


def summary(path: Path) -> str:
    """The first sentence of a config file's opening comment."""
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        if "@package" not in line:
            lines.append(line.lstrip("#").strip())
    text = " ".join(lines)
    return escape(text.split(". ")[0].rstrip(".") + "." if text else "")


def composed(group: str, option: str) -> dict[str, Any]:
    """A group option's settings as `train` composes them (unresolved: interpolations shown as written)."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=[f"{group}={option}"])
    return OmegaConf.to_container(cfg[group], resolve=False)


def types_of(target: str | None, registry: Any) -> dict[str, str]:
    """Each constructor parameter's type in words, for the class a `_target_` names."""
    if not target:
        return {}
    cls = registry.get(target, "_target_") if registry is not None else get_class(target)
    return {name: describe(hint) for name, (_, hint) in parameters(cls)[0].items()}


def group_section(group: str) -> list[str]:
    """One table for the group's default option, then per other option the settings it adds or changes."""
    what, registry = GROUPS[group]
    options = sorted(p.stem for p in (CONF / group).glob("*.yaml"))
    default = re.search(rf"^\s*-\s*{group}:\s*(\w+)", (CONF / "train.yaml").read_text(), re.MULTILINE).group(1)
    lines = [f"## `{group}`: {what}", "", f"Options: {', '.join(f'`{o}`' for o in options)} (default `{default}`).", ""]
    base = composed(group, default)
    for option in [default, *(o for o in options if o != default)]:
        settings = composed(group, option)
        types = types_of(settings.get("_target_"), registry)
        paths = parents(CONF / group / f"{option}.yaml")
        shown = {k: v for k, v in settings.items() if k not in HYDRA_KEYS
                 and (option == default or k not in base or base[k] != v)}
        target = settings.get("_target_", "")
        head = f"`{group}={option}`" + (f" (`{target}`)" if target else "")
        first = summary(paths[0])
        lines += [f"**{head}**" + (f": {first}" if first else ""), ""]
        if shown:
            lines += ["| field | default | type | what |", "|---|---|---|---|"]
            lines += [f"| `{k}` | {cell(v)} | {types.get(k, '')} | {comment(paths, k)} |" for k, v in shown.items()]
        else:
            lines.append(f"The settings of `{group}={default}`.")
        lines.append("")
    return lines


def flat_section(title: str, path: Path, skip: tuple[str, ...] = ("defaults", "hydra")) -> list[str]:
    """A config file's own keys with their defaults and comments."""
    values = OmegaConf.to_container(OmegaConf.load(path), resolve=False)
    comments = yaml_comments(path)
    rows = [(k, v) for k, v in flatten(values) if not k.startswith(skip)]
    lines = [title, "", "| field | default | what |", "|---|---|---|"]
    return lines + [f"| `{k}` | {cell(v)} | {escape(comments.get(k, ''))} |" for k, v in rows] + [""]


def flatten(tree: dict[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted key, value) of a config's leaves (lists kept whole)."""
    out = []
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        out += flatten(value, dotted + ".") if isinstance(value, dict) and value else [(dotted, value)]
    return out


def listing(group: str, title: str) -> list[str]:
    """A group whose options are prepared set-ups: each with the first line of its file's comment."""
    lines = [title, "", "| option | what |", "|---|---|"]
    for path in sorted((CONF / group).glob("*.yaml")):
        lines.append(f"| `{path.stem}` | {summary(path)} |")
    return lines + [""]


def callbacks_section() -> list[str]:
    """Each callback of `callbacks=default` with its settings."""
    cfg = OmegaConf.to_container(OmegaConf.load(CONF / "callbacks" / "default.yaml"), resolve=False)
    comments = yaml_comments(CONF / "callbacks" / "default.yaml")
    lines = ["## `callbacks`: `callbacks=default`; remove one with `~callbacks.NAME`", "",
             "| callback | class | settings | what |", "|---|---|---|---|"]
    for name, node in cfg.items():
        settings = ", ".join(f"`{k}`={cell(v)}" for k, v in node.items() if k != "_target_")
        lines.append(f"| `{name}` | `{node['_target_']}` | {settings} | {escape(comments.get(name, ''))} |")
    return lines + [""]


def generated() -> str:
    """The page's generated part."""
    lines = flat_section("## Top level (`conf/train.yaml`)", CONF / "train.yaml")
    for group in GROUPS:
        lines += group_section(group)
    lines += callbacks_section()
    lines += listing("experiment", "## `experiment`: prepared sweeps (`-m +experiment=NAME`)")
    lines += listing("arm", "## `arm`: one model with its net and settings as the sweeps run it (`+arm=NAME`)")
    lines += listing("hydra/launcher", "## `hydra/launcher` ([scaling.md](scaling.md))")
    for name in ENTRY_POINTS:
        if (CONF / f"{name}.yaml").is_file():
            lines += flat_section(f"## `python -m vae_lab.{name}` (`conf/{name}.yaml`)", CONF / f"{name}.yaml")
    return "\n".join([START, "", *lines, END])


def page_text(current: str) -> str:
    """The page with its generated part replaced (appended when the markers are missing)."""
    if START in current and END in current:
        head, rest = current.split(START, 1)
        return head + generated() + rest.split(END, 1)[1]
    return current.rstrip("\n") + "\n\n" + generated() + "\n"


if __name__ == "__main__":
    PAGE.write_text(page_text(PAGE.read_text()))
    print(f"wrote {PAGE.relative_to(ROOT)}", file=sys.stderr)
