"""fh-triton: the fused kernel against the float64 reference, run by Triton's CPU interpreter.

The kernel is CUDA-only (the generated equivalence tests skip it here); Triton's interpreter
(TRITON_INTERPRET=1, read when triton is imported, hence a subprocess) runs the same
kernel code on CPU tensors at tiny shapes.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import rule_inputs
from hebbbench import rules

CASES = [  # n, m, d, temperature, row splits (None: the launcher's choice), input dtype
    (37, 5, 19, 0.02, None, "float32"),  # partial tiles everywhere
    (3, 70, 70, 0.02, None, "float32"),  # two neuron tiles, two feature tiles, N < tile
    (100, 20, 17, 0.5, 3, "float32"),  # several row splits, partials summed
    (64, 64, 64, 0.02, 2, "float32"),  # exact tiles, two splits
    (1, 1, 1, 0.02, None, "float32"),  # N = M = D = 1
    (40, 9, 33, 0.02, None, "bfloat16"),  # half-precision inputs, float32 math
]

SCRIPT = r"""
import json, sys, torch
from conftest import rule_inputs
from hebbbench import rules
from hebbbench.measure.numerics import relative_error
from hebbbench.rules import swta_triton
cases = json.loads(sys.argv[1])
try:
    k = swta_triton.kernels()
except rules.Unavailable as why:
    print(json.dumps({"unavailable": str(why)})); sys.exit(0)
errors = []
for n, m, d, t, splits, dtype in cases:
    x, y, w = (v.to(getattr(torch, dtype)) for v in rule_inputs(n, m, d, seed=n))
    r = rules.get("swta", impl="fh-triton", temperature=t)
    try:
        dw = r.update(x, y.T.contiguous().T, w) if splits is None else k.swta_update(x, y, w, t, splits=splits)
    except Exception as why:  # the interpreter cannot run the kernel: say exactly why
        print(json.dumps({"unavailable": f"Triton's interpreter could not run fh-triton at {(n, m, d)}: "
                                         f"{type(why).__name__}: {why}"})); sys.exit(0)
    assert dw.dtype == w.dtype and dw.shape == (m, d)
    errors.append(relative_error(dw, r.reference(x, y, w)))
print(json.dumps({"errors": errors}))
"""


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_fused_kernel_matches_reference_in_the_interpreter():
    tests = Path(__file__).parent
    env = {**os.environ, "TRITON_INTERPRET": "1",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(tests), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(CASES)], env=env, cwd=tests,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if "unavailable" in result:
        pytest.skip(result["unavailable"])
    for case, error in zip(CASES, result["errors"]):
        bound = 1e-5 if case[-1] == "float32" else 1e-2  # bf16: the result is rounded to w's dtype
        assert error <= bound, (case, error)


def test_off_cuda_it_says_so():
    r = rules.get("swta", impl="fh-triton")
    assert not r.supports("cpu") and r.supports("cuda") and r.compiles
    x, y, w = rule_inputs(4, 3, 5, seed=0)
    if importlib.util.find_spec("triton") is None:
        with pytest.raises(rules.Unavailable, match="needs the triton package"):
            r.update(x, y, w)
        return
    from hebbbench.rules import swta_triton

    if swta_triton.kernels().INTERPRETING:
        pytest.skip("TRITON_INTERPRET=1 in this process: the kernel runs on the CPU")
    with pytest.raises(rules.Unavailable, match="needs a CUDA device"):
        r.update(x, y, w)
    with pytest.raises(ValueError, match="float64"):
        r.update(x.double(), y.double(), w.double())
