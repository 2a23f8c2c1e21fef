"""The handler contract: what a handler may define, and the arguments and context it is given."""

from __future__ import annotations

from pathlib import Path

import pytest

from deploybench.sagemaker.context import HandlerContext
from deploybench.sagemaker.contract import HandlerContractError, bind, check_contract_source


def test_transform_fn_with_three_step_functions_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "inference.py"
    path.write_text("def transform_fn(m, b, c, a):\n    pass\n\ndef output_fn(p, a):\n    pass\n")
    with pytest.raises(HandlerContractError, match="output_fn"):
        check_contract_source(path)
    path.write_text("def transform_fn(m, b, c, a):\n    pass\n\ndef model_fn(d):\n    pass\n")
    check_contract_source(path)


def test_context_is_passed_only_to_functions_that_take_it() -> None:
    context = HandlerContext("/model", 0)
    assert bind(lambda body, ctype: (body, ctype), 2, context)(1, 2) == (1, 2)
    assert bind(lambda body, ctype, ctx: ctx.model_dir, 2, context)(1, 2) == "/model"
    assert bind(lambda body, ctype="x", ctx=None: ctx.model_dir, 2, context)(1, 2) == "/model"
    with pytest.raises(HandlerContractError, match="takes 4 arguments; SageMaker passes 2"):
        bind(lambda a, b, c, d: None, 2, context)


def test_context_reads_request_headers_like_torchserve() -> None:
    context = HandlerContext("/model", 0)
    context.begin(7, {"x-amzn-sagemaker-custom-attributes": "a=1"}, None, "application/json")
    assert context.get_request_header(0, "X-Amzn-SageMaker-Custom-Attributes") == "a=1"
    assert (
        context.request_processor[0].get_request_properties()["X-AMZN-SAGEMAKER-CUSTOM-ATTRIBUTES"] == "a=1"
    )
    assert context.get_request_id() == "7" and context.response_headers() is None
    context.set_response_header(0, "X-Amzn-SageMaker-Custom-Attributes", "b=2")
    context.set_response_status(202)
    assert context.response_headers() == {"X-Amzn-SageMaker-Custom-Attributes": "b=2"}
    assert context.response_status() == 202
