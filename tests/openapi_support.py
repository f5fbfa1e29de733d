"""One way to hold a running service to its OpenAPI document with schemathesis.

Every answer must be no 5xx, with a documented status, content type, headers and body; in
negative mode an operation with a body must also refuse the invalid ones. Unknown query
parameters and headers are ignored on purpose (as most HTTP APIs do), so that last check is
limited to operations with a body.
"""

from __future__ import annotations

from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance, response_headers_conformance]
EXAMPLES = {GenerationMode.POSITIVE: 20, GenerationMode.NEGATIVE: 12}


def check_operation(operation: Any, mode: GenerationMode, base_url: str,
                    headers: dict[str, str], *, strategy: Any = None,
                    examples: int | None = None) -> None:
    """Run the generated cases of one operation (deterministic, bounded) and validate each."""
    negative = mode is GenerationMode.NEGATIVE and bool(operation.body)
    checks = CHECKS + ([negative_data_rejection] if negative else [])
    strategy = strategy if strategy is not None else operation.as_strategy(generation_mode=mode)

    @settings(max_examples=examples or EXAMPLES[mode], deadline=None, database=None,
              derandomize=True, suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def check(case: schemathesis.Case) -> None:
        case.call_and_validate(base_url=base_url, headers=headers, checks=checks, timeout=10)

    check()
