"""fh-triton: the fused kernel against the float64 reference, run by Triton's CPU interpreter and on CUDA.

The kernel is CUDA-only (the generated equivalence tests skip it here); Triton's interpreter
(TRITON_INTERPRET=1, read when triton is imported, hence a subprocess) runs the same
kernel code on CPU tensors at tiny shapes; where there is a GPU the kernel also runs there.
Only the absence of triton skips these tests: any exception from triton or the kernel fails them.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

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

HAS_TRITON = importlib.util.find_spec("triton") is not None
NO_TRITON = "triton is not installed: fh-triton's kernel cannot be run here (pip install triton)"

# Runs in a subprocess: TRITON_INTERPRET is read when triton is imported. Nothing is caught, so an
# exception from triton or the kernel exits non-zero and fails the test with its traceback.
SCRIPT = r"""
import json, sys, torch
from conftest import rule_inputs
from hebbbench import rules
from hebbbench.measure.numerics import relative_error
from hebbbench.rules import swta_triton
cases, device, prelude = json.loads(sys.argv[1]), sys.argv[2], sys.argv[3]
exec(prelude)
k = swta_triton.kernels()
assert k.INTERPRETING == (device == "cpu"), (k.INTERPRETING, device)
errors = []
for n, m, d, t, splits, dtype in cases:
    x, y, w = (v.to(device=device, dtype=getattr(torch, dtype)) for v in rule_inputs(n, m, d, seed=n))
    r = rules.get("swta", impl="fh-triton", temperature=t)
    dw = r.update(x, y.T.contiguous().T, w) if splits is None else k.swta_update(x, y, w, t, splits=splits)
    assert dw.dtype == w.dtype and dw.shape == (m, d) and dw.device == w.device, (dw.dtype, dw.shape, dw.device)
    errors.append(relative_error(dw.cpu(), r.reference(x.cpu(), y.cpu(), w.cpu())))  # float64 reference
print(json.dumps({"errors": errors}))
"""

#: where the kernel runs: Triton's CPU interpreter always, the GPU where there is one
BACKENDS = [pytest.param("cpu", id="interpreter"),
            pytest.param("cuda", id="cuda", marks=pytest.mark.skipif(
                not torch.cuda.is_available(), reason="no CUDA device (the interpreter case runs the same kernel)"))]


def kernel_errors(cases, device: str, prelude: str = "") -> list[float]:
    """Relative errors of fh-triton against the float64 reference, one per case, from a subprocess.

    On "cpu" Triton's interpreter runs the kernel (TRITON_INTERPRET=1), on "cuda" the GPU does.
    AssertionError, with the subprocess's traceback, if it raised anything.
    """
    tests = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tests), os.environ.get("PYTHONPATH")]))}
    env.pop("TRITON_INTERPRET", None)
    if device == "cpu":
        env["TRITON_INTERPRET"] = "1"
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(cases), device, prelude], env=env, cwd=tests,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"fh-triton failed on {device}:\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])["errors"]


@pytest.mark.skipif(not HAS_TRITON, reason=NO_TRITON)
@pytest.mark.parametrize("device", BACKENDS)
def test_fused_kernel_matches_reference(device):
    errors = kernel_errors(CASES, device)
    assert len(errors) == len(CASES)
    for case, error in zip(CASES, errors):
        bound = 1e-5 if case[-1] == "float32" else 1e-2  # bf16: the result is rounded to w's dtype
        assert error <= bound, (case, error)


INJECTED = """
import hebbbench.rules._swta_kernels as kernels_module
def broken(*args, **kwargs):
    raise RuntimeError("injected kernel failure")
kernels_module.swta_update = broken
"""


@pytest.mark.skipif(not HAS_TRITON, reason=NO_TRITON)
def test_a_kernel_exception_fails_rather_than_skips():
    """What test_fused_kernel_matches_reference does with a kernel that raises: an AssertionError, not a skip."""
    try:
        kernel_errors(CASES[:1], "cpu", prelude=INJECTED)
    except pytest.skip.Exception as skipped:  # pragma: no cover - the defect this test guards against
        pytest.fail(f"a kernel exception was turned into a skip: {skipped}")
    except AssertionError as failure:
        assert "RuntimeError: injected kernel failure" in str(failure)
    else:  # pragma: no cover
        pytest.fail("a kernel that raises went unnoticed")


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



# Two checks in one interpreter subprocess (importing torch and triton takes seconds), each
# part's traceback reported as its result so that one failing part does not hide the other:
# - "step": fh-triton's layer step, linear and conv, with the kernel launcher counted;
# - "int64": a row stride of 2³⁰ elements and three rows, so the last row's offset is 2³¹,
#   past int32. x is a uint8 view 2³¹ bytes into a 4 GiB storage that is allocated but never
#   touched except where rows are written (a few pages): an int32 offset wraps to −2³¹ and
#   reads the untouched start of the storage instead of the row.
INTERPRETED = r"""
import json, traceback, torch
import hebbbench.rules._swta_kernels as kernels_module
from hebbbench import HebbianConv2d, HebbianLinear, rules
from hebbbench.measure.numerics import relative_error
from hebbbench.nn.step import step_form
from conftest import rule_inputs
assert kernels_module.INTERPRETING
launches = []
real = kernels_module.swta_update
def counted(*args, **kwargs):
    launches.append(1)
    return real(*args, **kwargs)
