"""FastHebb for conv layers without the N×D patch matrix (impl ``fh-conv``).

A conv layer's update needs Aᵀ X (M,D) with X the unfolded patches (N = B·Ho·Wo rows,
D = C·k·k; docs/design.md §1) and A (N,M) the rule's Hebbian factor (R for SWTA, Y for HPCA).
That product is exactly the convolution's weight gradient for an output gradient equal
to A laid out as maps:

    (Aᵀ X)[m, (c,u,v)] = Σ_{b,h,w} A[(b,h,w), m] · inputs_padded[b, c, h·s + u·δ, w·s + v·δ]
                       = conv2d_weight(inputs, (M,C,k,k), grad_output = A as (B,M,Ho,Wo))

so ``fh-conv`` computes it with ``torch.nn.grad.conv2d_weight`` (on CUDA, cuDNN's
weight-gradient kernels, which read the images directly). The other terms need the
responses only: 1ᵀR, Σ_n y_ni², tril(Yᵀ Y) come from the N×M response rows, small next
to N×D. On the CPU torch's convolution backward may still use per-image column buffers
internally (oneDNN or im2col); it never builds the whole N×D matrix.

For rows input (fully connected layers) ``delta`` is the plain fh form (``same_as_on``:
the harness does not time it there next to fh), and the cost model is fh's: it counts no N×D patch matrix for either path, so the saving shows up
in measured memory, not in the model. Registered for HPCA and for every local rule.
"""

from __future__ import annotations

import torch
from torch import Tensor

from hebbbench.rules.conv import ConvGeometry, responses_to_rows, rows_to_responses
from hebbbench.rules.hebb import HebbFastHebb
from hebbbench.rules.hpca import HPCAFastHebb
from hebbbench.rules.krotov import KrotovFastHebb
from hebbbench.rules.kwta import KWTAFastHebb
from hebbbench.rules.local import LocalFastHebb
from hebbbench.rules.oja import OjaFastHebb
from hebbbench.rules.registry import register
from hebbbench.rules.swta import SWTAFastHebb


def conv_operands(inputs: Tensor, responses: Tensor, w: Tensor, geometry: ConvGeometry) -> tuple[Tensor, Tensor]:
    """Check inputs (B,C,H,W), responses (B,M,Ho,Wo) against w (M, C·k·k); cast both to w's dtype/device."""
    expected = "expected inputs (B, C, H, W), responses (B, M, Ho, Wo), w (M, C*k*k)"
    got = f"got inputs {tuple(inputs.shape)}, responses {tuple(responses.shape)}, w {tuple(w.shape)}"
    if inputs.dim() != 4 or responses.dim() != 4 or w.dim() != 2:
        raise ValueError(f"{expected}; {got}")
    (b, c, h, wd), (br, m, ho, wo) = inputs.shape, responses.shape
    k = geometry.kernel_size
    if (br, m, w.shape[1], ho, wo) != (b, w.shape[0], c * k * k, geometry.output_size(h), geometry.output_size(wd)):
        raise ValueError(f"{expected} with k = {k} and Ho, Wo the conv output size; {got}")
    return inputs.to(device=w.device, dtype=w.dtype), responses.to(device=w.device, dtype=w.dtype)


def patch_gram(inputs: Tensor, maps: Tensor, w: Tensor, geometry: ConvGeometry) -> Tensor:
    """Aᵀ X (M,D) from inputs (B,C,H,W) and A as maps (B,M,Ho,Wo), as a conv weight gradient."""
    m, c, k = w.shape[0], inputs.shape[1], geometry.kernel_size
    grad = torch.nn.grad.conv2d_weight(inputs, (m, c, k, k), maps, **geometry.as_kwargs())  # (M,C,k,k)
    return grad.reshape(m, -1)  # (M, C*k*k), the order of the unfolded patch rows


class LocalConv(LocalFastHebb):
    """fh-conv for a local rule: Aᵀ X as a conv weight gradient, c = 1ᵀB from the response rows."""

    same_as_on = {"linear": "fh"}
    summary = "FastHebb; conv layers: A^T X as the conv weight gradient, no N x D patch matrix"

    def conv_update(self, inputs: Tensor, responses: Tensor, w: Tensor, geometry: ConvGeometry) -> Tensor:
        inputs, responses = conv_operands(inputs, responses, w, geometry)
        y = responses_to_rows(responses)  # (N,M)
        a, c = self.factors(y)  # (N,M), (M,)
        maps = responses if a is y else rows_to_responses(a, responses.shape)  # (B,M,Ho,Wo)
        dw = patch_gram(inputs, maps, w, geometry)  # (M,D)
        dw -= c.unsqueeze(1) * w  # diag(c) W, (M,1)*(M,D)
        return dw.div_(y.shape[0])


@register("swta", "fh-conv")
class SWTAConv(LocalConv, SWTAFastHebb):
    """SWTA: Rᵀ X as the conv weight gradient of the softmax maps."""


@register("kwta", "fh-conv")
class KWTAConv(LocalConv, KWTAFastHebb):
    """k-WTA: Rᵀ X as the conv weight gradient of the winner-mask maps."""


@register("oja", "fh-conv")
class OjaConv(LocalConv, OjaFastHebb):
    """Oja: Yᵀ X as the conv weight gradient of the responses themselves."""


@register("krotov", "fh-conv")
class KrotovConv(LocalConv, KrotovFastHebb):
    """Krotov–Hopfield: Gᵀ X as the conv weight gradient of the G maps."""


@register("hebb", "fh-conv")
class HebbConv(LocalConv, HebbFastHebb):
    """Hebb with decay: Yᵀ X as the conv weight gradient of the responses themselves."""


@register("hpca", "fh-conv")
class HPCAConv(HPCAFastHebb):
    """HPCA: Yᵀ X as the conv weight gradient of the responses; tril(Yᵀ Y) W from the rows."""

    same_as_on = {"linear": "fh"}
    summary = "FastHebb; conv layers: Y^T X as the conv weight gradient, no N x D patch matrix"

    def conv_update(self, inputs: Tensor, responses: Tensor, w: Tensor, geometry: ConvGeometry) -> Tensor:
        inputs, responses = conv_operands(inputs, responses, w, geometry)
        y = responses_to_rows(responses)  # (N,M)
        dw = patch_gram(inputs, responses, w, geometry)  # Yᵀ X, (M,D)
        dw -= torch.tril(y.T @ y) @ w  # (M,M)@(M,D) -> (M,D)
        return dw.div_(y.shape[0])
