"""The README's two commands are what CI runs (it reads them out of README.md), and they are the
commands a newcomer needs: the main one installs the core only and ends with the local leaderboard."""
import importlib.util

from suite.environment import REPO_ROOT


def _commands():
    spec = importlib.util.spec_from_file_location("readme_command", REPO_ROOT / ".ci" / "readme_command.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.commands()


def test_ci_runs_the_readme_commands_as_written():
    cmds = _commands()
    ci = (REPO_ROOT / ".ci" / "run").read_text()
    assert "readme_command.py main" in ci
    assert cmds["tests"] in ci.splitlines(), "`.ci/run` must run the README's test command as written"
    assert "git -C \"$CLONE\" status --porcelain" in ci  # the main command must leave the tree clean
    assert "pip install -e . " in cmds["main"] + " " and "[dev]" not in cmds["main"]
    assert cmds["main"].endswith("suite run --all --scale smoke && suite leaderboard")
    assert "pytest" in cmds["tests"]


def test_kmedoids_is_a_core_dependency():
    """The main command installs the core only; every smoke claim's reference must be there."""
    import tomllib

    meta = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    assert any(d.startswith("kmedoids") for d in meta["project"]["dependencies"])
