from collections.abc import Sequence
from typing import Any, Final

COMPILED: Final[bool]

def native_type(type_name: str) -> tuple[str, str]: ...
def native_block(names: Sequence[str], types: Sequence[str], rows: Sequence[Any]) -> bytes: ...
