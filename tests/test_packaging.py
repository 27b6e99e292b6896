"""pyproject.toml and environment.yml list the same dependencies."""

import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[ ;]", requirement.strip(), maxsplit=1)[0].lower().replace("_", "-")


def _spec(requirement: str) -> str:
    return re.sub(r"\s+", "", requirement[len(_name(requirement)):]).split(";")[0]


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = list(project["dependencies"])
    for extra in ("book", "dev"):
        wanted += project["optional-dependencies"][extra]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda, pip = [], []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            pip += [d for d in dep["pip"] if not d.startswith("-")]
        elif _name(dep) not in ("python", "pip"):
            conda.append(dep)
    have = {_name(d): _spec(re.sub(r"\[.*?\]", "", d)) for d in conda + pip}
    want = {_name(d): _spec(re.sub(r"\[.*?\]", "", d)) for d in wanted}
    assert have == want


def test_zoo_yaml_files_are_package_data():
    text = (ROOT / "pyproject.toml").read_text()
    assert '"zoos/*.yaml"' in text