kernels_module.swta_update = counted

def step():
    out = {}
    images = {"linear": torch.randn(4, 24, generator=torch.Generator().manual_seed(1)),
              "conv": torch.randn(4, 3, 6, 6, generator=torch.Generator().manual_seed(1))}
    for kind in ("linear", "conv"):
        changes, counts = {}, {}
        for impl in ("fh-triton", "fh"):
            make = (lambda: HebbianLinear(24, 10, rule="swta", impl=impl, lr=0.1, temperature=0.5,
                                          generator=torch.Generator().manual_seed(0))) if kind == "linear" else (
                    lambda: HebbianConv2d(3, 8, 3, rule="swta", impl=impl, lr=0.1, temperature=0.5,
                                          generator=torch.Generator().manual_seed(0)))
            layer = make()
            w0 = layer.weight_rows.clone()
            form = step_form(layer)
            assert form.func.__name__ == "eager_step" and form.args[1] is layer.rule, form
            before = len(launches)
            layer.hebbian_step(images[kind])  # the callable a step case times
            counts[impl] = len(launches) - before
            changes[impl] = layer.weight_rows - w0  # η ΔW of one step, (M,D)
        out[kind] = {"launches": counts["fh-triton"], "fh_launches": counts["fh"],
                     "error": relative_error(changes["fh-triton"], changes["fh"].double())}
    return out

def int64():
    n, m, d, stride = 3, 4, 5, 2**30
    storage = torch.empty(2**32 + d, dtype=torch.uint8)  # virtual; pages are touched only where written
    x = storage[2**31:].as_strided((n, d), (stride, 1))  # (N,D), row r at 2³¹ + r·2³⁰ bytes
    values = torch.randint(1, 256, (n, d), generator=torch.Generator().manual_seed(2), dtype=torch.uint8)
    x.copy_(values)
    _, y, w = rule_inputs(n, m, d, seed=3)
    dw = kernels_module.swta_update(x, y, w, 0.5)  # (M,D)
    reference = rules.get("swta", impl="fh", temperature=0.5).reference(values.double(), y.double(), w.double())
    return {"error": relative_error(dw, reference), "max_offset": (n - 1) * stride}

results = {}
for name, part in (("step", step), ("int64", int64)):
    try:
        results[name] = part()
    except Exception:
        results[name] = {"traceback": traceback.format_exc()}
print(json.dumps(results))
"""


@pytest.fixture(scope="module")
def interpreted():
    tests = Path(__file__).parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(tests), os.environ.get("PYTHONPATH")])),
           "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, "-c", INTERPRETED], env=env, cwd=tests, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, f"the interpreter run failed:\n{proc.stderr[-4000:]}"
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not HAS_TRITON, reason=NO_TRITON)
def test_step_runs_its_own_kernel_in_the_eager_step(interpreted):
    """fh-triton's layer step is the eager step around its own kernel (one launch per step, none
    by fh), and one step changes the weights as fh's step does, on a linear and a conv layer."""
    result = interpreted["step"]
    assert "traceback" not in result, result.get("traceback")
    for kind in ("linear", "conv"):
        assert result[kind]["launches"] == 1 and result[kind]["fh_launches"] == 0, (kind, result[kind])
        assert result[kind]["error"] < 1e-4, (kind, result[kind])  # float32 against float32: the check's tolerance


@pytest.mark.skipif(not HAS_TRITON, reason=NO_TRITON)
def test_offsets_past_int32_address_the_right_rows(interpreted):
    result = interpreted["int64"]
    assert "traceback" not in result, result.get("traceback")
    assert result["max_offset"] >= 2**31
    assert result["error"] < 1e-5, result
