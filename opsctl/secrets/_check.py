"""Checking that every secret reference in the settings resolves, without showing a value."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from opsctl.errors import OpsctlError
from opsctl.secrets._base import SecretProvider
from opsctl.secrets._reference import parse_reference
from opsctl.secrets.redaction import fingerprint, redact

if TYPE_CHECKING:
    from opsctl.settings import Settings

RESOLVE_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class ReferenceCheck:
    """One reference's outcome: where it points, pass or fail, and the value's fingerprint."""

    variable: str
    reference: str
    provider: str
    status: Literal["pass", "fail"]
    reason: str
    fingerprint: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.variable,
            "reference": self.reference,
            "provider": self.provider,
            "status": self.status,
            "reason": self.reason,
            "fingerprint": self.fingerprint,
        }


def settings_references(settings: Settings) -> list[tuple[str, str]]:
    """Every (variable, reference) the settings take a secret through."""
    found: dict[str, str] = {}
    if settings.api_token_ref:
        found["OPSCTL_API_TOKEN"] = settings.api_token_ref
    if settings.master_key_ref:
        found["OPSCTL_MASTER_KEY_REF"] = settings.master_key_ref
    for variable, reference in settings.secret_refs:
        found.setdefault(variable, reference)
    return list(found.items())


async def check_reference(
    provider: SecretProvider,
    variable: str,
    reference: str,
    *,
    timeout_s: float = RESOLVE_TIMEOUT_S,
) -> ReferenceCheck:
    """Resolve one reference; any failure becomes a ``fail`` with the error's sentence."""
    import asyncio  # here, not at the top: settings import this package on every command

    from opsctl.secrets import resolve

    kind = reference.partition(":")[0]
    try:
        kind = parse_reference(reference).provider
        value = await asyncio.wait_for(resolve(provider, reference), timeout_s)
    except TimeoutError:
        return ReferenceCheck(
            variable, reference, kind, "fail", f"no answer within {timeout_s:.0f} s"
        )
    except OpsctlError as exc:
        return ReferenceCheck(variable, reference, kind, "fail", redact(str(exc)))
    except Exception as exc:  # one broken reference must not hide the others
        return ReferenceCheck(
            variable, reference, kind, "fail", redact(f"{type(exc).__name__}: {exc}")
        )
    return ReferenceCheck(variable, reference, kind, "pass", "resolves", fingerprint(value))


async def check_references(
    settings: Settings, provider: SecretProvider, *, timeout_s: float = RESOLVE_TIMEOUT_S
) -> list[ReferenceCheck]:
    """Resolve every reference in the settings, concurrently; values are never returned."""
    import asyncio

    pairs = settings_references(settings)
    return list(
        await asyncio.gather(
            *(check_reference(provider, v, r, timeout_s=timeout_s) for v, r in pairs)
        )
    )
