"""The shipped definitions all validate (as in production), and the model built from them."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import pytest

from opsctl.connectors import Definition, RateLimitPolicy, load_definitions, validate_file
from opsctl.connectors.model import (
    ApiKeyAuth,
    BearerAuth,
    CursorPagination,
    LinkHeaderPagination,
    NoPagination,
    OAuth2Auth,
)

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "definitions"
ACME = Path(__file__).parent / "valid" / "acme.json"
VENDORS = {
    "github",
    "slack",
    "stripe",
    "hubspot",
    "shopify",
    "google-sheets",
    "salesforce",
    "airtable",
}


@pytest.fixture(scope="module")
def shipped() -> dict[str, Definition]:
    catalog = load_definitions([SHIPPED], allow_loopback_http=False, today=date.today())
    assert catalog.ok, [str(f) for f in catalog.errors]
    assert not catalog.warnings, [str(f) for f in catalog.warnings]
    return dict(catalog.definitions)


def test_every_required_vendor_is_shipped_and_valid(shipped: dict[str, Definition]) -> None:
    assert set(shipped) >= VENDORS


@pytest.mark.parametrize("path", sorted(SHIPPED.glob("*.json")), ids=lambda p: p.stem)
def test_shipped_definition_is_sourced_and_checkable(path: Path) -> None:
    report = validate_file(path, allow_loopback_http=False, today=date.today())
    definition = report.definition
    assert definition is not None, [str(f) for f in report.findings]
    assert definition.id == path.stem
    assert definition.check_operation.method == "GET"
    assert not definition.check_operation.required_input
    assert len(definition.operations) >= 3
    assert any(op.records_path for op in definition.operations)
    assert definition.rate_limits.policies
    for policy in definition.rate_limits.policies:
        assert policy.source.url.startswith("https://")
        assert policy.source.as_of <= date.today()
        assert policy.scope
        for plan in definition.rate_limits.plans:
            definition.rate_limits.for_plan(plan)  # every override applies cleanly


def test_vendor_auth_types(shipped: dict[str, Definition]) -> None:
    github, google, salesforce = shipped["github"], shipped["google-sheets"], shipped["salesforce"]
    assert isinstance(github.auth, OAuth2Auth) and not github.auth.pkce
    assert isinstance(google.auth, OAuth2Auth)
    assert google.auth.pkce and google.auth.refresh.enabled
    assert isinstance(salesforce.auth, OAuth2Auth) and salesforce.auth.pkce
    assert isinstance(shipped["slack"].auth, OAuth2Auth)
    assert isinstance(shipped["hubspot"].auth, OAuth2Auth)
    assert isinstance(shipped["stripe"].auth, BearerAuth)
    assert isinstance(shipped["shopify"].auth, ApiKeyAuth)
    assert isinstance(shipped["airtable"].auth, ApiKeyAuth)


def test_published_limits_are_encoded(shipped: dict[str, Definition]) -> None:
    def policy(connector: str, policy_id: str) -> RateLimitPolicy:
        definition = shipped[connector]
        return next(p for p in definition.rate_limits.policies if p.id == policy_id)

    github = policy("github", "primary_hourly")
    assert (github.kind, github.limit, github.window_s) == ("fixed_window", 5000, 3600.0)
    shopify = policy("shopify", "leaky_bucket")
    assert (shopify.kind, shopify.capacity, shopify.refill_per_s) == ("token_bucket", 40, 2)
    sheets = policy("google-sheets", "read_per_user")
    assert (sheets.limit, sheets.window_s, sheets.scope) == (60, 60.0, ("project", "user"))
    airtable = policy("airtable", "per_base")
    assert (airtable.limit, airtable.window_s) == (5, 1.0)
    salesforce = policy("salesforce", "long_running_concurrency")
    assert (salesforce.kind, salesforce.max_in_flight) == ("concurrency", 25)
    plus = shipped["shopify"].rate_limits.for_plan("plus")
    assert plus[0].refill_per_s == 20


def test_the_full_example_validates_without_any_finding() -> None:
    report = validate_file(ACME, allow_loopback_http=False, today=date(2026, 1, 1))
    assert report.findings == ()
    assert report.definition is not None


def test_model_of_the_full_example() -> None:
    definition = validate_file(ACME).definition
    assert definition is not None
    assert definition.version == "2.1.0-beta.1"
    assert definition.credential_fields == ("access_token",)
    assert len(definition.digest) == 64
    get_me, get_item, list_items, search = definition.operations
    assert get_me.pagination == NoPagination()  # no records_path: the default does not apply
    assert isinstance(list_items.pagination, CursorPagination)
    assert list_items.pagination.page_size == 50 and list_items.pagination.location == "query"
    assert isinstance(search.pagination, CursorPagination) and search.pagination.location == "body"
    assert get_item.required_input == ("id",)
    assert search.costs == {"bucket": 5}
    assert [p.id for p in definition.policies_for(search, "/items/search")] == ["burst", "bucket"]
    assert [p.id for p in definition.policies_for(list_items, "/items")] == ["burst"]
    burst = definition.rate_limits.for_plan("pro")[0]
    assert burst.limit == 500 and burst.window_s == 10.0
    assert definition.rate_limits.for_plan(None)[0].limit == 100
    assert definition.rate_limits.signals.reset_format == "epoch_s"
    assert definition.retry.max_attempts == 4
    with pytest.raises(KeyError):
        definition.operation("nope")


def test_digest_ignores_formatting(tmp_path: Path) -> None:
    compact = tmp_path / "acme.json"
    compact.write_text(json.dumps(json.loads(ACME.read_text()), separators=(",", ":")))
    first, second = validate_file(ACME).definition, validate_file(compact).definition
    assert first is not None and second is not None
    assert first.digest == second.digest


def test_link_header_default_pagination(shipped: dict[str, Definition]) -> None:
    repos = shipped["github"].operation("list_repositories")
    assert isinstance(repos.pagination, LinkHeaderPagination)
    assert repos.pagination.size_param == "per_page"
