"""The network's stand-in: what handlers do with their model keeps working; what a variant cannot
give is refused with the reason, and remembered even when the handler catches the error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from deploybench.sagemaker.standin import NetworkStandIn, StandInError


def _stand_in() -> tuple[NetworkStandIn, torch.nn.Module]:
    network = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    network.classes = ["cat", "dog"]  # type: ignore[assignment]
    return NetworkStandIn(
        lambda batch: np.full((len(batch), 4), 7.0, np.float32), network, (3, 8, 8), "onnxruntime"
    ), network


def test_the_usual_handler_moves_keep_working() -> None:
    stand_in, network = _stand_in()
    assert (
        stand_in.eval() is stand_in and stand_in.to("cpu") is stand_in and stand_in.train(False) is stand_in
    )
    assert stand_in.to(torch.float32) is stand_in and stand_in.float() is stand_in
    assert next(stand_in.parameters()) is next(network.parameters())  # the device probe
    assert stand_in.classes == ["cat", "dog"] and isinstance(stand_in, torch.nn.Module)
    with torch.no_grad():
        out = stand_in(torch.rand(2, 3, 8, 8, dtype=torch.float64))
    assert out.dtype == torch.float32 and out.shape == (2, 4) and bool((out == 7).all())
    assert torch.equal(stand_in.forward(torch.rand(1, 3, 8, 8)), torch.full((1, 4), 7.0))
    assert stand_in.refusals == []


@pytest.mark.parametrize(
    ("use", "why"),
    [
        (lambda m: m(torch.rand(1, 3, 9, 9)), "the variant takes (N, 3, 8, 8)"),
        (lambda m: m(torch.zeros(1, 3, 8, 8, dtype=torch.int64)), "not a float one"),
        (lambda m: m(torch.rand(1, 3, 8, 8), torch.rand(1)), "not one tensor"),
        (lambda m: m.half(), "half()"),
        (lambda m: m.to(dtype=torch.bfloat16), "cast to torch.bfloat16"),
        (lambda m: m.state_dict(), "state_dict()"),
        (lambda m: list(m.modules()), "modules()"),
        (lambda m: m[0], None),  # not subscriptable: Python's own TypeError
        (lambda m: setattr(m, "threshold", 0.5), "sets the network's 'threshold'"),
    ],
)
def test_what_a_variant_cannot_give_is_refused(use, why) -> None:  # type: ignore[no-untyped-def]
    stand_in, _ = _stand_in()
    with pytest.raises((StandInError, TypeError)) as caught:
        use(stand_in)
    if why is not None:
        assert (
            caught.type is StandInError
            and why in str(caught.value)
            and "onnxruntime variant" in str(caught.value)
        )
        assert len(stand_in.refusals) == 1


def test_reading_a_layer_by_name_is_refused() -> None:
    stand_in, network = _stand_in()
    network.add_module("head", torch.nn.Linear(4, 2))
    with pytest.raises(StandInError, match="reads the network's 'head'"):
        stand_in.head  # noqa: B018
    with pytest.raises(StandInError, match=r"calls the network's extra_repr\(\)"):
        stand_in.__getattr__("extra_repr")  # a method of the network other than forward
    assert len(stand_in.refusals) == 2
