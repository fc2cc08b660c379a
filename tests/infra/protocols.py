"""Types of the factory fixtures in tests/conftest.py, for annotating test arguments."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

from infra.milterproc import MilterProcess
from infra.postfix import PostfixInstance


class MakePostfix(Protocol):
    """``make_postfix(milter=None, **PostfixInstance kwargs) -> started PostfixInstance``."""

    def __call__(
        self, milter: str | MilterProcess | None = None, **kwargs: Any
    ) -> PostfixInstance: ...


class StartMilter(Protocol):
    """``start_milter(settings, policy_yaml) -> started faxmail-milter process``."""

    def __call__(
        self,
        settings: Mapping[str, Any] | None = None,
        policy_yaml: str = "",
        *,
        timeout: float = 30,
    ) -> MilterProcess: ...
