"""The README's commands and examples stay true."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def test_ci_runs_the_readme_test_command():
    commands = [b.strip() for b in code_blocks("sh") if "pytest" in b and "pip install" in b]
    assert len(commands) == 1, commands
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert commands[0] in ci


def test_readme_main_job_command_runs_hebbbench_run():
    assert any(b.strip().endswith("&& hebbbench run") for b in code_blocks("sh"))


def test_readme_python_examples_run():
    from hebbbench import rules

    namespace: dict = {}
    try:
        for block in code_blocks("python"):
            if "hebbbench.run(" in block or "reproduce(" in block:  # whole runs: tests/test_run.py, test_reproduce*.py
                continue
            exec(compile(block, "README.md", "exec"), namespace)  # one namespace, as in a notebook
        assert ("hpca", "mine") in rules.available()
    finally:
        rules.unregister("hpca", "mine")
