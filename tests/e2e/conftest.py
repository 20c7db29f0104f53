"""The tenantdb fixtures (tenants on either placement) for the end-to-end tests too."""

from tests.integration.tenantdb.conftest import make_tenant  # noqa: F401
