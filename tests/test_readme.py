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
    with rules.scoped():  # the README registers ("hpca", "mine"): for this test only
        for block in code_blocks("python"):
            if "hebbbench.run(" in block or "reproduce(" in block:  # whole runs: tests/test_run.py, test_reproduce*.py
                continue
            if "init_from_env(" in block:  # needs torchrun: test_readme_torchrun_example_trains_on_two_cpu_ranks
                continue
            exec(compile(block, "README.md", "exec"), namespace)  # one namespace, as in a notebook
        assert ("hpca", "mine") in rules.available()
    assert ("hpca", "mine") not in rules.available()


def test_readme_torchrun_example_trains_on_two_cpu_ranks(tmp_path):
    """The data-parallel example, as written but on CPU ranks (gloo), started by torchrun with 2 processes."""
    import os
    import subprocess
    import sys

    (block,) = [b for b in code_blocks("python") if "init_from_env(" in b]
    assert 'init_from_env("cuda")' in block
    script = tmp_path / "train.py"
    script.write_text("import torch\n"
                      "batches = [torch.randn(16, 3, 32, 32) for _ in range(2)]\n"
                      + block.replace('init_from_env("cuda")', 'init_from_env("cpu")')
                      + "assert dp.weights_identical()\n"
                      "open(f'rank{info.rank}.done', 'w').write(f'{info.rank} of {info.world_size}')\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           str(script)], capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    # one file per rank: the ranks share one stdout pipe, so their prints can interleave
    assert sorted(p.read_text() for p in tmp_path.glob("rank*.done")) == ["0 of 2", "1 of 2"]


def test_readme_links_to_committed_results_and_reports_exist():
    links = re.findall(r"\]\(((?:reports|results)/[^)]+)\)", README)
    assert links, "the README shows the committed reports"
    assert [link for link in links if not (ROOT / link).exists()] == []
    for report in {Path(link).parts[1] for link in links if link.startswith("reports/")}:
        assert (ROOT / "results" / report).is_dir(), f"reports/{report} has no result set"
